import { describe, expect, it } from 'vitest';
import { MixSelection } from '../../src/core/mixSelection.js';
import { MixGate } from '../../src/media/mixGate.js';
import { AudioMixer, FRAME_SAMPLES } from '../../src/media/audioMixer.js';

const LOUD = -20;
const QUIET = -100;

/** Runs `frames` frames of 20 ms from `t0`, each with these levels; returns the last selection. */
function run(sel: MixSelection, levels: Record<string, number>, frames: number, t0: number): { set: string[]; t: number } {
  let set: string[] = [];
  let t = t0;
  for (let i = 0; i < frames; i++, t += 20) set = [...sel.update(new Map(Object.entries(levels)), t)].sort();
  return { set, t };
}

describe('MixSelection (the talkers the mix carries)', () => {
  it('mixes every talker up to the limit, and nobody silent', () => {
    const sel = new MixSelection({ maxSpeakers: 3 });
    expect(run(sel, { a: LOUD, b: LOUD, c: QUIET }, 5, 0).set).toEqual(['a', 'b']);
  });

  it('never carries more than maxSpeakers, and keeps the ones it has while they talk', () => {
    const sel = new MixSelection({ maxSpeakers: 2 });
    let r = run(sel, { a: -10, b: -12, c: -30, d: -40 }, 10, 0);
    expect(r.set).toEqual(['a', 'b']);
    // A slightly louder newcomer does not take a talking one's place (margin: 6 dB).
    r = run(sel, { a: -10, b: -12, c: -8 }, 100, r.t);
    expect(r.set).toEqual(['a', 'b']);
  });

  it('a talker that stops leaves after the hold time, and the next talker comes in', () => {
    const sel = new MixSelection({ maxSpeakers: 2, holdMs: 1000 });
    let r = run(sel, { a: LOUD, b: LOUD, c: LOUD }, 5, 0);
    expect(r.set).toHaveLength(2);
    const [stays, stops] = r.set;
    const waiting = ['a', 'b', 'c'].find((x) => !r.set.includes(x))!;
    // 900 ms of silence: still held.
    r = run(sel, { [stays]: LOUD, [stops]: QUIET, [waiting]: LOUD }, 45, r.t);
    expect(r.set).toContain(stops);
    r = run(sel, { [stays]: LOUD, [stops]: QUIET, [waiting]: LOUD }, 10, r.t);
    expect(r.set.sort()).toEqual([stays, waiting].sort());
  });

  it('a much louder talker takes the weakest place once that one has had its hold time', () => {
    const sel = new MixSelection({ maxSpeakers: 1, holdMs: 500, marginDb: 6 });
    let r = run(sel, { a: -40 }, 5, 0);
    expect(r.set).toEqual(['a']);
    r = run(sel, { a: -40, b: -10 }, 5, r.t); // a has held it 200 ms only
    expect(r.set).toEqual(['a']);
    r = run(sel, { a: -40, b: -10 }, 30, r.t);
    expect(r.set).toEqual(['b']);
  });

  it('forgets an input that is removed, and with maxSpeakers 0 mixes everyone', () => {
    const sel = new MixSelection({ maxSpeakers: 2 });
    run(sel, { a: LOUD }, 2, 0);
    sel.remove('a');
    expect([...sel.selected]).toEqual([]);
    const all = new MixSelection({ maxSpeakers: 0 });
    expect(run(all, { a: QUIET, b: LOUD, c: LOUD }, 1, 0).set).toEqual(['a', 'b', 'c']);
  });
});

describe('AudioMixer with a talker limit', () => {
  const pcm = (value: number, frames: number) => {
    const b = Buffer.alloc(FRAME_SAMPLES * 2 * frames);
    for (let i = 0; i < FRAME_SAMPLES * frames; i++) b.writeInt16LE(value, i * 2);
    return b;
  };

  it('sums only the talkers; a talker gets its mix-minus, a listener outside them only the shared mix', () => {
    const m = new AudioMixer(() => 0, new MixSelection({ maxSpeakers: 2 }));
    const got = new Map<string, Array<[number, bigint]>>();
    const sink = (id: string) => (b: Buffer, pts: bigint) => got.set(id, [...(got.get(id) ?? []), [b.readInt16LE(0), pts]]);
    m.addInput('a').write(pcm(3000, 10));
    m.addInput('b').write(pcm(2000, 10));
    m.addInput('c').write(pcm(100, 10)); // quieter: not mixed
    for (const id of ['a', 'b', 'c']) m.addOutput(id, sink(id), 'speaking');
    m.addOutput('#shared', sink('#shared'));
    m.mixFrame(0n);
    m.mixFrame(20_000_000n);
    expect(got.get('a')).toEqual([[2000, 0n], [2000, 20_000_000n]]);
    expect(got.get('b')).toEqual([[3000, 0n], [3000, 20_000_000n]]);
    expect(got.get('c')).toBeUndefined(); // c hears the shared mix, which it is not in
    expect(got.get('#shared')!.map(([v]) => v)).toEqual([5000, 5000]);
    m.close();
  });

  it("a 'speaking' output's timestamps count only its own frames", () => {
    let now = 0;
    const m = new AudioMixer(() => now, new MixSelection({ maxSpeakers: 1, holdMs: 0 }));
    const pts: bigint[] = [];
    const fifo = m.addInput('a');
    m.addOutput('a', (_b, p) => pts.push(p), 'speaking');
    fifo.write(pcm(1000, 1)); // 20 ms that arrived at t=0: they play at mix time 20 ms
    m.mixFrame(20_000_000n); // a talks
    m.mixFrame(40_000_000n); // nothing: a is silent and leaves at once (hold 0)
    m.mixFrame(60_000_000n);
    now = 100;
    fifo.write(pcm(1000, 1));
    m.mixFrame(120_000_000n); // a talks again
    expect(pts).toEqual([0n, 20_000_000n]);
    m.close();
  });
});

describe('MixGate (own mix-minus or the shared mix, one packet a frame)', () => {
  function gate() {
    let now = 0;
    const timers: Array<{ at: number; fn: () => void; live: boolean }> = [];
    const sent: string[] = [];
    const g = new MixGate(
      (p, shared) => sent.push(`${shared ? 'S' : 'O'}${p[0]}@${now}`),
      () => now,
      (fn, ms) => {
        const t = { at: now + ms, fn, live: true };
        timers.push(t);
        return () => (t.live = false);
      },
    );
    const advance = (to: number) => {
      for (const t of timers) if (t.live && t.at <= to) {
        now = t.at;
        t.live = false;
        t.fn();
      }
      now = to;
    };
    return { g, sent, advance, pkt: (n: number) => Buffer.from([n]) };
  }

  it('a listener outside the talkers gets the shared mix at once', () => {
    const { g, sent, advance, pkt } = gate();
    for (let f = 0; f < 3; f++) {
      advance(f * 20);
      g.shared(pkt(f));
    }
    expect(sent).toEqual(['S0@0', 'S1@20', 'S2@40']);
  });

  it('while its own mix flows, the shared copy of each frame is dropped, whichever comes first', () => {
    const { g, sent, advance, pkt } = gate();
    advance(0);
    g.own(pkt(0));
    advance(3);
    g.shared(pkt(100)); // after its own: dropped at once
    advance(20);
    g.shared(pkt(101)); // before its own: held...
    advance(24);
    g.own(pkt(1)); // ...and dropped when the own one comes
    advance(40);
    g.own(pkt(2));
    advance(60);
    expect(sent).toEqual(['O0@0', 'O1@24', 'O2@40']);
    expect(g.dropped).toBe(2);
  });

  it('when the talker leaves the mix, the shared mix follows without a gap; when it comes back, no frame twice', () => {
    const { g, sent, advance, pkt } = gate();
    advance(0);
    g.own(pkt(0));
    g.shared(pkt(100));
    advance(20);
    g.shared(pkt(101)); // no own packet for this frame: it goes after the hold
    advance(40);
    g.shared(pkt(102));
    advance(80);
    g.shared(pkt(104)); // 80 ms without an own packet: straight through
    advance(100);
    g.shared(pkt(105)); // the talker is back: the shared copy of this frame went out...
    advance(103);
    g.own(pkt(5)); // ...so its own copy is dropped
    advance(120);
    g.shared(pkt(106));
    advance(122);
    g.own(pkt(6));
    advance(140);
    expect(sent).toEqual(['O0@0', 'S101@32', 'S102@52', 'S104@80', 'S105@100', 'O6@122']);
  });
});
