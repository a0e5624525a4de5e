import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { parseRtp } from '../../src/media/rtp.js';
import { PATIENCE_MS, VideoOut, WARM_FRAMES } from '../../src/media/VideoOut.js';
import type { ViewPacket, ViewSource } from '../../src/media/viewFeeds.js';

/** A composite as a VideoOut sees it: frames of one packet each, sent when the test says. */
class FakeView implements ViewSource {
  readonly codec = 'h264' as const;
  readonly listeners = new Set<(p: ViewPacket) => void>();
  keyframeRequests = 0;
  #seq = Math.floor(Math.random() * 60000);
  #ts = Math.floor(Math.random() * 1e9);
  readonly source = {};
  constructor(readonly key: string) {}
  subscribe(l: (p: ViewPacket) => void) {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }
  requestKeyframe() {
    this.keyframeRequests++;
  }
  /** One frame, composed `composedMs` after the previous one. */
  frame(keyframe = false, composedMs = 1000 / 30) {
    this.#ts = (this.#ts + Math.round(composedMs * 90)) >>> 0;
    const b = Buffer.alloc(14);
    b[0] = 0x80;
    b[1] = 0x80 | 102;
    b.writeUInt16BE(this.#seq++ & 0xffff, 2);
    b.writeUInt32BE(this.#ts, 4);
    b.writeUInt32BE(0x1234, 8);
    const p: ViewPacket = { packet: b, rtp: parseRtp(b)!, keyframe, source: this.source, ptsMs: NaN };
    for (const l of this.listeners) l(p);
  }
}

describe('VideoOut', () => {
  beforeEach(() => vi.useFakeTimers({ toFake: ['performance', 'setInterval', 'clearInterval', 'setTimeout', 'clearTimeout'] }));
  afterEach(() => vi.useRealTimers());

  /** Runs the clock `ms` forward and has each view send a frame at every 33 ms step. */
  const run = (views: FakeView[], frames: number, opts: { keyframe?: FakeView } = {}) => {
    for (let i = 0; i < frames; i++) {
      vi.advanceTimersByTime(33);
      for (const v of views) v.frame(v === opts.keyframe && i === 0);
    }
  };

  function setup() {
    const sent: string[] = [];
    const switches: Array<[string, string | undefined]> = [];
    const out = new VideoOut(
      (_packet, from) => sent.push((from.source as { name?: string }).name ?? '?'),
      (to, from) => switches.push([to.key, from?.key]),
    );
    const a = new FakeView('a');
    const b = new FakeView('b');
    Object.assign(a.source, { name: 'a' });
    Object.assign(b.source, { name: 'b' });
    return { out, a, b, sent, switches };
  }

  it('shows the first view from its first keyframe', () => {
    const { out, a, sent, switches } = setup();
    out.follow(a);
    expect(a.keyframeRequests).toBe(1);
    run([a], 3);
    expect(sent).toEqual([]);
    run([a], 3, { keyframe: a });
    expect(sent).toEqual(['a', 'a', 'a']);
    expect(switches).toEqual([['a', undefined]]);
    expect(out.droppedWaitingKeyframe).toBe(3);
  });

  it('switches to a new view only once it flows steadily, at a keyframe it asks for then; the old one goes on meanwhile', () => {
    const { out, a, b, sent, switches } = setup();
    out.follow(a);
    run([a], 1, { keyframe: a });
    out.follow(b);
    expect(b.keyframeRequests).toBe(0);
    // The new composite starts: its first keyframe, then a frame composed 33 ms later that comes
    // 140 ms later (its pipeline and its neighbours starting). The old view is still shown.
    vi.advanceTimersByTime(33);
    b.frame(true);
    a.frame();
    vi.advanceTimersByTime(140);
    b.frame();
    a.frame();
    expect(out.shown).toBe(a);
    // Steady from that late frame on: at WARM_FRAMES in a row it asks for a keyframe, and switches at it.
    run([a, b], WARM_FRAMES - 2);
    expect(b.keyframeRequests).toBe(0);
    run([a, b], 1);
    expect(b.keyframeRequests).toBe(1);
    expect(out.shown).toBe(a);
    run([b, a], 2, { keyframe: b });
    expect(out.shown).toBe(b);
    expect(switches).toEqual([['a', undefined], ['b', 'a']]);
    // Every frame until the switch came from a, and every one after from b; a is no longer followed.
    const firstB = sent.indexOf('b');
    expect(sent.slice(0, firstB).every((s) => s === 'a')).toBe(true);
    expect(sent.slice(firstB)).toEqual(['b', 'b']);
    expect(a.listeners.size).toBe(0);
    expect(out.lastSwitchMs).toBeGreaterThan(0);
  });

  it('a steady view whose keyframe does not come is asked again', () => {
    const { out, a, b } = setup();
    out.follow(a);
    run([a], 1, { keyframe: a });
    out.follow(b);
    run([a, b], WARM_FRAMES);
    expect(b.keyframeRequests).toBe(1);
    run([a, b], 20); // 660 ms: the retry (every 500 ms) asks again
    expect(b.keyframeRequests).toBeGreaterThanOrEqual(2);
    expect(out.shown).toBe(a);
  });

  it('a view that never flows steadily is switched to all the same after PATIENCE_MS, at a keyframe', () => {
    const { out, a, b } = setup();
    out.follow(a);
    run([a], 1, { keyframe: a });
    out.follow(b);
    // b's frames come every 100 ms though composed 33 ms apart: never steady.
    let t = 0;
    while (t < PATIENCE_MS - 100) {
      vi.advanceTimersByTime(100);
      t += 100;
      b.frame(t % 500 === 0);
      a.frame();
    }
    expect(out.shown).toBe(a);
    vi.advanceTimersByTime(600); // past the patience: the retry asks b for a keyframe
    expect(b.keyframeRequests).toBeGreaterThanOrEqual(1);
    b.frame(true);
    expect(out.shown).toBe(b);
  });

  it('following the view on screen again drops the pending one, and sends each packet once', () => {
    const { out, a, b, sent, switches } = setup();
    out.follow(a);
    run([a], 1, { keyframe: a });
    out.follow(b);
    run([a, b], 2);
    out.follow(a);
    expect(b.listeners.size).toBe(0);
    expect(a.listeners.size).toBe(1);
    sent.length = 0;
    run([a, b], WARM_FRAMES + 2, { keyframe: b });
    expect(sent).toEqual(Array(WARM_FRAMES + 2).fill('a'));
    expect(switches).toEqual([['a', undefined]]);
    expect(out.view).toBe(a);
  });
});
