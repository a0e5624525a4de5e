/**
 * Active-speaker decision from audio levels, with hysteresis: a new speaker must be the loudest
 * (above a floor) for `holdMs` before it takes the floor, so the decision does not flap. Pure:
 * levels and times in, speaker out.
 */
export interface SpeakerOptions {
  holdMs: number;
  /** Quieter than this (dBFS) is not speech. */
  floorDb: number;
}

export class SpeakerDetector {
  #current?: string;
  #candidate?: string;
  #since = 0;
  readonly #smoothed = new Map<string, number>();

  constructor(private readonly opts: SpeakerOptions = { holdMs: 1500, floorDb: -50 }) {}

  get current(): string | undefined {
    return this.#current;
  }

  /** Feeds one round of levels (dBFS by participant) at time `now` (ms). Returns true if the speaker changed. */
  update(levels: Map<string, number>, now: number): boolean {
    for (const id of [...this.#smoothed.keys()]) if (!levels.has(id)) this.#smoothed.delete(id);
    let loudest: string | undefined;
    let best = this.opts.floorDb;
    for (const [id, db] of levels) {
      const s = 0.5 * (this.#smoothed.get(id) ?? db) + 0.5 * db;
      this.#smoothed.set(id, s);
      if (s > best) {
        best = s;
        loudest = id;
      }
    }
    if (this.#current && !levels.has(this.#current)) {
      this.#current = undefined; // the speaker left
    }
    if (!loudest || loudest === this.#current) {
      this.#candidate = undefined;
      return false;
    }
    if (loudest !== this.#candidate) {
      this.#candidate = loudest;
      this.#since = now;
    }
    // The first speaker takes the floor at once; a change needs the hold time.
    if (this.#current === undefined || now - this.#since >= this.opts.holdMs) {
      this.#current = loudest;
      this.#candidate = undefined;
      return true;
    }
    return false;
  }
}
