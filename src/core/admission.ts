import { McuError } from './errors.js';

/** A refusal that names the limit it hit, so clients and operators know which one to raise or wait for. */
export class LimitError extends McuError {
  constructor(
    status: 409 | 429 | 503,
    readonly limit: string,
    message: string,
    readonly retryAfterSeconds?: number,
  ) {
    super(status, `limit_${limit}`, message);
  }
}

export interface AdmissionOptions {
  /** Cores this process may use (its CPU affinity). */
  cores: number;
  /** Fraction of those cores past which the node leaves real time (MCU_CPU_BUDGET). 0: no admission control. */
  budget: number;
  /** What one more participant with video costs, in cores (MCU_PARTICIPANT_COST). */
  participantCost: number;
  /** What one more audio-only participant costs, in cores (MCU_AUDIO_PARTICIPANT_COST). */
  audioParticipantCost: number;
  /** CPU time used by the whole process so far, in microseconds (all threads). */
  cpuMicros?: () => number;
  now?: () => number;
}

/**
 * Admission by cost. The load is measured (the process's CPU time over the last seconds, every
 * thread: GStreamer, the RTC and mixer workers, the control thread); a join is admitted when that
 * load, plus what the joins admitted in the last few seconds will cost once their media flows, plus
 * one more participant, stays within the budget. Otherwise 503 with Retry-After: the signal WHIP
 * clients and load balancers act on.
 *
 * The cost of a participant comes from the benchmark (`npm run bench`, case (b): 8 people with a
 * composite each at 1.27-1.29 cores on this 2-core machine, 0.16 each; the node left real time
 * above 1.5-1.6 cores, 0.75-0.8 of the cores; audio-only rooms: 27-44 millicores a person).
 */
export class Admission {
  readonly #o: Required<AdmissionOptions>;
  #lastCpu: number;
  #lastAt: number;
  /** Cores in use, smoothed. */
  #load = 0;
  /** Admitted joins whose cost is not in the measured load yet: their cost, and when it stops counting. */
  #pending: Array<{ cost: number; until: number }> = [];
  #timer?: NodeJS.Timeout;
  static readonly SETTLE_MS = 8000;

  constructor(opts: AdmissionOptions) {
    this.#o = {
      cpuMicros: () => {
        const u = process.cpuUsage();
        return u.user + u.system;
      },
      now: () => performance.now(),
      ...opts,
    };
    this.#lastCpu = this.#o.cpuMicros();
    this.#lastAt = this.#o.now();
    if (this.enabled) {
      this.#timer = setInterval(() => this.sample(), 1000);
      this.#timer.unref();
    }
  }

  get enabled(): boolean {
    return this.#o.budget > 0;
  }

  /**
   * Starts measuring afresh: called once the node has started, so that its own start (workers
   * loading werift and GStreamer, over a second of CPU on both cores) is not read as load that
   * refuses the first joins.
   */
  rebase(): void {
    this.#lastCpu = this.#o.cpuMicros();
    this.#lastAt = this.#o.now();
    this.#load = 0;
  }

  /** Measures the load since the last sample (called every second). */
  sample(): void {
    const cpu = this.#o.cpuMicros();
    const at = this.#o.now();
    const cores = (cpu - this.#lastCpu) / 1000 / Math.max(1, at - this.#lastAt);
    this.#load = this.#load === 0 ? cores : 0.5 * this.#load + 0.5 * cores;
    this.#lastCpu = cpu;
    this.#lastAt = at;
  }

  /** What the node would use with one more participant, in cores, and its capacity. */
  dump(): { loadCores: number; pendingCores: number; capacityCores: number; participantCost: number; audioParticipantCost: number } {
    this.#expire();
    return {
      loadCores: round(this.#load),
      pendingCores: round(this.#pendingCores()),
      capacityCores: round(this.#o.cores * this.#o.budget),
      participantCost: this.#o.participantCost,
      audioParticipantCost: this.#o.audioParticipantCost,
    };
  }

  /** Admits one participant (with video, or audio only) or throws 503: taking it would put the node past its budget. */
  admit(media: { video: boolean } = { video: true }): void {
    if (!this.enabled) return;
    this.#expire();
    const cost = media.video ? this.#o.participantCost : this.#o.audioParticipantCost;
    const capacity = this.#o.cores * this.#o.budget;
    if (this.#load + this.#pendingCores() + cost > capacity) {
      throw new LimitError(
        503,
        'cpu',
        `this node is at capacity: ${round(this.#load + this.#pendingCores())} cores in use or committed of ${round(capacity)} (MCU_CPU_BUDGET), ` +
          `and one more ${media.video ? '' : 'audio-only '}participant costs about ${cost} (${media.video ? 'MCU_PARTICIPANT_COST' : 'MCU_AUDIO_PARTICIPANT_COST'})`,
        5,
      );
    }
    this.#pending.push({ cost, until: this.#o.now() + Admission.SETTLE_MS });
  }

  #pendingCores(): number {
    return this.#pending.reduce((n, p) => n + p.cost, 0);
  }

  #expire(): void {
    const now = this.#o.now();
    this.#pending = this.#pending.filter((p) => p.until > now);
  }

  close(): void {
    clearInterval(this.#timer);
  }
}

const round = (n: number) => Math.round(n * 100) / 100;
