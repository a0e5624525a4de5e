/**
 * The control thread's handle on a pipeline that lives in the GStreamer worker
 * (src/workers/gstWorker.ts): the same operations as GstPipeline, as messages. Starting one
 * returns once it plays, with the instant it went to PLAYING and the ports its udpsrcs bound.
 */
import crypto from 'node:crypto';
import type { BusEvent } from './native.js';
import type { VideoCodec } from '../core/pipelines.js';
import type { GstWorker } from '../workers/MediaWorker.js';
import type { GstRequests } from '../workers/protocol.js';

export class GstHost {
  readonly #bus = new Map<string, (e: BusEvent) => void>();
  readonly #recorders = new Map<string, RecorderHandlers>();

  constructor(readonly worker: GstWorker) {
    const ch = worker.channel;
    ch.on('pipeline.bus', ({ id, type, element, message }) => this.#bus.get(id)?.({ type, element, message, raw: {} }));
    ch.on('recorder.failed', ({ id, reason }) => this.#recorders.get(id)?.failed(reason));
    ch.on('recorder.switched', ({ id, to, from }) => this.#recorders.get(id)?.switched(to, from));
    ch.on('recorder.keyframe', ({ id, key }) => this.#recorders.get(id)?.keyframe(key));
  }

  /** Starts a recording's recorder (the muxer into `launch`'s file) in the worker. */
  async startRecorder(launch: string, handlers: RecorderHandlers): Promise<RemoteRecorder> {
    const id = crypto.randomUUID();
    this.#recorders.set(id, handlers);
    try {
      const { feedPort, mixPort } = await this.worker.channel.request('recorder.start', { id, launch });
      return new RemoteRecorder(this, id, feedPort, mixPort);
    } catch (err) {
      this.#recorders.delete(id);
      throw err;
    }
  }

  forgetRecorder(id: string): void {
    this.#recorders.delete(id);
  }

  /** Builds and starts `launch` in the worker; bus errors, warnings and EOS go to `onBus`. */
  async start(launch: string, opts: { ports?: string[]; onBus?: (e: BusEvent) => void; signal?: AbortSignal } = {}): Promise<RemotePipeline> {
    const id = crypto.randomUUID();
    if (opts.onBus) this.#bus.set(id, opts.onBus);
    // The owner gave up on it while it waited its turn to be built: the worker skips it.
    const cancel = () => void this.worker.channel.request('pipeline.close', { id }).catch(() => undefined);
    opts.signal?.addEventListener('abort', cancel, { once: true });
    try {
      const { startMs, ports } = await this.worker.channel.request('pipeline.start', { id, launch, ports: opts.ports }, undefined, 60_000);
      return new RemotePipeline(this, id, startMs, ports);
    } catch (err) {
      this.#bus.delete(id);
      throw err;
    } finally {
      opts.signal?.removeEventListener('abort', cancel);
    }
  }

  forget(id: string): void {
    this.#bus.delete(id);
  }
}

export class RemotePipeline {
  #closed = false;
  #stopped?: Promise<void>;

  constructor(
    private readonly host: GstHost,
    readonly id: string,
    /** nowMs() when it went to PLAYING: its running time 0. */
    readonly startMs: number,
    /** The ports its named udpsrcs bound. */
    readonly ports: Record<string, number>,
  ) {}

  get closed(): boolean {
    return this.#closed;
  }

  get #channel() {
    return this.host.worker.channel;
  }

  get(element: string, prop: string): Promise<unknown> {
    return this.#channel.request('pipeline.get', { id: this.id, element, prop });
  }

  set(element: string, prop: string, value: string | number | boolean): void {
    if (this.#closed) return;
    void this.#channel.request('pipeline.set', { id: this.id, element, prop, value }).catch(() => undefined);
  }

  /** Asks for a keyframe: name an element downstream of the encoder (the event travels upstream). */
  forceKeyUnit(element: string): void {
    if (this.#closed) return;
    void this.#channel.request('pipeline.keyframe', { id: this.id, element }).catch(() => undefined);
  }

  /** Stops it; resolves once stopped. Safe to call twice. */
  close(): Promise<void> {
    if (this.#stopped) return this.#stopped;
    this.#closed = true;
    this.host.forget(this.id);
    this.#stopped = this.#channel.request('pipeline.close', { id: this.id }).catch(() => undefined);
    return this.#stopped;
  }
}

export interface RecorderHandlers {
  failed: (reason: string) => void;
  switched: (to: string, from: string | undefined) => void;
  keyframe: (key: string) => void;
}

/** The control thread's handle on a recording's media side (src/media/RecorderMedia.ts). */
export class RemoteRecorder {
  #closed = false;

  constructor(
    private readonly host: GstHost,
    readonly id: string,
    /** Where the recording's composites send their video, and the mixer its full mix. */
    readonly feedPort: number,
    readonly mixPort: number,
  ) {}

  #call<M extends 'recorder.generation' | 'recorder.started' | 'recorder.follow' | 'recorder.forget'>(method: M, data: Omit<GstRequests[M][0], 'id'>): void {
    if (this.#closed) return;
    void this.host.worker.channel.request(method, { id: this.id, ...data } as GstRequests[M][0]).catch(() => undefined);
  }

  generation(key: string, codec: VideoCodec, ssrc: number): void {
    this.#call('recorder.generation', { key, codec, ssrc });
  }
  started(key: string, ssrc: number, startMs: number): void {
    this.#call('recorder.started', { key, ssrc, startMs });
  }
  follow(key: string): void {
    this.#call('recorder.follow', { key });
  }
  forget(key: string): void {
    this.#call('recorder.forget', { key });
  }

  videoPackets(): Promise<number> {
    return this.host.worker.channel.request('recorder.videoPackets', { id: this.id });
  }

  /** Finalises the file; false when the muxer did not finish in time. */
  async stop(): Promise<boolean> {
    if (this.#closed) return false;
    this.#closed = true;
    try {
      return await this.host.worker.channel.request('recorder.stop', { id: this.id });
    } finally {
      this.host.forgetRecorder(this.id);
    }
  }

  /** Stops without finalising. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.host.forgetRecorder(this.id);
    await this.host.worker.channel.request('recorder.close', { id: this.id }).catch(() => undefined);
  }
}
