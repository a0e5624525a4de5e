import { RtpRewriter } from '../media/rtp.js';
import type { CompositeView, ViewPacket } from './CompositeView.js';

/**
 * The one video stream a viewer receives. It follows one CompositeView at a time and switches to a
 * new one only when that view sends a keyframe, so the picture never freezes; the rewriter keeps
 * sequence numbers and timestamps continuous across the switch.
 */
export class VideoOut {
  #current?: CompositeView;
  #pending?: CompositeView;
  #waitingKeyframe = true;
  readonly #rewriter = new RtpRewriter(90000);
  #retry?: NodeJS.Timeout;
  #closed = false;
  readonly #listener = (v: CompositeView) => (p: ViewPacket) => this.#deliver(v, p);
  readonly #bound = new Map<CompositeView, (p: ViewPacket) => void>();
  framesSent = 0;
  bytesSent = 0;
  /** Packets dropped while waiting for a keyframe after (re)starting. */
  droppedWaitingKeyframe = 0;
  /** How long the last change of view took, from the request to the new view's first keyframe. */
  lastSwitchMs?: number;
  #pendingSince = 0;
  /** Send times of recent frames, for the largest gap a viewer saw. */
  readonly #frameTimes: number[] = [];

  constructor(
    /** Gets the rewritten packet, and the view's packet it came from. */
    private readonly send: (packet: Buffer, from: ViewPacket) => void,
    /** Called with the view this output no longer uses. */
    private readonly released: (view: CompositeView) => void,
  ) {}

  get view(): CompositeView | undefined {
    return this.#pending ?? this.#current;
  }

  /** The view whose pictures the viewer sees right now. */
  get shown(): CompositeView | undefined {
    return this.#current;
  }

  follow(view: CompositeView): void {
    if (this.#closed || view === this.view) return;
    if (this.#pending) this.#unbind(this.#pending);
    this.#bind(view);
    if (!this.#current) {
      this.#current = view;
      this.#waitingKeyframe = true;
    } else {
      this.#pending = view;
      this.#pendingSince = performance.now();
    }
    view.requestKeyframe();
    this.#armRetry();
  }

  /** The viewer asked for a keyframe (PLI/FIR). */
  requestKeyframe(): void {
    (this.#pending ?? this.#current)?.requestKeyframe();
  }

  #armRetry(): void {
    if (this.#retry) clearInterval(this.#retry);
    this.#retry = setInterval(() => {
      if (this.#pending) this.#pending.requestKeyframe();
      else if (this.#waitingKeyframe) this.#current?.requestKeyframe();
      else {
        clearInterval(this.#retry);
        this.#retry = undefined;
      }
    }, 500);
  }

  #bind(view: CompositeView): void {
    const l = this.#listener(view);
    this.#bound.set(view, l);
    view.on('packet', l);
  }

  #unbind(view: CompositeView): void {
    const l = this.#bound.get(view);
    if (l) view.off('packet', l);
    this.#bound.delete(view);
    this.released(view);
  }

  #deliver(view: CompositeView, p: ViewPacket): void {
    if (view === this.#pending && p.keyframe) {
      const old = this.#current!;
      this.#current = view;
      this.#pending = undefined;
      this.#waitingKeyframe = false;
      this.lastSwitchMs = Math.round(performance.now() - this.#pendingSince);
      this.#unbind(old);
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
    this.bytesSent += out.length;
    if (p.rtp.marker) {
      this.framesSent++;
      this.#frameTimes.push(performance.now());
      if (this.#frameTimes.length > 600) this.#frameTimes.splice(0, 300);
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

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#retry) clearInterval(this.#retry);
    for (const v of [...this.#bound.keys()]) this.#unbind(v);
    this.#current = this.#pending = undefined;
  }
}
