/**
 * A typed event emitter (mediasoup's EnhancedEventEmitter, smaller): listeners are typed by an
 * event map, and a listener that throws is logged instead of breaking the emitter (safeEmit).
 */
export class TypedEmitter<Events extends Record<string, unknown>> {
  readonly #listeners = new Map<keyof Events, Set<(data: never) => void>>();

  on<E extends keyof Events>(event: E, listener: (data: Events[E]) => void): () => void {
    let set = this.#listeners.get(event);
    if (!set) this.#listeners.set(event, (set = new Set()));
    set.add(listener as (data: never) => void);
    return () => this.off(event, listener);
  }

  off<E extends keyof Events>(event: E, listener: (data: Events[E]) => void): void {
    this.#listeners.get(event)?.delete(listener as (data: never) => void);
  }

  protected safeEmit<E extends keyof Events>(event: E, ...[data]: Events[E] extends void ? [] : [Events[E]]): void {
    for (const l of [...(this.#listeners.get(event) ?? [])]) {
      try {
        l(data as never);
      } catch (err) {
        process.emitWarning(`listener for ${String(event)} threw: ${(err as Error)?.stack ?? err}`);
      }
    }
  }

  protected removeAllListeners(): void {
    this.#listeners.clear();
  }
}
