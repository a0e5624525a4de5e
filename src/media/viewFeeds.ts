/**
 * Where composite video arrives in a thread. Every composite pipeline sends its RTP with
 * multiudpsink to one socket in each thread that has viewers of it; packets are told apart by
 * SSRC, which is fresh for each run (generation) of a composite's pipeline. A ViewFeed is one
 * composite as its followers see it: parsed packets with a keyframe flag, and a way to ask for a
 * keyframe.
 */
import { isKeyframeStart, parseRtp, type RtpView } from './rtp.js';
import { LocalUdp } from './localUdp.js';
import type { VideoCodec } from '../core/pipelines.js';

export interface ViewPacket {
  packet: Buffer;
  rtp: RtpView;
  keyframe: boolean;
  /** Identifies the pipeline generation that made it, for RTP continuity. */
  source: object;
  /** When the picture was composed, on the nowMs() clock: the pipeline's start plus the RTP
   * timestamp, which the payloader counts from 0 in its running time. NaN when the start is not
   * known in this thread (only recordings need it). */
  ptsMs: number;
}

/** What a VideoOut follows. */
export interface ViewSource {
  readonly key: string;
  readonly codec: VideoCodec;
  subscribe(listener: (p: ViewPacket) => void): () => void;
  requestKeyframe(): void;
}

interface Generation {
  ssrc: number;
  startMs: number;
  lastTs: number;
  wraps: number;
}

export class ViewFeed implements ViewSource {
  readonly #listeners = new Set<(p: ViewPacket) => void>();
  generation?: Generation;
  codec: VideoCodec = 'vp8';

  constructor(
    readonly key: string,
    private readonly askKeyframe: (key: string) => void,
  ) {}

  subscribe(listener: (p: ViewPacket) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  get followers(): number {
    return this.#listeners.size;
  }

  requestKeyframe(): void {
    this.askKeyframe(this.key);
  }

  deliver(packet: Buffer, rtp: RtpView): void {
    const g = this.generation;
    if (!g || this.#listeners.size === 0) return;
    if (rtp.timestamp < g.lastTs && g.lastTs - rtp.timestamp > 0x80000000) g.wraps++;
    g.lastTs = rtp.timestamp;
    const ptsMs = g.startMs + (g.wraps * 0x100000000 + rtp.timestamp) / 90;
    const p: ViewPacket = { packet, rtp, keyframe: isKeyframeStart(this.codec, packet, rtp), source: g, ptsMs };
    for (const l of this.#listeners) l(p);
  }
}

/** A room's shared mix (encoded Opus) as the thread's listeners take it. */
export class MixFeed {
  readonly #listeners = new Set<(packet: Buffer, rtp: RtpView) => void>();
  ssrc = 0;

  subscribe(listener: (packet: Buffer, rtp: RtpView) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  deliver(packet: Buffer, rtp: RtpView): void {
    for (const l of this.#listeners) l(packet, rtp);
  }
}

/** One thread's socket for composite video and rooms' shared mixes, and the feeds it demultiplexes into. */
export class ViewFeeds {
  readonly #byKey = new Map<string, ViewFeed>();
  readonly #bySsrc = new Map<number, ViewFeed | MixFeed>();
  readonly #mixes = new Map<string, MixFeed>();
  #udp?: LocalUdp;

  constructor(private readonly askKeyframe: (key: string) => void) {}

  async open(): Promise<number> {
    this.#udp ??= await LocalUdp.open((buf) => this.#onPacket(buf), 8 * 1024 * 1024);
    return this.#udp.port;
  }

  get port(): number {
    if (!this.#udp) throw new Error('ViewFeeds not open');
    return this.#udp.port;
  }

  feed(key: string): ViewFeed {
    let f = this.#byKey.get(key);
    if (!f) this.#byKey.set(key, (f = new ViewFeed(key, this.askKeyframe)));
    return f;
  }

  /** A composite's pipeline (re)started with this SSRC; `startMs` on the nowMs() clock, if known. */
  generation(key: string, codec: VideoCodec, ssrc: number, startMs = NaN): void {
    const f = this.feed(key);
    if (f.generation) this.#bySsrc.delete(f.generation.ssrc);
    f.codec = codec;
    f.generation = { ssrc, startMs, lastTs: 0, wraps: 0 };
    this.#bySsrc.set(ssrc, f);
  }

  /** That run is playing from `startMs` (nowMs clock), which places its pictures in time. */
  started(key: string, ssrc: number, startMs: number): void {
    const g = this.#byKey.get(key)?.generation;
    if (g && g.ssrc === ssrc) g.startMs = startMs;
  }

  /** A room's shared mix, by room id. */
  mix(room: string): MixFeed {
    let f = this.#mixes.get(room);
    if (!f) this.#mixes.set(room, (f = new MixFeed()));
    return f;
  }

  /** The room's shared mix (re)started with this SSRC. */
  mixGeneration(room: string, ssrc: number): void {
    const f = this.mix(room);
    if (f.ssrc) this.#bySsrc.delete(f.ssrc);
    f.ssrc = ssrc;
    this.#bySsrc.set(ssrc, f);
  }

  /** The room's shared mix closed. */
  forgetMix(room: string): void {
    const f = this.#mixes.get(room);
    if (!f) return;
    this.#mixes.delete(room);
    if (f.ssrc) this.#bySsrc.delete(f.ssrc);
  }

  /** The composite closed. */
  forget(key: string): void {
    const f = this.#byKey.get(key);
    if (!f) return;
    this.#byKey.delete(key);
    if (f.generation) this.#bySsrc.delete(f.generation.ssrc);
  }

  #onPacket(buf: Buffer): void {
    const rtp = parseRtp(buf);
    if (!rtp) return;
    this.#bySsrc.get(rtp.ssrc)?.deliver(buf, rtp);
  }

  close(): void {
    this.#udp?.close();
    this.#byKey.clear();
    this.#bySsrc.clear();
    this.#mixes.clear();
  }
}
