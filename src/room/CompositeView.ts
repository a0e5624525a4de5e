import crypto from 'node:crypto';
import type { Composition } from '../core/composition.js';
import { TypedEmitter } from '../core/events.js';
import type { Logger } from '../core/log.js';
import { compositeLaunch, distinctPorts, EL, udpClients, type CompositeSpec, type Presets, type VideoCodec } from '../core/pipelines.js';
import { compositeTiles } from './compositeTiles.js';
import type { GstHost, RemotePipeline } from '../gst/remote.js';
import { RestartPolicy } from '../media/restartPolicy.js';
import type { ImageRenderer } from '../render/images.js';
import type { TileScalers } from './TileScalers.js';

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

export interface ViewDeps {
  presets: Presets;
  /** Where its pipeline is built and runs: the GStreamer worker. */
  gst: GstHost;
  renderer: ImageRenderer;
  channelOf: (participantId: string) => string;
  /** Shared per-size scalers; without them each tile is scaled in the composite itself. */
  scalers?: TileScalers;
  inputTimeoutMs: number;
  log: Logger;
}

export interface CompositeViewEvents extends Record<string, unknown> {
  /** A run of the pipeline is about to start: its packets carry `ssrc`. */
  generation: { ssrc: number };
  /** That run is playing: `startMs` (nowMs clock) is its running time 0. */
  started: { ssrc: number; startMs: number };
  /** The composite failed past its restart budget and is closed; its room should replace it. */
  failed: Error;
  /** Closed, by its owner or after failing. */
  closed: void;
}

/**
 * One compositor and one encoder for one exact composition. Immutable: a different composition is
 * a different CompositeView. Viewers whose compositions are identical share it. Its RTP goes by
 * multiudpsink straight to the threads whose viewers follow it (`updatePorts`), never through this
 * one; it carries a fresh SSRC for each run of the pipeline.
 */
export class CompositeView extends TypedEmitter<CompositeViewEvents> {
  #pipeline?: RemotePipeline;
  #closed = false;
  #lastKeyframeRequest = -Infinity;
  #keyframeTimer?: NodeJS.Timeout;
  /** A keyframe was asked for while no pipeline ran. */
  #keyframeWanted = false;
  static readonly KEYFRAME_INTERVAL_MS = 1000;
  readonly #restarts = new RestartPolicy();
  #starting?: Promise<void>;
  /** Aborted on close: a build still waiting its turn in the GStreamer worker is skipped. */
  readonly #abort = new AbortController();
  #ports: number[] = [];
  /** Scaled channels this composite holds (released when it closes or rebuilds). */
  #scaled: string[] = [];
  readonly #log: Logger;
  /** Who follows this view (viewers, recordings), with the port their thread receives on. */
  readonly followers = new Map<string, number>();
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
    this.#log = deps.log.child({ view: key.length > 40 ? key.slice(0, 40) + '…' : key });
  }

  get closed(): boolean {
    return this.#closed;
  }

  start(): Promise<void> {
    this.#starting ??= this.#start();
    return this.#starting;
  }

  async #spec(ssrc: number): Promise<CompositeSpec> {
    const c = this.composition;
    const r = this.deps.renderer;
    const scalers = this.deps.scalers;
    this.#releaseScaled();
    const tiles = await compositeTiles(c, r, async (id, w, h) => {
      if (!scalers) return this.deps.channelOf(id);
      const ch = await scalers.acquire(id, w, h);
      this.#scaled.push(ch);
      return ch;
    });
    return {
      width: c.width,
      height: c.height,
      fps: c.fps,
      codec: this.codec,
      bitrate: this.bitrate,
      tiles,
      background: await r.waitingCard(c.width, c.height, this.options.waitingText),
      inputTimeoutNs: BigInt(this.deps.inputTimeoutMs) * 1_000_000n,
      rtpPorts: this.#ports,
      ssrc,
      gopSeconds: this.options.gopSeconds,
      threads: this.options.threads,
      steadyTiles: this.options.steadyTiles,
    };
  }

  async #start(): Promise<void> {
    if (this.#closed) return;
    const ssrc = crypto.randomInt(1, 0xffffffff);
    const spec = await this.#spec(ssrc);
    if (this.#closed) {
      this.#releaseScaled();
      return;
    }
    const launched = (this.#ports = spec.rtpPorts = this.#wantedPorts());
    // Followers learn the SSRC before the first packet can reach them.
    this.safeEmit('generation', { ssrc });
    const p = await this.deps.gst.start(compositeLaunch(spec, this.deps.presets), {
      signal: this.#abort.signal,
      onBus: (e) => {
        if (e.type === 'error') {
          this.#log.error(`pipeline error in element ${e.element}: ${e.message}`);
          this.#restart(new Error(`${e.element}: ${e.message}`));
        } else if (e.type === 'warning') {
          this.#log.warn(`pipeline warning in element ${e.element}: ${e.message}`);
        }
      },
    });
    if (this.#closed) {
      await p.close();
      return;
    }
    this.#pipeline = p;
    // Followers that came or went while it started: those that came missed its first keyframe.
    if (this.#ports.join() !== launched.join()) {
      p.set(EL.videoOut, 'clients', udpClients(this.#ports));
      this.#keyframeWanted = true;
    }
    // A keyframe asked for while there was no pipeline to ask.
    if (this.#keyframeWanted) {
      this.#keyframeWanted = false;
      this.requestKeyframe();
    }
    this.#restarts.started();
    this.safeEmit('started', { ssrc, startMs: p.startMs });
    this.#log.debug('composite started', { tiles: this.composition.tiles.length });
  }

  #restart(err: Error): void {
    if (this.#closed) return;
    void this.#pipeline?.close();
    this.#pipeline = undefined;
    const again = this.#restarts.schedule(() => {
      this.#starting = undefined;
      void this.start().catch((e) => this.#restart(e as Error));
    });
    if (!again) {
      this.#log.error('composite failed 5 times; giving up on it');
      this.safeEmit('failed', err);
      void this.close();
    }
  }

  #wantedPorts(): number[] {
    return distinctPorts(this.followers.values());
  }

  /** Sends to exactly the threads whose viewers follow this view now. */
  updatePorts(): void {
    const want = this.#wantedPorts();
    if (want.join() === this.#ports.join()) return;
    this.#ports = want;
    if (this.#pipeline && !this.#pipeline.closed) this.#pipeline.set(EL.videoOut, 'clients', udpClients(want));
  }

  /**
   * Asks the encoder for a keyframe, at most one a second whatever number of viewers ask (each
   * keyframe costs every follower's link a burst); a request inside that second is deferred to its
   * end, and one made while the pipeline is (re)starting is made once it runs.
   */
  requestKeyframe(): void {
    if (this.#closed || this.#keyframeTimer) return;
    const wait = this.#lastKeyframeRequest + CompositeView.KEYFRAME_INTERVAL_MS - performance.now();
    const fire = () => {
      this.#keyframeTimer = undefined;
      if (!this.#pipeline || this.#pipeline.closed) {
        this.#keyframeWanted = true;
        return;
      }
      this.#lastKeyframeRequest = performance.now();
      this.keyframeRequests++;
      this.#pipeline.forceKeyUnit(EL.videoPay);
    };
    if (wait <= 0) fire();
    else this.#keyframeTimer = setTimeout(fire, wait);
  }

  #releaseScaled(): void {
    for (const ch of this.#scaled.splice(0)) this.deps.scalers?.release(ch);
  }

  /** Stops the composite; resolves when its pipeline has stopped. Safe to call twice. */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#abort.abort();
      this.#restarts.cancel();
      if (this.#keyframeTimer) clearTimeout(this.#keyframeTimer);
      this.safeEmit('closed');
      this.removeAllListeners();
      this.#log.debug('composite closed');
    }
    const stopped = this.#pipeline?.close() ?? Promise.resolve();
    // The scalers go once nothing reads them any more.
    return stopped.then(() => this.#releaseScaled());
  }
}
