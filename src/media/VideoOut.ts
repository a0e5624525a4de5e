import { nowMs } from '../core/clock.js';
import { RtpRewriter, Vp8PictureIdRewriter } from './rtp.js';
import type { ViewPacket, ViewSource } from './viewFeeds.js';

/**
 * A new view is switched to only once it flows steadily: this many frames in a row, each arriving
 * no more than STEADY_SLACK_MS later after the one before than its timestamp says it was composed
 * (whatever the view's frame rate). A composite's first frames come irregularly while its pipeline
 * and its neighbours start (a frame 140 ms after the first keyframe, composed 33 ms after it, was
 * measured when a join started four at once), and the viewer would see that as a freeze; the view
 * on screen goes on meanwhile. Once steady, the new view is asked for the keyframe to switch at.
 */
export const WARM_FRAMES = 6;
export const STEADY_SLACK_MS = 40;
/** A new view that is still not steady after this long (a machine overloaded for good, an old view
 * that died) is switched to at its next keyframe all the same. */
export const PATIENCE_MS = 1500;
/** A longer interval between two frames sent is logged. */
export const FRAME_GAP_WARN_MS = 150;

/**
 * The one video stream a viewer (or a recording) receives, in the thread that sends it. It follows
 * one composite's feed at a time and switches to a new one only when that one flows steadily and
 * sends a keyframe, so the picture never freezes; the rewriter keeps sequence numbers and
 * timestamps continuous across the switch.
 */
export class VideoOut {
  #current?: ViewSource;
  #pending?: ViewSource;
  #waitingKeyframe = true;
  readonly #rewriter = new RtpRewriter(90000);
  readonly #pictureIds = new Vp8PictureIdRewriter();
  #retry?: NodeJS.Timeout;
  #closed = false;
  readonly #bound = new Map<ViewSource, () => void>();
  framesSent = 0;
  bytesSent = 0;
  /** Packets dropped while waiting for a keyframe after (re)starting. */
  droppedWaitingKeyframe = 0;
  /** How long the last change of view took, from the request to the keyframe it switched at. */
  lastSwitchMs?: number;
  #pendingSince = 0;
  /** The pending view's frames in a row that came steadily, and when its last one came, with its RTP timestamp. */
  #pendingRun = 0;
  #pendingFrameAt = -Infinity;
  #pendingFrameTs = 0;
  /** Send times of recent frames, for the largest gap a viewer saw. */
  readonly #frameTimes: number[] = [];
  /** For each of those frames: how long after it was composed it left, and from which composite. */
  readonly #frameDelays: Array<{ delay: number; source: object; key: boolean }> = [];
  /** Whether the frame being sent started with a keyframe packet. */
  #frameIsKey = false;

  constructor(
    /** Gets the rewritten packet, and the view's packet it came from. */
    private readonly send: (packet: Buffer, from: ViewPacket) => void,
    /** The view on screen changed to `to` (its first keyframe came), leaving `from` unused. */
    private readonly switched: (to: ViewSource, from: ViewSource | undefined, ms: number) => void = () => undefined,
    /** A frame left more than FRAME_GAP_WARN_MS after the one before (for the log). */
    private readonly gap: (ms: number, detail: string) => void = () => undefined,
  ) {}
  #switchedAt = -Infinity;

  get view(): ViewSource | undefined {
    return this.#pending ?? this.#current;
  }

  /** The view it switches to once that one flows steadily and sends a keyframe. */
  get pending(): ViewSource | undefined {
    return this.#pending;
  }

  /** The view whose pictures the viewer sees right now. */
  get shown(): ViewSource | undefined {
    return this.#current;
  }

  follow(view: ViewSource): void {
    if (this.#closed || view === this.view) return;
    if (this.#pending) {
      this.#unbind(this.#pending);
      this.#pending = undefined;
    }
    // Back to the view on screen before the pending one was switched to: it simply stays.
    if (view === this.#current) return;
    this.#bind(view);
    if (!this.#current) {
      // Nothing on screen yet: the first keyframe is shown at once.
      this.#current = view;
      this.#waitingKeyframe = true;
      this.switched(view, undefined, 0);
      view.requestKeyframe();
    } else {
      this.#pending = view;
      this.#pendingSince = performance.now();
      this.#pendingRun = 0;
      this.#pendingFrameAt = -Infinity;
    }
    this.#armRetry();
  }

  /** The viewer asked for a keyframe (PLI/FIR). */
  requestKeyframe(): void {
    (this.#pending ?? this.#current)?.requestKeyframe();
  }

  #armRetry(): void {
    if (this.#retry) clearInterval(this.#retry);
    this.#retry = setInterval(() => {
      // A steady pending view whose keyframe did not come (or was lost) is asked again.
      if (this.#pending) {
        if (this.#ready()) this.#pending.requestKeyframe();
      } else if (this.#waitingKeyframe) this.#current?.requestKeyframe();
      else {
        clearInterval(this.#retry);
        this.#retry = undefined;
      }
    }, 500);
  }

  #bind(view: ViewSource): void {
    this.#bound.set(view, view.subscribe((p) => this.#deliver(view, p)));
  }

  #unbind(view: ViewSource): void {
    this.#bound.get(view)?.();
    this.#bound.delete(view);
  }

  /** The pending view may be switched to at its next keyframe. */
  #ready(): boolean {
    return this.#pendingRun >= WARM_FRAMES || performance.now() - this.#pendingSince > PATIENCE_MS;
  }

  #deliver(view: ViewSource, p: ViewPacket): void {
    if (view === this.#pending && !(p.keyframe && this.#ready())) {
      if (p.rtp.marker) {
        const now = performance.now();
        const composedMs = ((p.rtp.timestamp - this.#pendingFrameTs) >>> 0) / 90;
        this.#pendingRun = now - this.#pendingFrameAt <= composedMs + STEADY_SLACK_MS ? this.#pendingRun + 1 : 1;
        this.#pendingFrameAt = now;
        this.#pendingFrameTs = p.rtp.timestamp;
        if (this.#pendingRun === WARM_FRAMES) view.requestKeyframe();
      }
      return;
    }
    if (view === this.#pending) {
      const old = this.#current!;
      this.#current = view;
      this.#pending = undefined;
      this.#waitingKeyframe = false;
      this.lastSwitchMs = Math.round(performance.now() - this.#pendingSince);
      this.#switchedAt = performance.now();
      this.#unbind(old);
      this.switched(view, old, this.lastSwitchMs);
    }
    if (view !== this.#current) return;
    if (this.#waitingKeyframe) {
      if (!p.keyframe) {
        this.droppedWaitingKeyframe++;
        return;
      }
      this.#waitingKeyframe = false;
    }
    const out = Buffer.from(p.packet);
    this.#rewriter.rewrite(out, p.rtp, p.source);
    if (view.codec === 'vp8') this.#pictureIds.rewrite(out, p.rtp, p.source);
    this.bytesSent += out.length;
    if (p.keyframe) this.#frameIsKey = true;
    if (p.rtp.marker) {
      this.framesSent++;
      const now = performance.now();
      const last = this.#frameTimes[this.#frameTimes.length - 1];
      if (last !== undefined && now - last > FRAME_GAP_WARN_MS) {
        const since = Math.round(now - this.#switchedAt);
        this.gap(now - last, `${p.keyframe ? 'keyframe' : 'delta frame'}, ${Math.round(nowMs() - p.ptsMs)} ms after it was composed; ${since < 10_000 ? `switched to this composite ${since} ms ago` : 'no recent switch'}${this.#pending ? ', a new composite pending' : ''}`);
      }
      this.#frameTimes.push(now);
      this.#frameDelays.push({ delay: nowMs() - p.ptsMs, source: p.source, key: this.#frameIsKey });
      this.#frameIsKey = false;
      if (this.#frameTimes.length > 600) {
        this.#frameTimes.splice(0, 300);
        this.#frameDelays.splice(0, 300);
      }
    }
    this.send(out, p);
  }

  /** Frames per second sent over the last `windowMs`. */
  fps(windowMs = 5000): number {
    const now = performance.now();
    const t = this.#frameTimes.filter((x) => x >= now - windowMs);
    if (t.length < 2) return 0;
    // Over the span the frames cover, up to now (a stream that stopped reads as slowing down).
    return ((t.length - 1) * 1000) / Math.max(now - t[0], 1);
  }

  /** Largest interval between frames sent in the last `windowMs` (and up to now). */
  maxFrameGapMs(windowMs = 10_000): number {
    const now = performance.now();
    const t = this.#frameTimes.filter((x) => x >= now - windowMs);
    let gap = t.length > 0 ? now - t[t.length - 1] : windowMs;
    for (let i = 1; i < t.length; i++) gap = Math.max(gap, t[i] - t[i - 1]);
    return Math.round(gap);
  }

  /**
   * How much later than its composite's quickest frame each frame left, over the last `windowMs`:
   * the jitter that encoding and sending add, per composite (a frame's delay counts from the
   * instant it was composed). The largest, and the 99th percentile, which leaves out the odd
   * keyframe (one every GOP) that takes the encoder longer. Null when the composites' start is
   * not known in this thread.
   */
  frameLateness(windowMs = 10_000): { maxMs: number; p99Ms: number; keyframes: number; maxDeltaMs: number } | null {
    const from = performance.now() - windowMs;
    const bySource = new Map<object, Array<{ delay: number; key: boolean }>>();
    this.#frameTimes.forEach((t, i) => {
      const d = this.#frameDelays[i];
      if (t < from || !Number.isFinite(d.delay)) return;
      let list = bySource.get(d.source);
      if (!list) bySource.set(d.source, (list = []));
      list.push(d);
    });
    if (bySource.size === 0) return null;
    const late: number[] = [];
    let keyframes = 0;
    let maxDelta = 0;
    for (const frames of bySource.values()) {
      const min = Math.min(...frames.map((f) => f.delay));
      for (const f of frames) {
        late.push(f.delay - min);
        if (f.key) keyframes++;
        else maxDelta = Math.max(maxDelta, f.delay - min);
      }
    }
    late.sort((a, b) => a - b);
    return {
      maxMs: Math.round(late[late.length - 1]),
      p99Ms: Math.round(late[Math.floor(0.99 * (late.length - 1))]),
      keyframes,
      maxDeltaMs: Math.round(maxDelta),
    };
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#retry) clearInterval(this.#retry);
    for (const v of [...this.#bound.keys()]) this.#unbind(v);
    this.#current = this.#pending = undefined;
  }
}
