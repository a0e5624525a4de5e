/**
 * Which composite views one viewer holds, as its room sees them: the view on screen, the one it
 * switches to at its next keyframe, and any view the room replaced while the viewer's RTC worker
 * may already have switched to it. Its RTC worker decides the switch (at a keyframe of a view that
 * flows steadily, src/media/VideoOut.ts) and says so by `peer.switched`, or in its answer to a
 * follow request; a view is let go only once the worker's word says it neither shows nor waits for
 * it, and not while a follow request is on its way. Closing a replaced pending view at once left a
 * viewer with no picture for 0.8-4 s when the worker had switched to it meanwhile (its
 * `peer.switched` crossing the new request; test/e2e/joins.test.ts, a guest leaving right after
 * going live). Pure: the room adds and removes the view's followers and sends the requests.
 */
export class ViewHolds {
  /** The view on screen, and the one it switches to at its next keyframe (keys). */
  shown?: string;
  pending?: string;
  readonly #held = new Set<string>();
  #inFlight = 0;

  /** Every view this viewer is among the followers of. */
  get held(): ReadonlySet<string> {
    return this.#held;
  }

  /**
   * The room points the viewer at `key`. `send`: whether a follow request is to go to the worker
   * (then `answered` must be called with its answer); `hold`: whether the viewer must be added to
   * the view's followers (it did not hold it yet).
   */
  point(key: string): { send: boolean; hold: boolean } {
    if ((this.pending ?? this.shown) === key) return { send: false, hold: false };
    // Back to the view on screen before the pending one was switched to: it stays, and the worker
    // drops the pending one. The first view is shown at once (from its first keyframe); later
    // ones once they flow steadily.
    if (this.shown === key) this.pending = undefined;
    else if (this.shown) this.pending = key;
    else this.shown = key;
    const hold = !this.#held.has(key);
    this.#held.add(key);
    this.#inFlight++;
    return { send: true, hold };
  }

  /**
   * The worker answered a follow request with what it shows and waits for (undefined: it could not
   * be asked). Returns the views to let go.
   */
  answered(state: { shown?: string; pending?: string } | undefined): string[] {
    this.#inFlight--;
    // Only the last answer tells the state after every request sent.
    if (state && this.#inFlight === 0) {
      this.shown = state.shown;
      this.pending = state.pending;
    }
    return this.#release();
  }

  /** The worker switched the viewer's picture to `key`. Returns the views to let go. */
  switched(key: string): string[] {
    this.shown = key;
    if (this.pending === key) this.pending = undefined;
    return this.#release();
  }

  /** View `key` is gone (it failed): nothing to let go of. */
  forget(key: string): void {
    this.#held.delete(key);
    if (this.shown === key) this.shown = undefined;
    if (this.pending === key) this.pending = undefined;
  }

  /** The viewer leaves: every view it held, to let go of. */
  releaseAll(): string[] {
    const all = [...this.#held];
    this.#held.clear();
    this.shown = this.pending = undefined;
    return all;
  }

  #release(): string[] {
    if (this.#inFlight > 0) return [];
    const out = [...this.#held].filter((k) => k !== this.shown && k !== this.pending);
    for (const k of out) this.#held.delete(k);
    return out;
  }
}
