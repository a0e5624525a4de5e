/**
 * The one restart policy for anything that runs a pipeline: rebuild after `delayMs`, at most
 * `maxRestarts` times in a row; a run that stayed up for `healthyMs` resets the count. When it
 * gives up, the owner reports upward (a view to its room, a participant to its log).
 */
export class RestartPolicy {
  #count = 0;
  #lastStart = 0;
  #timer?: NodeJS.Timeout;

  constructor(
    private readonly opts: { maxRestarts?: number; delayMs?: number; healthyMs?: number } = {},
  ) {}

  started(): void {
    this.#lastStart = performance.now();
  }

  /** Schedules `restart` and returns true, or returns false when the budget is spent. */
  schedule(restart: () => void): boolean {
    const { maxRestarts = 5, delayMs = 200, healthyMs = 30_000 } = this.opts;
    if (this.#lastStart > 0 && performance.now() - this.#lastStart > healthyMs) this.#count = 0;
    if (++this.#count > maxRestarts) return false;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      restart();
    }, delayMs);
    return true;
  }

  cancel(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
