/**
 * The one module that imports gstreamer-superficial. Everything else runs pipelines through
 * GstPipeline, which adds: typed errors, an idempotent close(), bus messages with element names,
 * and buffer pushes with explicit timestamps.
 *
 * Thread pool: pollBus() holds one libuv pool thread per running pipeline while it waits, and
 * stop() releases it (the state change posts a message that wakes the wait). bin/mcu.cjs sizes
 * UV_THREADPOOL_SIZE before anything uses the pool.
 */
import { createRequire } from 'node:module';
import { PipelineError } from '../core/errors.js';

const require = createRequire(import.meta.url);

interface NativeElement {
  [prop: string]: unknown;
  push?(buf: Buffer, pts?: Buffer): void;
}
interface NativePipeline {
  play(): void;
  stop(): void;
  sendEOS(): void;
  findChild(name: string): NativeElement | undefined;
  forceKeyUnit(name: string, count: number): boolean;
  pollBus(cb: (msg: Record<string, unknown>) => void): void;
}
interface NativeModule {
  Pipeline: new (launch: string) => NativePipeline;
}

let native: NativeModule | undefined;
function load(): NativeModule {
  native ??= require('gstreamer-superficial') as NativeModule;
  return native;
}

export interface BusEvent {
  /** 'error' | 'warning' | 'eos' | ... */
  type: string;
  /** The element that posted it. */
  element: string;
  message?: string;
  raw: Record<string, unknown>;
}

export class GstPipeline {
  readonly #p: NativePipeline;
  readonly #elements = new Map<string, NativeElement>();
  #closed = false;
  #onBus?: (e: BusEvent) => void;
  readonly #eosWaiters: Array<() => void> = [];

  /** Parses the launch string; throws PipelineError if GStreamer refuses it. */
  constructor(readonly launch: string) {
    try {
      this.#p = new (load().Pipeline)(launch);
    } catch (err) {
      throw new PipelineError(`GStreamer could not build the pipeline: ${(err as Error).message}`);
    }
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Starts the pipeline and delivers error, warning and eos messages to onBus. */
  play(onBus?: (e: BusEvent) => void): void {
    if (this.#closed) throw new PipelineError('pipeline is closed');
    this.#onBus = onBus;
    this.#p.pollBus((msg) => this.#handleBus(msg));
    this.#p.play();
  }

  #handleBus(msg: Record<string, unknown>): void {
    // gstreamer-superficial copies the message structure over `type`; the GstMessage type is the
    // structure name for stream-status and similar, so only these three are reliable.
    const type = String(msg.type ?? '');
    const element = String(msg.name ?? msg._src_element_name ?? '?');
    if (type === 'eos') {
      this.#eosWaiters.splice(0).forEach((w) => w());
    }
    if (type === 'error' || type === 'warning' || type === 'eos') {
      this.#onBus?.({ type, element, message: msg.message as string | undefined, raw: msg });
    }
  }

  #element(name: string): NativeElement {
    let el = this.#elements.get(name);
    if (!el) {
      el = this.#p.findChild(name);
      if (!el) throw new PipelineError(`no element named "${name}" in pipeline`, name);
      this.#elements.set(name, el);
    }
    return el;
  }

  has(name: string): boolean {
    return this.#p.findChild(name) !== undefined;
  }

  set(name: string, prop: string, value: unknown): void {
    if (this.#closed) return;
    this.#element(name)[prop] = value;
  }

  get(name: string, prop: string): unknown {
    return this.#element(name)[prop];
  }

  /** Pushes one buffer into an appsrc; ptsNs, when given, becomes the buffer's PTS. */
  push(name: string, data: Buffer, ptsNs?: bigint): void {
    if (this.#closed) return;
    const el = this.#element(name);
    if (ptsNs === undefined) {
      el.push!(data);
    } else {
      const pts = Buffer.allocUnsafe(8);
      pts.writeBigUInt64BE(ptsNs);
      el.push!(data, pts);
    }
  }

  /** Asks for a keyframe: name an element downstream of the encoder (the event travels upstream). */
  forceKeyUnit(name: string): void {
    if (this.#closed) return;
    this.#p.forceKeyUnit(name, 1);
  }

  /** Sends EOS and resolves when it reaches the sinks, or after timeoutMs. */
  async drain(timeoutMs: number): Promise<boolean> {
    if (this.#closed) return false;
    const done = new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(false), timeoutMs);
      this.#eosWaiters.push(() => {
        clearTimeout(t);
        resolve(true);
      });
    });
    this.#p.sendEOS();
    return done;
  }

  /** Stops the pipeline and frees its bus thread. Safe to call twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#elements.clear();
    this.#onBus = undefined;
    this.#p.stop();
    this.#eosWaiters.splice(0).forEach((w) => w());
  }
}
