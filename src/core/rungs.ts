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
   * What the viewer's link carries, bits/s: with transport-cc what it delivered, else REMB;
   * undefined when none yet. A link delivers no more than it is sent, so this is compared with
   * `sending`, not with the rung's nominal bitrate (a still composite is encoded far below it).
   */
  estimate?: number;
  /**
   * What was really sent to this viewer over the span `estimate` covers, bits/s (LinkWindow's
   * yardstick: the same spans of sending time with transport-cc, else the window).
   */
  sending?: number;
  /** Fraction of the video packets lost on the way, 0-1, from the viewer's receiver reports. */
  loss?: number;
}

export interface RungPolicy {
  /** An estimate below this share of what is sent is congestion. */
  downAt: number;
  /**
   * Below this sending rate the estimate says too little to act on, bits/s. werift's estimate needs
   * 20 packets inside a second of each other: a still composite sent at 100 kbit/s (a dozen packets a
   * second) gets estimates from the odd keyframe burst only, 30 % under what is sent, and a viewer on
   * a wide link was sent to the lowest rung for it (measured).
   */
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
  /**
   * After a step down, congestion counts again only after this long, ms: until the link's window
   * (LinkWindow, 1.5 s) and the bottleneck's queue hold what the new rung sends, they say what the
   * old one did. (Without it, a viewer on a 300 kbit/s link stepped to the quarter rung that fits,
   * then 1.3 s later on to the lowest, on figures still of the full rung: 887-993 kbit/s sent.)
   */
  settleMs: number;
}

export const DEFAULT_RUNG_POLICY: RungPolicy = {
  downAt: 0.85,
  minSending: 150_000,
  downAfterMs: 1000,
  lossDown: 0.1,
  upAfterMs: 30_000,
  maxUpAfterMs: 300_000,
  probeMs: 5000,
  probeDownAfterMs: 300,
  overhead: 48_000,
  settleMs: 2000,
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
  #lastDownAt?: number;
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
    if (congested && this.#lastDownAt !== undefined && now - this.#lastDownAt < p.settleMs) {
      // Still the old rung's figures: neither congestion nor a clean stretch yet.
      this.#cleanSince = now;
      return this.rung;
    }
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
    if (to > this.#rung) this.#lastDownAt = now;
    if (to !== this.#rung) {
      this.#rung = to;
      this.#changes++;
    }
    this.#cleanSince = now;
    this.#congestedSince = undefined;
    return this.rung;
  }
}

/** One transport-wide feedback sample: the packets it names that arrived, by the sender's clock and the receiver's. */
export interface TwccSpan {
  firstSentMs: number;
  lastSentMs: number;
  firstReceivedMs: number;
  lastReceivedMs: number;
  /** Bytes of the packets that arrived. */
  receivedBytes: number;
}

/**
 * Transport-wide feedback summed over samples: the bytes that arrived and the time they took to
 * arrive, and every byte sent (the lost ones too) over the same spans of sending time. Running
 * totals, like packet counts: a window reads its difference.
 */
export interface TwccTotals {
  receivedBytes: number;
  receiveMs: number;
  sentBytes: number;
  sendMs: number;
}

/** A sample whose packets were sent within less than this says nothing of a rate, ms. */
const MIN_SPAN_MS = 50;

/**
 * One feedback sample as totals: what arrived over the time it took to arrive, and everything sent
 * over the same span of sending time. On a link that carries what it is sent the two rates are equal
 * whatever the sender does; a bottleneck spreads the arrivals or drops packets, and what is delivered
 * falls below what is sent. undefined for a sample too short to say.
 */
export function twccSample(span: TwccSpan, sent: Iterable<{ size: number; sendingAtMs: number }>): TwccTotals | undefined {
  const sendMs = span.lastSentMs - span.firstSentMs;
  const receiveMs = span.lastReceivedMs - span.firstReceivedMs;
  if (sendMs < MIN_SPAN_MS || receiveMs <= 0) return undefined;
  let sentBytes = 0;
  for (const p of sent) if (p.sendingAtMs >= span.firstSentMs && p.sendingAtMs <= span.lastSentMs) sentBytes += p.size;
  return { receivedBytes: span.receivedBytes, receiveMs, sentBytes: Math.max(sentBytes, span.receivedBytes), sendMs };
}

/** Adds a sample to running totals. */
export function addTwcc(totals: TwccTotals, sample: TwccTotals): void {
  totals.receivedBytes += sample.receivedBytes;
  totals.receiveMs += sample.receiveMs;
  totals.sentBytes += sample.sentBytes;
  totals.sendMs += sample.sendMs;
}

/**
 * What a viewer's transport reports, over a window instead of at an instant. werift's TWCC
 * estimate is the throughput of the last ~100 ms of packets (the lesser of the rates sent and
 * received), and the loss a viewer NACKs over half a second is a handful of packets: with 5 %
 * random loss either one read at an instant looked like congestion now and then, and sent a viewer
 * on a wide but lossy link down to the lowest rung (measured: 15 fps at 100 kbit/s). Here the
 * transport-cc samples are summed over the window (what arrived, and what was sent over the same
 * spans), else the median of the window's estimates is taken; and the loss counts the window's
 * packets, and only once there are enough of them to say anything. A real bottleneck keeps every
 * sample low, so the window follows it within its length.
 */
export class LinkWindow {
  readonly #estimates: Array<[number, number]> = [];
  readonly #counts: Array<[number, number, number, number, TwccTotals | undefined]> = [];

  constructor(
    readonly windowMs = 1500,
    /** Fewer video packets than this in the window: no loss figure. */
    readonly minPackets = 60,
  ) {}

  /**
   * One report: the estimate now (if any); the running counts of video packets sent and NACKed, and
   * of bytes sent; and the running transport-wide feedback totals, where the transport has them.
   */
  add(now: number, estimate: number | undefined, packetsSent: number, packetsNacked: number, bytesSent: number, twcc?: TwccTotals): void {
    if (estimate !== undefined) this.#estimates.push([now, estimate]);
    this.#counts.push([now, packetsSent, packetsNacked, bytesSent, twcc && { ...twcc }]);
    const from = now - this.windowMs;
    while (this.#estimates.length > 0 && this.#estimates[0][0] < from) this.#estimates.shift();
    // Keep one count at or before the window's start, to measure the whole window from it.
    while (this.#counts.length > 1 && this.#counts[1][0] <= from) this.#counts.shift();
  }

  /** The transport-wide feedback of the window's samples, summed, if they span enough sending time. */
  get #twcc(): TwccTotals | undefined {
    if (this.#counts.length < 2) return undefined;
    const a = this.#counts[0][4];
    const b = this.#counts[this.#counts.length - 1][4];
    if (!a || !b || b.sendMs - a.sendMs < this.windowMs / 3 || b.receiveMs <= a.receiveMs) return undefined;
    return { receivedBytes: b.receivedBytes - a.receivedBytes, receiveMs: b.receiveMs - a.receiveMs, sentBytes: b.sentBytes - a.sentBytes, sendMs: b.sendMs - a.sendMs };
  }

  /**
   * What the link delivered over the window, bits/s: with transport-wide feedback, the bytes that
   * arrived over the time they took (summed over the window's samples, so that a packet lost at
   * random in a sample of 20 does not read as a link at 60 %, as a sample's own rate did); else the
   * median estimate of the window. undefined without either.
   */
  get estimate(): number | undefined {
    const t = this.#twcc;
    if (t) return (t.receivedBytes * 8000) / t.receiveMs;
    if (this.#estimates.length === 0) return undefined;
    const v = this.#estimates.map(([, e]) => e).sort((a, b) => a - b);
    const mid = v.length >> 1;
    return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
  }

  /**
   * What `estimate` is to be compared with, bits/s. With transport-wide feedback: everything sent
   * over the spans of sending time its samples cover, the lost packets too; so a link that carries
   * what it is sent reads the same as what is sent, whatever the sender does. (Against the average
   * sent over the window, a composite's keyframe bursts read as congestion: samples of 75-110
   * kbit/s, one of 310 kbit/s with a burst, against 160 kbit/s sent, and a viewer on a clean
   * loopback link went to the lowest rung.) Else what was sent over the window.
   */
  get yardstick(): number | undefined {
    const t = this.#twcc;
    return t ? (t.sentBytes * 8000) / t.sendMs : this.sending;
  }

  /** What was sent over the window, bits/s; undefined until the window spans half its length. */
  get sending(): number | undefined {
    if (this.#counts.length < 2) return undefined;
    const [t0, , , b0] = this.#counts[0];
    const [t1, , , b1] = this.#counts[this.#counts.length - 1];
    return t1 - t0 >= this.windowMs / 2 ? ((b1 - b0) * 8000) / (t1 - t0) : undefined;
  }

  /** The share of the window's video packets that the viewer NACKed (each once), 0 with too few packets. */
  get loss(): number {
    if (this.#counts.length < 2) return 0;
    const [, s0, n0] = this.#counts[0];
    const [, s1, n1] = this.#counts[this.#counts.length - 1];
    const sent = s1 - s0;
    return sent >= this.minPackets ? Math.min(1, Math.max(0, (n1 - n0) / sent)) : 0;
  }
}
