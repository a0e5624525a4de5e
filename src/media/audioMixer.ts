/**
 * Mix-minus in one pass: every 20 ms the mixer sums all inputs once, and each listener gets
 * the sum minus its own input. O(N) for N people, where N audiomixers of N-1 inputs would be O(N^2).
 * Inputs are decoded PCM (48 kHz mono S16LE) from each participant's pipeline; outputs go to each
 * participant's Opus encoder with exact, gap-free timestamps.
 */

export const SAMPLE_RATE = 48000;
export const FRAME_MS = 20;
export const FRAME_SAMPLES = (SAMPLE_RATE * FRAME_MS) / 1000;
const FRAME_NS = BigInt(FRAME_MS) * 1_000_000n;

/** A jitter-absorbing FIFO of samples for one input. */
export class SampleFifo {
  readonly #buf: Int16Array;
  #read = 0;
  #size = 0;
  #primed = false;
  #energy = 0;
  #samples = 0;

  /** RMS level in dBFS of everything read since the last call (-100 when silent). */
  takeLevelDb(): number {
    const rms = this.#samples > 0 ? Math.sqrt(this.#energy / this.#samples) / 32768 : 0;
    this.#energy = 0;
    this.#samples = 0;
    return rms > 1e-5 ? 20 * Math.log10(rms) : -100;
  }

  constructor(
    capacity = SAMPLE_RATE / 2,
    private readonly primeSamples = FRAME_SAMPLES * 2,
    // Past 100 ms queued, drop back to the 40 ms cushion: this bounds how far audio can drift
    // behind video (lip sync) when bursts or clock drift pile samples up.
    private readonly maxSamples = FRAME_SAMPLES * 5,
  ) {
    this.#buf = new Int16Array(capacity);
  }

  get size(): number {
    return this.#size;
  }

  write(pcm: Buffer): void {
    const n = pcm.length >> 1;
    const cap = this.#buf.length;
    for (let i = 0; i < n; i++) {
      if (this.#size === cap) {
        this.#read = (this.#read + 1) % cap;
        this.#size--;
      }
      this.#buf[(this.#read + this.#size) % cap] = pcm.readInt16LE(i * 2);
      this.#size++;
    }
    // Bound latency: when a burst leaves too much queued, drop the oldest samples.
    if (this.#size > this.maxSamples) {
      const drop = this.#size - this.primeSamples;
      this.#read = (this.#read + drop) % cap;
      this.#size -= drop;
    }
  }

  /** Adds one frame of this input into `acc`, and copies it into `own`. Returns false on silence. */
  readFrame(acc: Int32Array, own: Int16Array): boolean {
    own.fill(0);
    if (!this.#primed) {
      if (this.#size < this.primeSamples) return false;
      this.#primed = true;
    }
    const n = Math.min(FRAME_SAMPLES, this.#size);
    const cap = this.#buf.length;
    for (let i = 0; i < n; i++) {
      const v = this.#buf[(this.#read + i) % cap];
      own[i] = v;
      acc[i] += v;
      this.#energy += v * v;
    }
    this.#samples += FRAME_SAMPLES;
    this.#read = (this.#read + n) % cap;
    this.#size -= n;
    if (n < FRAME_SAMPLES) this.#primed = false; // underrun: rebuild a cushion before reading on
    return n > 0;
  }
}

/** One 20 ms frame: PCM, its timestamp counted from when this output was added, and the moment
 * (performance.now() clock, ms) the frame stands for. */
export type MixSink = (pcm: Buffer, ptsNs: bigint, at: number) => void;

interface Input {
  fifo: SampleFifo;
  own: Int16Array;
}

export class AudioMixer {
  readonly #inputs = new Map<string, Input>();
  readonly #outputs = new Map<string, { sink: MixSink; startPts: bigint }>();
  #timer?: NodeJS.Timeout;
  #startedAt = 0;
  #frames = 0n;
  #closed = false;

  constructor(private readonly now: () => number = () => performance.now()) {}

  get closed(): boolean {
    return this.#closed;
  }

  addInput(id: string): SampleFifo {
    const fifo = new SampleFifo();
    this.#inputs.set(id, { fifo, own: new Int16Array(FRAME_SAMPLES) });
    return fifo;
  }

  removeInput(id: string): void {
    this.#inputs.delete(id);
  }

  /** `id` is the listener; if it is also an input, that input is left out of what it hears. */
  addOutput(id: string, sink: MixSink): void {
    this.#ensureRunning();
    this.#outputs.set(id, { sink, startPts: this.#frames * FRAME_NS });
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
    const acc = new Int32Array(FRAME_SAMPLES);
    const active = new Set<string>();
    for (const [id, input] of this.#inputs) {
      if (input.fifo.readFrame(acc, input.own)) active.add(id);
    }
    for (const [id, { sink, startPts }] of this.#outputs) {
      const own = active.has(id) ? this.#inputs.get(id)!.own : undefined;
      const out = Buffer.allocUnsafe(FRAME_SAMPLES * 2);
      for (let i = 0; i < FRAME_SAMPLES; i++) {
        let v = own ? acc[i] - own[i] : acc[i];
        if (v > 32767) v = 32767;
        else if (v < -32768) v = -32768;
        out.writeInt16LE(v, i * 2);
      }
      sink(out, ptsNs - startPts, this.#startedAt + Number(ptsNs) / 1e6);
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
