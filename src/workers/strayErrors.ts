/**
 * What a media worker does with an error nobody caught: an exception thrown in an event handler or
 * a timer, or a promise rejected that nobody awaited (werift starts many: handshakes, consent
 * checks, retransmissions).
 *
 * Node's default ends the thread, and a thread carries many people: an RTC worker's peers all
 * leave, and a mixer or GStreamer worker that ends closes every room. One peer's stray error must
 * not cost the others their call, so here the thread logs it and goes on. What a stray error
 * leaves broken is one peer's or one pipeline's, and the checks that exist for those remove it:
 * a peer that falls silent or whose connection fails, a pipeline's bus error. A thread that
 * exits or stops answering is still restarted (src/workers/MediaWorker.ts).
 *
 * The first error is logged with its stack, then at most one every 10 s with a count of those in
 * between, so a fault on every packet cannot flood the log. The count is reported to the control
 * thread (the `mcu_media_thread_stray_errors` metric).
 */
import type { Logger } from '../core/log.js';

const LOG_EVERY_MS = 10_000;

let count = 0;

/** Stray errors this thread has survived since it started. */
export const strayErrors = (): number => count;

/** Installs the handlers in this thread; once. */
export function surviveStrayErrors(log: Logger): void {
  let lastLogged = -Infinity;
  let unlogged = 0;
  const stray = (kind: string, err: unknown) => {
    count++;
    const now = performance.now();
    if (now - lastLogged < LOG_EVERY_MS) {
      unlogged++;
      return;
    }
    lastLogged = now;
    const more = unlogged ? ` (and ${unlogged} more since the last one logged)` : '';
    unlogged = 0;
    const what = err instanceof Error ? (err.stack ?? err.message) : String(err);
    log.error(`stray error (${kind}), survived: ${what}${more}`);
  };
  process.on('uncaughtException', (err) => stray('uncaught exception', err));
  process.on('unhandledRejection', (reason) => stray('unhandled rejection', reason));
}
