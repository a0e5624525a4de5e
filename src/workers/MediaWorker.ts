/**
 * The control thread's handle on one media worker thread (mediasoup's Worker): it spawns the
 * thread, carries requests and notifications over a Channel, and reports `died` when the thread
 * exits or throws; the owner decides what to do then (Mcu restarts it).
 */
import { Worker } from 'node:worker_threads';
import { TypedEmitter } from '../core/events.js';
import { Channel, type EventMap, type PortLike, type RequestMap } from './channel.js';
import type { GstEvents, GstRequests, MixerEvents, MixerRequests, NoEvents, NoRequests, RtcEvents, RtcRequests } from './protocol.js';

export type WorkerKind = 'rtc' | 'mixer' | 'gst';

const SCRIPT: Record<WorkerKind, URL> = {
  rtc: new URL('./rtcWorker.js', import.meta.url),
  mixer: new URL('./mixerWorker.js', import.meta.url),
  gst: new URL('./gstWorker.js', import.meta.url),
};

export class MediaWorker<Req extends RequestMap, Ev extends EventMap> extends TypedEmitter<{ died: Error }> {
  /**
   * Every worker reports four times a second. One that has sent nothing for this many of the
   * watchdog's one-second rounds is hung (a loop that never yields, a native call that never
   * returns): it is reported `died` like a thread that exited, and ended where it can be.
   */
  static readonly HUNG_ROUNDS = 10;
  readonly channel: Channel<Req, NoRequests, NoEvents, Ev>;
  readonly #worker: Worker;
  #closed = false;
  #heard = true;
  #missedRounds = 0;
  #watchdog?: NodeJS.Timeout;
  /** Peers (or rooms) placed on this worker, for placement by load. */
  load = 0;
  /** The thread's longest event-loop stall, as it last reported. */
  maxLoopLagMs = 0;
  /** Errors the thread logged and survived since it started (src/workers/strayErrors.ts). */
  strayErrors = 0;

  constructor(
    readonly kind: WorkerKind,
    readonly index: number,
  ) {
    super();
    this.#worker = new Worker(SCRIPT[kind], { name: `${kind}-${index}` });
    this.channel = new Channel(this.#worker as unknown as PortLike);
    this.#worker.on('error', (err) => this.#died(err));
    this.#worker.on('exit', (code) => this.#died(new Error(`${kind} worker ${index} exited with code ${code}`)));
    this.#worker.on('message', () => (this.#heard = true));
  }

  #died(err: Error): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#watchdog);
    this.channel.close('worker died');
    this.safeEmit('died', err);
  }

  /**
   * Starts the watchdog, once the worker has started. It counts rounds, not time: a stall of the
   * control thread itself delays the rounds (and, on waking, timers run before the worker's
   * queued messages are read), so it costs a worker one missed round, never a false alarm.
   */
  watch(): void {
    this.#watchdog = setInterval(() => {
      if (this.#heard) {
        this.#heard = false;
        this.#missedRounds = 0;
        return;
      }
      if (++this.#missedRounds < MediaWorker.HUNG_ROUNDS) return;
      this.#died(new Error(`${this.name} sent nothing for ${MediaWorker.HUNG_ROUNDS} s: hung`));
      // A thread stuck in JavaScript is stopped; the GStreamer worker's native bindings must not
      // be torn down under it, so that one is only let go.
      if (this.kind === 'gst') this.#worker.unref();
      else void this.#worker.terminate();
    }, 1000);
    this.#watchdog.unref();
  }

  /** A name for logs and metrics: rtc-0, rtc-1, mixer-0. */
  get name(): string {
    return `${this.kind}-${this.index}`;
  }

  get threadId(): number {
    return this.#worker.threadId;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Ends the thread. `terminate` stops it at once; otherwise (the GStreamer worker, whose native
   * bindings must not be torn down under a pending bus callback) it is only let go, and ends with
   * the process.
   */
  async close(opts: { terminate?: boolean } = {}): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#watchdog);
    this.channel.close();
    this.removeAllListeners();
    if (opts.terminate === false) this.#worker.unref();
    else await this.#worker.terminate();
  }
}

export type RtcWorker = MediaWorker<RtcRequests, RtcEvents> & { feedPort: number };
export type MixerWorker = MediaWorker<MixerRequests, MixerEvents>;
export type GstWorker = MediaWorker<GstRequests, GstEvents> & { pipelines: number };

export async function spawnGstWorker(logLevel: string): Promise<GstWorker> {
  const w = new MediaWorker<GstRequests, GstEvents>('gst', 0) as GstWorker;
  w.pipelines = 0;
  await w.channel.request('init', { logLevel });
  w.watch();
  return w;
}

export async function spawnRtcWorker(index: number, logLevel: string, nice: number): Promise<RtcWorker> {
  const w = new MediaWorker<RtcRequests, RtcEvents>('rtc', index) as RtcWorker;
  w.feedPort = (await w.channel.request('init', { logLevel, nice })).feedPort;
  w.watch();
  return w;
}

export async function spawnMixerWorker(logLevel: string, nice: number, mixSpeakers: number): Promise<MixerWorker> {
  const w = new MediaWorker<MixerRequests, MixerEvents>('mixer', 0);
  await w.channel.request('init', { logLevel, nice, mixSpeakers });
  w.watch();
  return w;
}
