import type { OutputProfile } from './profiles.js';

/**
 * A viewer's bandwidth ladder: its top profile, then cheaper rungs. Viewers on the same
 * composition and the same rung share an encoder, so the rungs are few and fixed.
 */
export interface Rung extends OutputProfile {
  /** 0 is the top. */
  index: number;
  name: 'full' | 'half' | 'quarter' | 'low-fps';
}

/** The lowest bitrate worth encoding video at, bits/s. */
export const MIN_VIDEO_BITRATE = 60_000;

export function ladder(top: OutputProfile): Rung[] {
  const even = (n: number) => Math.max(2, Math.floor(n / 2) * 2);
  const small = { width: even(top.width / 2), height: even(top.height / 2) };
  const rungs: Rung[] = [
    { index: 0, name: 'full', ...top },
    { index: 1, name: 'half', width: top.width, height: top.height, fps: top.fps, bitrate: Math.round(top.bitrate / 2) },
    { index: 2, name: 'quarter', ...small, fps: top.fps, bitrate: Math.round(top.bitrate / 4) },
    { index: 3, name: 'low-fps', ...small, fps: Math.max(5, Math.min(15, Math.round(top.fps / 2))), bitrate: Math.round(top.bitrate / 8) },
  ];
  for (const r of rungs) r.bitrate = Math.max(MIN_VIDEO_BITRATE, r.bitrate);
  return rungs;
}

export interface RungInput {
  /** ms, monotonic */
  now: number;
  /**
   * The sender's estimate of what the viewer's link carries, bits/s (TWCC or REMB); undefined when
   * none yet. werift's TWCC estimate is the lesser of the rates sent and received, so it never says
   * more than is sent: it is compared with `sending`, not with the rung's nominal bitrate (a still
   * composite is encoded far below it).
   */
  estimate?: number;
  /** What was really sent to this viewer over the same span, bits/s (video, audio, repairs). */
  sending?: number;
  /** Fraction of the video packets lost on the way, 0-1, from the viewer's receiver reports. */
  loss?: number;
}

export interface RungPolicy {
  /** An estimate below this share of what is sent is congestion. */
  downAt: number;
  /** Below this sending rate the estimate says too little to act on, bits/s. */
  minSending: number;
  /** Congestion must last this long before stepping down, ms (the issue: within 2 s). */
  downAfterMs: number;
  /** Loss above this is congestion too. */
  lossDown: number;
  /** A clean link this long lets the viewer try the next rung up, ms; doubled after each failed try. */
  upAfterMs: number;
  /** The longest wait before trying up again, ms. */
  maxUpAfterMs: number;
  /** A step up that meets congestion within this long failed, ms. */
  probeMs: number;
  /** Congestion this long right after a step up ends the try (shorter than downAfterMs: a try that fails should cost little). */
  probeDownAfterMs: number;
  /** Bits/s the viewer's link also carries besides this video (its audio, RTCP, headers). */
  overhead: number;
}

export const DEFAULT_RUNG_POLICY: RungPolicy = {
  downAt: 0.85,
  minSending: 50_000,
  downAfterMs: 1000,
  lossDown: 0.1,
  upAfterMs: 30_000,
  maxUpAfterMs: 300_000,
  probeMs: 5000,
  probeDownAfterMs: 300,
  overhead: 48_000,
};

/**
 * Moves one viewer along its ladder: down within `downAfterMs` of congestion (to the highest rung
 * the estimate carries, several at once if need be), up one rung at a time after a clean stretch,
 * with hysteresis: a step up that meets congestion soon after doubles the wait before the next try.
 * Pure: feed it what the transport reports, act on what it returns.
 */
export class RungController {
  #rung = 0;
  #congestedSince?: number;
  #cleanSince: number;
  #upAfterMs: number;
  #lastUpAt?: number;
  #changes = 0;

  constructor(
    private rungs: Rung[],
    now: number,
    private readonly policy: RungPolicy = DEFAULT_RUNG_POLICY,
  ) {
    this.#cleanSince = now;
    this.#upAfterMs = policy.upAfterMs;
  }

  get rung(): Rung {
    return this.rungs[this.#rung];
  }

  get changes(): number {
    return this.#changes;
  }

  /** A new ladder (the viewer's profile changed): keep the same rung index. */
  setLadder(rungs: Rung[]): void {
    this.rungs = rungs;
    this.#rung = Math.min(this.#rung, rungs.length - 1);
  }

  /** The rung to be on after this report; a different rung than before means "switch". */
  update(input: RungInput): Rung {
    const { now } = input;
    const p = this.policy;
    const { estimate, sending } = input;
    const starved = estimate !== undefined && sending !== undefined && sending >= p.minSending && estimate < p.downAt * sending;
    const congested = starved || (input.loss ?? 0) > p.lossDown;
    if (congested) {
      this.#congestedSince ??= now;
      this.#cleanSince = now;
      const trying = this.#lastUpAt !== undefined && now - this.#lastUpAt < p.probeMs;
      if (now - this.#congestedSince >= (trying ? p.probeDownAfterMs : p.downAfterMs) && this.#rung < this.rungs.length - 1) {
        // A step up that failed soon after: wait longer before the next one.
        if (this.#lastUpAt !== undefined && now - this.#lastUpAt < p.probeMs + p.downAfterMs) {
          this.#upAfterMs = Math.min(p.maxUpAfterMs, this.#upAfterMs * 2);
        }
        this.#lastUpAt = undefined;
        let next = this.#rung + 1;
        // Several rungs at once when the estimate says so.
        const budget = starved ? p.downAt * estimate - p.overhead : undefined;
        while (budget !== undefined && next < this.rungs.length - 1 && this.rungs[next].bitrate > budget) next++;
        return this.#move(next, now);
      }
      return this.rung;
    }
    this.#congestedSince = undefined;
    if (this.#rung > 0 && now - this.#cleanSince >= this.#upAfterMs) {
      this.#lastUpAt = now;
      return this.#move(this.#rung - 1, now);
    }
    // A rung held well past the probe window: the link is good again, the wait shrinks back.
    if (this.#lastUpAt !== undefined && now - this.#lastUpAt > p.probeMs * 4) {
      this.#upAfterMs = Math.max(p.upAfterMs, this.#upAfterMs / 2);
      this.#lastUpAt = undefined;
    }
    return this.rung;
  }

  #move(to: number, now: number): Rung {
    if (to !== this.#rung) {
      this.#rung = to;
      this.#changes++;
    }
    this.#cleanSince = now;
    this.#congestedSince = undefined;
    return this.rung;
  }
}
