/**
 * Whether a participant's audio packets go on to be decoded. Decoding every microphone is most of
 * what an audio room costs: per input, a decoder's two GStreamer threads woken for every packet,
 * libopus itself, and the mixer taking its PCM (about 12 millicores per input on the 2-core
 * machine, against about 5 for libopus alone). A silent microphone's packets give the mix nothing.
 *
 * Browsers put their audio level in every packet (RFC 6464, `ssrc-audio-level`). A packet quieter
 * than `thresholdLevel` is not passed on once the input has been quiet for `hangoverMs`; the first
 * louder one is passed at once, so speech is decoded from its first packet. Pauses within speech
 * stay decoded (the hangover), and the mix's own selection (src/core/mixSelection.ts, 10 dB above
 * this threshold) then works on decoded audio as before. An input without levels (a plain RTP leg,
 * a peer that did not negotiate the extension) is always passed.
 *
 * While the mix is full (as many talkers as it carries), a loud microphone that could not take a
 * place is skipped too: the room sets a `cutoff` (src/room/Room.ts) from its weakest mixed
 * talker's level, and an input that is not mixed counts as loud only while its smoothed level is
 * within 3 dB of the 6 dB it would need to take that talker's place. Those are the only inputs
 * whose decoded audio the mix could need next.
 *
 * The decoder's jitter buffer must not see the packets skipped as lost (it would conceal all of
 * them at once): the sequence numbers passed on stay contiguous. Timestamps stay as sent, so the
 * time skipped is a jump forward, as after a sender's own silence suppression (DTX).
 */

export interface InputGateOptions {
  /** A packet at this level or louder (RFC 6464: -dBov, 0-127) opens the gate. */
  thresholdLevel: number;
  /** The gate closes after this long without such a packet. */
  hangoverMs: number;
}

/** -60 dBov: 10 dB under the level at which the mix counts an input as talking. */
export const DEFAULT_INPUT_GATE: InputGateOptions = { thresholdLevel: 60, hangoverMs: 2000 };

/** Per packet (20 ms): about 200 ms of smoothing, as the mix's own selection has. */
const SMOOTHING = 0.1;

export class InputGate {
  readonly opts: InputGateOptions;
  #lastLoudAt = -Infinity;
  /** Subtracted from sequence numbers passed on: the packets skipped so far. */
  #seqOffset = 0;
  /** The newest sequence number passed on, as the sender numbered it. */
  #lastIn?: number;
  #open = true;
  /** Packets not passed on. */
  skipped = 0;
  /** Smoothed power of the levels the packets carry (full scale 1), about 200 ms; undefined until
   * a packet with a level comes. */
  #power?: number;
  /**
   * Set by the room while its mix is full and this input is not in it: the level (RFC 6464 units,
   * smaller is louder) that the smoothed level must reach for the input to count as loud.
   */
  cutoff?: number;

  constructor(opts: Partial<InputGateOptions> = {}) {
    this.opts = { ...DEFAULT_INPUT_GATE, ...opts };
  }

  /** The smoothed level, in RFC 6464 units (-dBov, 0-127); undefined without levels. */
  get smoothedLevel(): number | undefined {
    return this.#power === undefined ? undefined : Math.min(127, Math.max(0, -10 * Math.log10(Math.max(this.#power, 1e-13))));
  }

  /**
   * One packet (an RTP packet, whose sequence number this may rewrite in place) with its level,
   * undefined when the packet has none. True: pass it on.
   */
  pass(packet: Buffer, level: number | undefined, now: number): boolean {
    if (packet.length < 12) return false;
    const seq = packet.readUInt16BE(2);
    if (level !== undefined) {
      const power = 10 ** (-level / 10);
      this.#power = this.#power === undefined ? power : this.#power + SMOOTHING * (power - this.#power);
    }
    // Compared as powers: no logarithm per packet.
    const outranked = this.cutoff !== undefined && (this.#power ?? 0) < 10 ** (-this.cutoff / 10);
    if (level === undefined || (level <= this.opts.thresholdLevel && !outranked)) this.#lastLoudAt = now;
    const open = now - this.#lastLoudAt <= this.opts.hangoverMs;
    if (!open) {
      this.#open = false;
      this.skipped++;
      return false;
    }
    if (!this.#open && this.#lastIn !== undefined) {
      // Reopening: continue right after the last packet passed on.
      const gap = (seq - this.#lastIn - 1) & 0xffff;
      if (gap > 0 && gap < 0x8000) this.#seqOffset = (this.#seqOffset + gap) & 0xffff;
    }
    this.#open = true;
    const ahead = this.#lastIn === undefined ? 1 : (seq - this.#lastIn) & 0xffff;
    if (ahead > 0 && ahead < 0x8000) this.#lastIn = seq;
    if (this.#seqOffset !== 0) packet.writeUInt16BE((seq - this.#seqOffset) & 0xffff, 2);
    return true;
  }
}
