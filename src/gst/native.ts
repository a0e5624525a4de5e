/**
 * The one module that imports gstreamer-superficial. Everything else runs pipelines through
 * GstPipeline, which adds: typed errors, an idempotent close(), bus messages with element names,
 * and buffer pushes with explicit timestamps.
 *
 * Thread pool: pollBus() holds one libuv pool thread per running pipeline while it waits.
 * bin/threadpool.cjs sizes UV_THREADPOOL_SIZE before anything uses the pool. Stopping needs care:
 * stop() flushes the bus, and a poll job that starts after that flush waits forever (holding its
 * thread, and hanging process exit). So close() pauses the pipeline and stops it from inside the
 * bus callback that the state-change messages wake, where the binding queues no further poll.
 *
 * Releasing: the published gstreamer-superficial never frees a pipeline. Its wrapper's destructor
 * is empty, pollBus() pins the wrapper for good and leaks a bus reference on every poll, and
 * findChild(), property reads and forceKeyUnit() leak references and values. Every pipeline that
 * ever ran kept its bus (a socket pair), its elements and their memory until the process ended,
 * whether V8 collected the wrapper or not. patches/gstreamer-superficial+1.7.4.patch fixes those
 * and adds dispose(), which close() calls once the pipeline is stopped; element handles let go of
 * their elements when collected (the GStreamer worker collects after pipelines stop).
 */
import { createRequire } from 'node:module';
import { nowMs } from '../core/clock.js';
import { PipelineError } from '../core/errors.js';
import { createLogger } from '../core/log.js';

const require = createRequire(import.meta.url);

interface NativeElement {
  [prop: string]: unknown;
  push?(buf: Buffer, pts?: Buffer): void;
}
interface NativePipeline {
  play(): void;
  stop(): void;
  sendEOS(): void;
  pause(): void;
  findChild(name: string): NativeElement | undefined;
  forceKeyUnit(name: string, count: number): boolean;
  pollBus(cb: (msg: Record<string, unknown>) => void): void;
  /** Patched binding only: stops the pipeline and frees it now. */
  dispose?(): void;
}
interface NativeModule {
  Pipeline: new (launch: string) => NativePipeline;
  /** Patched binding only: glibc's malloc_trim(0). */
  mallocTrim?(): boolean;
}

const log = createLogger('gst');

/** Runs a synchronous GStreamer call; one that holds the event loop for long is worth knowing about. */
function timed<T>(what: string, fn: () => T): T {
  const t0 = performance.now();
  try {
    return fn();
  } finally {
    const ms = performance.now() - t0;
    if (ms > 50) log.warn(`${what} held the event loop for ${Math.round(ms)} ms`);
  }
}

let native: NativeModule | undefined;
function load(): NativeModule {
  if (!native) {
    native = require('gstreamer-superficial') as NativeModule;
    if (!canDispose()) {
      log.warn('gstreamer-superficial is not patched (no Pipeline.dispose): every pipeline leaks its bus sockets and memory; reinstall (patch-package) and rebuild it');
    }
  }
  return native;
}

/**
 * Gives the memory malloc holds free back to the kernel. Pipelines' frames come and go in many
 * threads' arenas, and glibc keeps what they freed (bin/mcu sets MALLOC_TRIM_THRESHOLD_ high on
 * purpose, so that no media thread waits on an munmap): after people leave, RSS stayed ~450 MB
 * above its start until this ran. malloc_trim() alone leaves each non-main arena's top chunk (up to
 * 64 MB each, 267 MB in all after 200 joins), so the patched binding also trims those tops, with a
 * low threshold for a moment and short-lived threads that take the arenas (see gstreamer.cpp in
 * the patch). madvise, which both use, does not take the lock that munmap does. Returns whether
 * any was released (false with an unpatched binding).
 */
export function releaseFreeMemory(): boolean {
  return timed('trimming malloc', () => load().mallocTrim?.() ?? false);
}

/** Whether the binding can free a pipeline (patches/gstreamer-superficial+1.7.4.patch is built in). */
export function canDispose(): boolean {
  return typeof load().Pipeline.prototype.dispose === 'function';
}

export interface BusEvent {
  /** 'error' | 'warning' | 'eos' | 'element' (an element's own message, e.g. videoanalyse's) */
  type: string;
  /** The element that posted it. */
  element: string;
  message?: string;
  raw: Record<string, unknown>;
}

/** Pipelines playing now (for /metrics). */
export let runningPipelines = 0;

export class GstPipeline {
  readonly #p: NativePipeline;
  readonly #elements = new Map<string, NativeElement>();
  #closed = false;
  #playing = false;
  #stopped?: Promise<void>;
  #stopNow?: () => void;
  #onBus?: (e: BusEvent) => void;
  readonly #eosWaiters: Array<() => void> = [];

  /** Parses the launch string; throws PipelineError if GStreamer refuses it. */
  constructor(readonly launch: string) {
    try {
      this.#p = timed('building a pipeline', () => new (load().Pipeline)(launch));
    } catch (err) {
      throw new PipelineError(`GStreamer could not build the pipeline: ${(err as Error).message}`);
    }
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Starts the pipeline and delivers error, warning and eos messages to onBus. Returns the
   * nowMs() instant it went to PLAYING: the pipeline's base time (its running time 0)
   * to within a fraction of a millisecond. Pausing first does the slow part of starting (opening
   * sockets and files, starting threads) before that instant, so the PLAYING step itself is short.
   */
  play(onBus?: (e: BusEvent) => void): number {
    if (this.#closed) throw new PipelineError('pipeline is closed');
    this.#onBus = onBus;
    this.#playing = true;
    runningPipelines++;
    this.#p.pollBus((msg) => this.#handleBus(msg));
    return timed('starting a pipeline', () => {
      this.#p.pause();
      this.#p.play();
      return nowMs();
    });
  }

  #handleBus(msg: Record<string, unknown>): void {
    if (this.#stopNow) {
      // Closing: stop here, inside the callback, so that no further poll is queued.
      this.#stopNow();
      return;
    }
    // gstreamer-superficial copies the message structure over `type`; the GstMessage type is the
    // structure name for stream-status and similar, so only these three are reliable.
    const type = String(msg.type ?? '');
    const element = String((type === 'element' ? msg._src_element_name : msg.name ?? msg._src_element_name) ?? '?');
    if (type === 'eos') {
      this.#eosWaiters.splice(0).forEach((w) => w());
    }
    if (type === 'error' || type === 'warning' || type === 'eos' || type === 'element') {
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

  set(name: string, prop: string, value: unknown): void {
    if (this.#closed) return;
    this.#element(name)[prop] = value;
  }

  get(name: string, prop: string): unknown {
    return timed(`reading ${name}.${prop}`, () => this.#element(name)[prop]);
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
    timed('a keyframe request', () => this.#p.forceKeyUnit(name, 1));
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

  /**
   * Stops the pipeline and frees its bus thread; resolves once it is stopped. Safe to call twice.
   * The pipeline is stopped within `graceMs` even if no bus message comes.
   */
  close(graceMs = 2000): Promise<void> {
    if (this.#stopped) return this.#stopped;
    this.#closed = true;
    this.#elements.clear();
    this.#onBus = undefined;
    this.#eosWaiters.splice(0).forEach((w) => w());
    if (!this.#playing) {
      this.#p.stop();
      this.#p.dispose?.();
      this.#stopped = Promise.resolve();
      return this.#stopped;
    }
    this.#stopped = new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        log.warn(`no bus message within ${graceMs} ms of pausing; stopping from outside`, { launch: this.launch.slice(0, 120) });
        this.#stopNow?.();
      }, graceMs);
      timer.unref?.();
      let done = false;
      this.#stopNow = () => {
        if (done) return;
        done = true;
        runningPipelines--;
        clearTimeout(timer);
        timed('stopping a pipeline', () => {
          this.#p.stop();
          // Frees it now: bus, elements, their memory (a poll still waiting is woken and ends).
          this.#p.dispose?.();
        });
        resolve();
      };
    });
    // Pausing posts state-changed messages at once (the bus is not flushing yet): they wake the
    // poller, or wait on the bus for one that has not started, and it stops the pipeline.
    timed('pausing a pipeline', () => this.#p.pause());
    return this.#stopped;
  }
}
