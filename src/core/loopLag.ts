import { createLogger } from './log.js';

/**
 * Watches this thread's event loop: every stall over 100 ms is logged, and the longest is kept.
 * Every thread of the server runs one (the control thread, each media worker), so a stall can be
 * traced to the thread that had it.
 */
export class LoopLagMonitor {
  readonly #timer: NodeJS.Timeout;
  /** Longest stall seen, in ms. */
  maxLagMs = 0;

  constructor(thread: string, periodMs = 50) {
    const log = createLogger(thread);
    let last = performance.now();
    this.#timer = setInterval(() => {
      const now = performance.now();
      const lag = now - last - periodMs;
      last = now;
      if (lag > this.maxLagMs) this.maxLagMs = Math.round(lag);
      if (lag > 100) log.warn(`event loop was blocked for ${Math.round(lag)} ms`);
    }, periodMs);
    this.#timer.unref();
  }

  close(): void {
    clearInterval(this.#timer);
  }
}
