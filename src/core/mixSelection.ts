/**
 * Which inputs the mix carries: the loudest few talkers (as FreeSWITCH's, Jitsi's and most large
 * conferencing mixers do), never everyone at once. Forty open microphones summed are noise, and a
 * small set lets everyone outside it share one encoded mix: an input that is not mixed hears exactly
 * the mix (it is not in it), so only the selected few need a mix-minus of their own. That turns one
 * Opus encoder per listener into at most `maxSpeakers + 1` per room.
 *
 * Pure: fed each 20 ms frame's level per input, on the mixer's clock.
 */

export interface MixSelectionOptions {
  /** How many inputs are mixed at once (0: every input, always). */
  maxSpeakers: number;
  /** A frame above this level (dBFS) is speech. */
  floorDb: number;
  /** A selected input stays selected this long after its last frame of speech, and is not
   * replaced by a louder one before it has been selected this long. */
  holdMs: number;
  /** A challenger takes the weakest talker's place only when it is this much louder (dB). */
  marginDb: number;
}

export const DEFAULT_MIX_SELECTION: MixSelectionOptions = { maxSpeakers: 4, floorDb: -50, holdMs: 1000, marginDb: 6 };

interface State {
  /** Smoothed power (linear, full scale 1), about 200 ms. */
  power: number;
  lastLoudAt: number;
  selectedAt?: number;
}

const SMOOTHING = 0.1;
const toDb = (power: number) => (power > 1e-10 ? 10 * Math.log10(power) : -100);

export class MixSelection {
  readonly #inputs = new Map<string, State>();
  readonly #selected = new Set<string>();
  readonly opts: MixSelectionOptions;

  constructor(opts: Partial<MixSelectionOptions> = {}) {
    this.opts = { ...DEFAULT_MIX_SELECTION, ...opts };
  }

  /** Every input is mixed, always. */
  get mixesAll(): boolean {
    return this.opts.maxSpeakers <= 0;
  }

  get selected(): ReadonlySet<string> {
    return this.#selected;
  }

  isSelected(id: string): boolean {
    return this.mixesAll || this.#selected.has(id);
  }

  remove(id: string): void {
    this.#inputs.delete(id);
    this.#selected.delete(id);
  }

  /**
   * One frame: `levels` holds each input's level in dBFS for this frame (an input with nothing to
   * play is absent, or at -100). Returns the inputs to mix.
   */
  update(levels: ReadonlyMap<string, number>, now: number): ReadonlySet<string> {
    if (this.mixesAll) {
      this.#selected.clear();
      for (const id of levels.keys()) this.#selected.add(id);
      return this.#selected;
    }
    const { floorDb, holdMs, marginDb, maxSpeakers } = this.opts;
    for (const [id, db] of levels) {
      let s = this.#inputs.get(id);
      if (!s) this.#inputs.set(id, (s = { power: 0, lastLoudAt: -Infinity }));
      s.power += SMOOTHING * (10 ** (db / 10) - s.power);
      if (db > floorDb) s.lastLoudAt = now;
    }
    for (const [id, s] of this.#inputs) {
      if (!levels.has(id)) s.power *= 1 - SMOOTHING;
    }
    // Talkers that have been quiet for the hold time leave.
    for (const id of this.#selected) {
      const s = this.#inputs.get(id);
      if (!s || now - s.lastLoudAt > holdMs) {
        this.#selected.delete(id);
        if (s) s.selectedAt = undefined;
      }
    }
    const candidates = [...this.#inputs]
      .filter(([id, s]) => !this.#selected.has(id) && s.lastLoudAt === now)
      .sort((a, b) => b[1].power - a[1].power);
    for (const [id, s] of candidates) {
      if (this.#selected.size < maxSpeakers) {
        this.#select(id, s, now);
        continue;
      }
      // Full: the weakest talker who has had its hold time gives way to a clearly louder one.
      let weakest: [string, State] | undefined;
      for (const sid of this.#selected) {
        const ss = this.#inputs.get(sid)!;
        if (now - (ss.selectedAt ?? now) < holdMs) continue;
        if (!weakest || ss.power < weakest[1].power) weakest = [sid, ss];
      }
      if (!weakest || toDb(s.power) < toDb(weakest[1].power) + marginDb) break;
      this.#selected.delete(weakest[0]);
      weakest[1].selectedAt = undefined;
      this.#select(id, s, now);
    }
    return this.#selected;
  }

  #select(id: string, s: State, now: number): void {
    this.#selected.add(id);
    s.selectedAt = now;
  }
}
