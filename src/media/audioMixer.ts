/**
 * Mix-minus in one pass: every 20 ms the mixer sums the mixed talkers once (the loudest few, see
 * src/core/mixSelection.ts; by default every input), and each listener gets the sum minus its own
 * input. O(N) for N people, where N audiomixers of N-1 inputs would be O(N^2).
 * Inputs are decoded PCM (48 kHz mono S16LE) from each participant's pipeline; outputs go to each
 * participant's Opus encoder with exact, gap-free timestamps.
 */

import os from 'node:os';
import { MixSelection } from '../core/mixSelection.js';

export const SAMPLE_RATE = 48000;
export const FRAME_MS = 20;
export const FRAME_SAMPLES = (SAMPLE_RATE * FRAME_MS) / 1000;
const FRAME_NS = BigInt(FRAME_MS) * 1_000_000n;

const LITTLE_ENDIAN = os.endianness() === 'LE';

/**
 * S16LE samples seen as an Int16Array, without a copy, where the host is little-endian and the
 * bytes are aligned (Node's pooled and socket buffers are); undefined otherwise, and the caller
 * goes sample by sample. Measured in the mixer worker: the per-sample reads and writes were most of
 * its time.
 */
function int16View(b: Buffer): Int16Array | undefined {
  return LITTLE_ENDIAN && (b.byteOffset & 1) === 0 ? new Int16Array(b.buffer, b.byteOffset, b.length >> 1) : undefined;
}

/** How long after its arrival a sample is mixed: the jitter the mixer absorbs. */
export const PLAYOUT_DELAY_MS = 40;
/** The read position may be off by this much before it is corrected (a skip or a short gap). */
const SLACK_SAMPLES = (SAMPLE_RATE * 2) / 1000;
/** The arrival model keeps the earliest arrival of the last one to two of these blocks. */
const BLOCK_MS = 1000;

/**
 * One input's samples, played out by arrival time: every sample is mixed PLAYOUT_DELAY_MS after
 * it arrived. Arrival is modelled as a stream origin: a sample's ideal arrival is `origin +
 * index / 48 kHz`, with the origin taken as the earliest seen over the last second or two (packets
 * are only ever late, never early). So an input's delay is the same whatever the phase of its
 * packets against the mixer's 20 ms frames, and whatever burst or stall came before: that keeps
 * a recording's audio at a known distance from its picture, and the live mix-minus at its lowest
 * steady latency. Slow clock drift is corrected by a skip or a short gap of SLACK_SAMPLES at most.
 */
export class SampleFifo {
  readonly #buf: Int16Array;
  /** Absolute index of the oldest sample still held, of the next one to be written, and of the
   * next one to be read. */
  #base = 0;
  #written = 0;
  #read = 0;
  #origin = Infinity;
  #blockMin = Infinity;
  #prevBlockMin = Infinity;
  #blockStart = 0;
  /** Nothing was there when a frame was read: the input stopped; re-anchor on its next packet. */
  #starved = true;
  #energy = 0;
  #samples = 0;
  /** Samples skipped or gaps inserted to keep the delay (clock drift, a late burst). */
  corrections = 0;
  /** Mean square of the last frame read, full scale 1. */
  framePower = 0;

  constructor(
    private readonly now: () => number = () => performance.now(),
    capacity = SAMPLE_RATE / 2,
  ) {
    this.#buf = new Int16Array(capacity);
  }

  /** RMS level in dBFS of everything read since the last call (-100 when silent). */
  takeLevelDb(): number {
    const rms = this.#samples > 0 ? Math.sqrt(this.#energy / this.#samples) / 32768 : 0;
    this.#energy = 0;
    this.#samples = 0;
    return rms > 1e-5 ? 20 * Math.log10(rms) : -100;
  }

  /** Appends decoded PCM (S16LE) that arrived now. */
  write(pcm: Buffer): void {
    const n = pcm.length >> 1;
    const cap = this.#buf.length;
    const at = this.now();
    if (this.#starved) {
      // A fresh start: this packet's samples are the reference, whatever came before.
      this.#starved = false;
      this.#base = this.#read = this.#written = 0;
      this.#blockMin = this.#prevBlockMin = Infinity;
      this.#blockStart = at;
    }
    const src = int16View(pcm);
    if (src) {
      // In at most two copies (the ring's end, then its start), not sample by sample.
      for (let off = 0, w = this.#written % cap; off < n; w = 0) {
        const k = Math.min(n - off, cap - w);
        this.#buf.set(src.subarray(off, off + k), w);
        off += k;
      }
    } else {
      for (let i = 0; i < n; i++) this.#buf[(this.#written + i) % cap] = pcm.readInt16LE(i * 2);
    }
    this.#written += n;
    if (this.#written - this.#base > cap) this.#base = this.#written - cap;
    // Where this stream's sample 0 would have arrived, had nothing been late.
    const origin = at - (this.#written * 1000) / SAMPLE_RATE;
    if (at - this.#blockStart >= BLOCK_MS) {
      this.#prevBlockMin = this.#blockMin;
      this.#blockMin = Infinity;
      this.#blockStart = at;
    }
    this.#blockMin = Math.min(this.#blockMin, origin);
    this.#origin = Math.min(this.#blockMin, this.#prevBlockMin);
  }

  /**
   * Copies the frame that starts at mix time `atMs` (samples that arrived PLAYOUT_DELAY_MS before)
   * into `own`, and its mean square into `framePower`. Returns false when there was nothing to play.
   */
  readFrame(own: Int16Array, atMs: number): boolean {
    own.fill(0);
    this.framePower = 0;
    if (this.#starved) return false;
    const want = Math.round(((atMs - PLAYOUT_DELAY_MS - this.#origin) * SAMPLE_RATE) / 1000);
    if (Math.abs(want - this.#read) > SLACK_SAMPLES) {
      this.#read = want;
      this.corrections++;
    }
    if (this.#read >= this.#written) {
      // Nothing of this frame has come: the input has stopped (or is later than we wait for).
      this.#starved = true;
      return false;
    }
    const cap = this.#buf.length;
    const from = Math.max(this.#read, this.#base);
    const to = Math.min(this.#read + FRAME_SAMPLES, this.#written);
    let energy = 0;
    // In at most two runs of the ring.
    for (let idx = from; idx < to; ) {
      const at = idx % cap;
      const seg = this.#buf.subarray(at, at + Math.min(to - idx, cap - at));
      own.set(seg, idx - this.#read);
      for (let j = 0; j < seg.length; j++) energy += seg[j] * seg[j];
      idx += seg.length;
    }
    this.#energy += energy;
    this.framePower = energy / FRAME_SAMPLES / (32768 * 32768);
    this.#samples += FRAME_SAMPLES;
    this.#read += FRAME_SAMPLES;
    return to > from;
  }
}

/** One 20 ms frame: PCM, its timestamp counted from when this output was added, and the moment
 * (performance.now() clock, ms) the frame stands for. */
export type MixSink = (pcm: Buffer, ptsNs: bigint, at: number) => void;

interface Input {
  fifo: SampleFifo;
  own: Int16Array;
}

/**
 * `always`: a frame every 20 ms (a recording, the room's shared mix, a listener whose encoder is its
 * own, such as a phone's G.711). `speaking`: frames only while the listener is among the mixed talkers
 * (its mix-minus); otherwise it hears the room's shared mix, which it is not in. Its timestamps
 * count only the frames it got, so its encoder sees one gap-free stream.
 */
export type OutputWhen = 'always' | 'speaking';

interface Output {
  sink: MixSink;
  startPts: bigint;
  when: OutputWhen;
  frames: bigint;
}

const dbOf = (power: number) => (power > 1e-10 ? 10 * Math.log10(power) : -100);

export class AudioMixer {
  readonly #inputs = new Map<string, Input>();
  readonly #outputs = new Map<string, Output>();
  #timer?: NodeJS.Timeout;
  #startedAt = 0;
  #frames = 0n;
  #closed = false;

  /** `selection` picks the talkers who are mixed; by default every input is. */
  constructor(
    private readonly now: () => number = () => performance.now(),
    readonly selection: MixSelection = new MixSelection({ maxSpeakers: 0 }),
  ) {}

  get closed(): boolean {
    return this.#closed;
  }

  addInput(id: string): SampleFifo {
    const fifo = new SampleFifo(this.now);
    this.#inputs.set(id, { fifo, own: new Int16Array(FRAME_SAMPLES) });
    return fifo;
  }

  removeInput(id: string): void {
    this.#inputs.delete(id);
    this.selection.remove(id);
  }

  /** `id` is the listener; if it is also an input, that input is left out of what it hears. */
  addOutput(id: string, sink: MixSink, when: OutputWhen = 'always'): void {
    this.#ensureRunning();
    this.#outputs.set(id, { sink, startPts: this.#frames * FRAME_NS, when, frames: 0n });
  }

  removeOutput(id: string): void {
    this.#outputs.delete(id);
  }

  /** Each input's RMS level in dBFS since the last call. */
  takeLevels(): Map<string, number> {
    return new Map([...this.#inputs].map(([id, i]) => [id, i.fifo.takeLevelDb()]));
  }

  #ensureRunning(): void {
    if (this.#timer || this.#closed) return;
    this.#startedAt = this.now();
    this.#frames = 0n;
    this.#timer = setInterval(() => this.pump(), 5);
    this.#timer.unref?.();
  }

  #deferred = false;

  /**
   * Produces every frame that is due by now. After a stall of the event loop the frames are made
   * in setImmediate, i.e. after the loop has read the audio that queued up in the sockets meanwhile:
   * mixing first would fill the stall with silence and push the real audio late, out of sync.
   */
  pump(): void {
    const behind = Math.floor((this.now() - this.#startedAt) / FRAME_MS) - Number(this.#frames);
    if (behind > 2) {
      if (!this.#deferred) {
        this.#deferred = true;
        setImmediate(() => {
          this.#deferred = false;
          this.#produce();
        });
      }
      return;
    }
    this.#produce();
  }

  #produce(): void {
    if (this.#closed) return;
    const due = BigInt(Math.floor((this.now() - this.#startedAt) / FRAME_MS));
    let budget = 25; // never try to produce more than 0.5 s at once after a stall
    while (this.#frames < due && budget-- > 0) {
      this.mixFrame(this.#frames * FRAME_NS);
      this.#frames++;
    }
    if (this.#frames < due) this.#frames = due;
  }

  /** One 20 ms frame to every listener. Exposed for tests. */
  mixFrame(ptsNs: bigint): void {
    const at = this.#startedAt + Number(ptsNs) / 1e6;
    const acc = new Int32Array(FRAME_SAMPLES);
    const levels = new Map<string, number>();
    for (const [id, input] of this.#inputs) {
      if (input.fifo.readFrame(input.own, at)) levels.set(id, dbOf(input.fifo.framePower));
    }
    const mixed = this.selection.update(levels, at);
    for (const id of mixed) {
      const own = levels.has(id) ? this.#inputs.get(id)?.own : undefined;
      if (own) for (let i = 0; i < FRAME_SAMPLES; i++) acc[i] += own[i];
    }
    const all = this.selection.mixesAll;
    // Talkers' own mixes first: their RTC worker prefers them to the shared mix of the same frame.
    for (const pass of ['speaking', 'always'] as const) {
      for (const [id, o] of this.#outputs) {
        if (o.when !== pass) continue;
        const inMix = mixed.has(id) && levels.has(id);
        if (pass === 'speaking' && !all && !mixed.has(id)) continue;
        const own = inMix ? this.#inputs.get(id)!.own : undefined;
        const out = Buffer.allocUnsafe(FRAME_SAMPLES * 2);
        const o16 = int16View(out);
        for (let i = 0; i < FRAME_SAMPLES; i++) {
          let v = own ? acc[i] - own[i] : acc[i];
          if (v > 32767) v = 32767;
          else if (v < -32768) v = -32768;
          if (o16) o16[i] = v;
          else out.writeInt16LE(v, i * 2);
        }
        const pts = pass === 'speaking' && !all ? o.frames * FRAME_NS : ptsNs - o.startPts;
        o.frames++;
        o.sink(out, pts, at);
      }
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#inputs.clear();
    this.#outputs.clear();
  }
}
