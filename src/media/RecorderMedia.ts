/**
 * The media side of a recording, in the GStreamer worker: the recorder pipeline (a muxer that
 * lives as long as the recording), the composite video it follows (through a VideoOut, switching
 * composites on keyframes) and the full mix from the mixer worker. Every picture is placed on the
 * file's timeline by the instant it was composed, and every mix frame by the instant it was mixed,
 * so sync does not depend on when either reaches this thread. The control thread's Recording
 * keeps the state, the metadata and the composites' choice.
 */
import { nowMs } from '../core/clock.js';
import { EL, type VideoCodec } from '../core/pipelines.js';
import { GstPipeline } from '../gst/native.js';
import { readPcmAt } from './l16.js';
import { LocalUdp } from './localUdp.js';
import { VideoOut } from './VideoOut.js';
import { ViewFeeds, type ViewPacket } from './viewFeeds.js';

/**
 * Where the mix goes on the recording's timeline, against the pictures. A mix frame is stamped
 * with the instant it was mixed (each input PLAYOUT_DELAY_MS after it arrived); a picture with the
 * instant it was composed, which is later after the same arrival: the video jitterbuffer holds
 * 20 ms more than the audio one, and the composite takes a picture from its channel up to a frame
 * after it lands and stamps it a frame later still. What is left of the difference after those
 * cancel was measured with bench/lipsync.mjs (the README has the figures). The rest of the spread
 * is where a composite's 30 fps ticks fall against a publisher's frames: within one frame.
 */
const AUDIO_ALIGN_MS = 9;

/** How long the composite's pictures wait before they go into the file (see #pushVideo). */
const HOLD_MS = 300;

interface HeldPicture {
  source: object;
  ts: number;
  ptsMs: number;
  arrived: number;
  packets: Buffer[];
  complete: boolean;
}

export interface RecorderEvents {
  /** The recorder failed (a full disk, an unwritable file): why. */
  failed: (reason: string) => void;
  /** The recording's picture now comes from composite `to`; `from` is no longer used. */
  switched: (to: string, from: string | undefined) => void;
  /** Composite `key` should send a keyframe. */
  keyframe: (key: string) => void;
}

export class RecorderMedia {
  readonly #recorder: GstPipeline;
  readonly #video: VideoOut;
  readonly #feeds: ViewFeeds;
  #mixUdp?: LocalUdp;
  /** The recording's timeline starts here (nowMs() clock, ms). */
  readonly #t0: number;
  #lastSeq?: number;
  #held: HeldPicture[] = [];
  #lastPtsNs?: bigint;
  #outSeq = 0;
  readonly #flushTimer: NodeJS.Timeout;
  #closed = false;
  videoPackets = 0;

  constructor(
    launch: string,
    private readonly events: RecorderEvents,
  ) {
    this.#recorder = new GstPipeline(launch);
    this.#t0 = this.#recorder.play((e) => {
      if (e.type === 'error') events.failed(`${e.element}: ${e.message}`);
    });
    this.#video = new VideoOut(
      (packet, from) => this.#pushVideo(packet, from),
      (to, from) => events.switched(to.key, from?.key),
    );
    this.#feeds = new ViewFeeds((key) => events.keyframe(key));
    this.#flushTimer = setInterval(() => this.#flushVideo(), 20);
  }

  /** Opens the sockets the composites' video and the mix come in on. */
  async open(): Promise<{ feedPort: number; mixPort: number }> {
    const feedPort = await this.#feeds.open();
    // The full mix, no one left out, stamped with the instant each frame stands for.
    this.#mixUdp = await LocalUdp.open((packet) => {
      const m = readPcmAt(packet);
      if (m && !this.#closed) this.#recorder.push(EL.mixIn, m.pcm, this.#timeline(m.atMs + AUDIO_ALIGN_MS));
    });
    return { feedPort, mixPort: this.#mixUdp.port };
  }

  // The composites it may follow, as the control thread announces them.
  generation(key: string, codec: VideoCodec, ssrc: number): void {
    this.#feeds.generation(key, codec, ssrc);
  }
  started(key: string, ssrc: number, startMs: number): void {
    this.#feeds.started(key, ssrc, startMs);
  }
  forget(key: string): void {
    this.#feeds.forget(key);
  }
  /** Shows composite `key` from its first keyframe on. */
  follow(key: string): void {
    if (!this.#closed) this.#video.follow(this.#feeds.feed(key));
  }

  /** A nowMs() instant (ms) as a timestamp on the file's timeline (ns). */
  #timeline(ms: number): bigint {
    return BigInt(Math.max(0, Math.round((ms - this.#t0) * 1e6)));
  }

  /**
   * One RTP packet of the composite's video. Pictures wait HOLD_MS before they go into the file:
   * when a new composite takes over (with a keyframe, see VideoOut), the old composite's pictures
   * of the same instants and later are still here to be dropped, so the file never shows a
   * picture after its own time (which would put the video late at every layout change).
   */
  #pushVideo(packet: Buffer, from: ViewPacket): void {
    // The view parsed the packet already; VideoOut only rewrote its sequence number (continuous
    // across composites) and timestamp.
    const seq = packet.readUInt16BE(2);
    if (this.#lastSeq !== undefined && seq !== ((this.#lastSeq + 1) & 0xffff)) {
      // Lost on the way (a long stall): the depayloader drops pictures until a keyframe, so ask.
      this.#video.requestKeyframe();
    }
    this.#lastSeq = seq;
    this.videoPackets++;
    let f = this.#held.at(-1);
    // A picture ends at its marker bit. (x264 can end two access units on one timestamp: they
    // stay two pictures, the second placed just after the first.)
    if (!f || f.complete || f.source !== from.source || f.ts !== from.rtp.timestamp) {
      if (f && f.source !== from.source) {
        this.#held = this.#held.filter((h) => h.source === from.source || h.ptsMs < from.ptsMs);
      }
      f = { source: from.source, ts: from.rtp.timestamp, ptsMs: from.ptsMs, arrived: nowMs(), packets: [], complete: false };
      this.#held.push(f);
    }
    f.packets.push(packet);
    f.complete = from.rtp.marker;
  }

  /** Writes the pictures that have waited long enough (all of them when `all`). */
  #flushVideo(all = false): void {
    const now = nowMs();
    for (;;) {
      const f = this.#held[0];
      // A picture whose last packet was lost goes too, once another one follows it.
      if (!f || !(f.complete || this.#held.length > 1) || (!all && now - f.arrived < HOLD_MS)) break;
      this.#held.shift();
      let ptsNs = this.#timeline(f.ptsMs);
      if (this.#lastPtsNs !== undefined && ptsNs <= this.#lastPtsNs) ptsNs = this.#lastPtsNs + 1_000_000n;
      this.#lastPtsNs = ptsNs;
      for (const p of f.packets) {
        p.writeUInt16BE(this.#outSeq, 2);
        this.#outSeq = (this.#outSeq + 1) & 0xffff;
        this.#recorder.push(EL.videoRtpIn, p, ptsNs);
      }
    }
  }

  /** Finalises the file: EOS through the encoders and muxer (index, duration), then stops. */
  async stop(): Promise<boolean> {
    if (this.#closed) return false;
    this.#video.close();
    this.#flushVideo(true);
    this.#release();
    const finished = await this.#recorder.drain(5000);
    await this.#recorder.close();
    return finished;
  }

  #release(): void {
    this.#closed = true;
    clearInterval(this.#flushTimer);
    this.#held = [];
    this.#video.close();
    this.#feeds.close();
    this.#mixUdp?.close();
  }

  /** Stops without finalising (the recording failed). */
  async close(): Promise<void> {
    if (!this.#closed) this.#release();
    await this.#recorder.close();
  }
}
