import { EventEmitter } from 'node:events';
import type { Composition } from '../core/composition.js';
import { createLogger, type Logger } from '../core/log.js';
import { compositeLaunch, EL, type CompositeSpec, type Presets, type VideoCodec } from '../core/pipelines.js';
import { compositeTiles } from './compositeTiles.js';
import { GstPipeline } from '../gst/native.js';
import { LocalUdp } from '../media/localUdp.js';
import { isKeyframeStart, parseRtp, type RtpView } from '../media/rtp.js';
import type { ImageRenderer } from '../render/images.js';

export interface ViewPacket {
  packet: Buffer;
  rtp: RtpView;
  keyframe: boolean;
  /** Identifies the pipeline generation that made it, for RTP continuity. */
  source: object;
  /** When the picture was composed, on the performance.now() clock (ms): the pipeline's start
   * plus the RTP timestamp, which the payloader counts from 0 in the pipeline's running time. */
  ptsMs: number;
}

/** What differs between a viewer's composite and a recording's. */
export interface ViewOptions {
  /** Seconds between keyframes the encoder makes unasked (default 10: viewers ask with PLI). */
  gopSeconds?: number;
  /** Encoder threads (default 1). */
  threads?: number;
  /** The text of the card shown while there is no one to show. */
  waitingText?: string;
  /** See CompositeSpec.steadyTiles. */
  steadyTiles?: boolean;
}

/** One run of the composite's pipeline: RTP timestamps count from its start. */
interface Generation {
  /** performance.now() when the pipeline went to PLAYING: its running time 0. */
  startMs: number;
  lastTs: number;
  /** RTP timestamp wraps seen (every 13.25 hours at 90 kHz). */
  wraps: number;
}

export interface ViewDeps {
  presets: Presets;
  renderer: ImageRenderer;
  channelOf: (participantId: string) => string;
  inputTimeoutMs: number;
  log: Logger;
}

/**
 * One compositor and one encoder for one exact composition. Immutable: a different composition is
 * a different CompositeView. Viewers whose compositions are identical share it.
 * Events: 'packet' (ViewPacket).
 */
export class CompositeView extends EventEmitter {
  #pipeline?: GstPipeline;
  #udp?: LocalUdp;
  #closed = false;
  #generation?: Generation;
  #lastKeyframeRequest = 0;
  #keyframeTimer?: NodeJS.Timeout;
  #restarts = 0;
  #starting?: Promise<void>;
  readonly #log: Logger;
  framesOut = 0;
  keyframeRequests = 0;

  constructor(
    readonly key: string,
    readonly composition: Composition,
    readonly codec: VideoCodec,
    readonly bitrate: number,
    private readonly deps: ViewDeps,
    private readonly options: ViewOptions = {},
  ) {
    super();
    this.setMaxListeners(0); // one listener per viewer sharing this view, however many
    this.#log = deps.log.child({ view: key.length > 40 ? key.slice(0, 40) + '…' : key });
  }

  get closed(): boolean {
    return this.#closed;
  }

  start(): Promise<void> {
    this.#starting ??= this.#start();
    return this.#starting;
  }

  async #spec(rtpPort: number): Promise<CompositeSpec> {
    const c = this.composition;
    const r = this.deps.renderer;
    const tiles = await compositeTiles(c, r, this.deps.channelOf);
    return {
      width: c.width,
      height: c.height,
      fps: c.fps,
      codec: this.codec,
      bitrate: this.bitrate,
      tiles,
      background: await r.waitingCard(c.width, c.height, this.options.waitingText),
      inputTimeoutNs: BigInt(this.deps.inputTimeoutMs) * 1_000_000n,
      rtpPort,
      gopSeconds: this.options.gopSeconds,
      threads: this.options.threads,
      steadyTiles: this.options.steadyTiles,
    };
  }

  async #start(): Promise<void> {
    if (this.#closed) return;
    const generation: Generation = { startMs: 0, lastTs: 0, wraps: 0 };
    this.#udp ??= await LocalUdp.open((buf) => this.#onPacket(buf, generation));
    const launch = compositeLaunch(await this.#spec(this.#udp.port), this.deps.presets);
    if (this.#closed) return;
    const p = new GstPipeline(launch);
    this.#pipeline = p;
    this.#generation = generation;
    generation.startMs = p.play((e) => {
      if (e.type === 'error') {
        this.#log.error(`pipeline error in element ${e.element}: ${e.message}`);
        this.#restart();
      } else if (e.type === 'warning') {
        this.#log.warn(`pipeline warning in element ${e.element}: ${e.message}`);
      }
    });
    this.#log.debug('composite started', { tiles: this.composition.tiles.length });
  }

  #restart(): void {
    if (this.#closed) return;
    void this.#pipeline?.close();
    this.#pipeline = undefined;
    if (++this.#restarts > 5) {
      this.#log.error('composite failed 5 times; giving up on it');
      return;
    }
    this.#udp?.close();
    this.#udp = undefined;
    this.#starting = undefined;
    setTimeout(() => void this.start().catch((err) => this.#log.error(`restart failed: ${err.message}`)), 200);
  }

  #onPacket(packet: Buffer, generation: Generation): void {
    if (generation !== this.#generation || this.#closed) return;
    const rtp = parseRtp(packet);
    if (!rtp) return;
    const keyframe = isKeyframeStart(this.codec, packet, rtp);
    if (rtp.marker) this.framesOut++;
    if (rtp.timestamp < generation.lastTs && generation.lastTs - rtp.timestamp > 0x80000000) generation.wraps++;
    generation.lastTs = rtp.timestamp;
    const ptsMs = generation.startMs + (generation.wraps * 0x100000000 + rtp.timestamp) / 90;
    this.emit('packet', { packet, rtp, keyframe, source: generation, ptsMs } satisfies ViewPacket);
  }

  /** Asks the encoder for a keyframe, at most every 250 ms; a request inside that window is deferred. */
  requestKeyframe(): void {
    if (this.#closed || this.#keyframeTimer) return;
    const wait = this.#lastKeyframeRequest + 250 - performance.now();
    const fire = () => {
      this.#keyframeTimer = undefined;
      this.#lastKeyframeRequest = performance.now();
      this.keyframeRequests++;
      this.#pipeline?.forceKeyUnit(EL.videoPay);
    };
    if (wait <= 0) fire();
    else this.#keyframeTimer = setTimeout(fire, wait);
  }

  /** Stops the composite; resolves when its pipeline has stopped. Safe to call twice. */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      if (this.#keyframeTimer) clearTimeout(this.#keyframeTimer);
      this.#udp?.close();
      this.removeAllListeners();
      this.#log.debug('composite closed');
    }
    return this.#pipeline?.close() ?? Promise.resolve();
  }
}
