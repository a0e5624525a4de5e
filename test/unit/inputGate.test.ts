import { describe, expect, it } from 'vitest';
import { InputGate } from '../../src/media/inputGate.js';

const packet = (seq: number) => {
  const b = Buffer.alloc(20);
  b[0] = 0x80;
  b[1] = 111;
  b.writeUInt16BE(seq & 0xffff, 2);
  return b;
};

/** Feeds 20 ms packets from `seq0` with the levels given (one per packet); returns the sequence
 * numbers passed on (after rewriting), undefined for a packet not passed. */
function run(gate: InputGate, seq0: number, t0: number, levels: Array<number | undefined>) {
  return levels.map((level, i) => {
    const p = packet(seq0 + i);
    return gate.pass(p, level, t0 + i * 20) ? p.readUInt16BE(2) : undefined;
  });
}

describe('InputGate: a silent microphone is not decoded', () => {
  it('passes every packet of an input without levels', () => {
    const g = new InputGate();
    expect(run(g, 100, 0, Array(200).fill(undefined))).toEqual(Array.from({ length: 200 }, (_, i) => 100 + i));
    expect(g.skipped).toBe(0);
  });

  it('skips a microphone silent from the start, and passes its first loud packet at once', () => {
    const g = new InputGate({ thresholdLevel: 60, hangoverMs: 2000 });
    const out = run(g, 500, 0, [...Array(50).fill(127), 20, 20, 20]);
    expect(out.slice(0, 50).every((x) => x === undefined)).toBe(true);
    // Nothing was passed before: the first loud packet goes on as it is.
    expect(out.slice(50)).toEqual([550, 551, 552]);
    expect(g.skipped).toBe(50);
  });

  it('keeps pauses within speech (the hangover), closes after it, and keeps the numbers passed on contiguous', () => {
    const g = new InputGate({ thresholdLevel: 60, hangoverMs: 2000 });
    // 1 s of speech, then 5 s of silence, then speech again.
    const levels = [...Array(50).fill(30), ...Array(250).fill(127), ...Array(10).fill(30)];
    const out = run(g, 65500, 0, levels); // across the 16-bit wrap
    const passed = out.filter((x): x is number => x !== undefined);
    // Speech, then the 2 s hangover (100 packets of 20 ms after the last loud one), then nothing until speech comes back.
    expect(out.slice(0, 150).every((x) => x !== undefined)).toBe(true);
    expect(out.slice(150, 300).every((x) => x === undefined)).toBe(true);
    expect(out.slice(300).every((x) => x !== undefined)).toBe(true);
    expect(g.skipped).toBe(150);
    // The decoder's jitter buffer sees no hole: each number follows the one before.
    for (let i = 1; i < passed.length; i++) expect((passed[i] - passed[i - 1]) & 0xffff).toBe(1);
  });

  it('a late packet from before a gap is not taken for a newer one', () => {
    const g = new InputGate({ thresholdLevel: 60, hangoverMs: 0 });
    expect(g.pass(packet(10), 20, 0)).toBe(true);
    expect(g.pass(packet(11), 127, 100)).toBe(false);
    expect(g.pass(packet(12), 127, 120)).toBe(false);
    const p = packet(13);
    expect(g.pass(p, 20, 140)).toBe(true);
    expect(p.readUInt16BE(2)).toBe(11);
    // Packet 9 arrives late, loud: it goes on behind (numbered 9 - 2), and the next is still 12.
    const late = packet(9);
    expect(g.pass(late, 20, 150)).toBe(true);
    expect(late.readUInt16BE(2)).toBe(7);
    const next = packet(14);
    g.pass(next, 20, 160);
    expect(next.readUInt16BE(2)).toBe(12);
  });

  it('while the mix is full without it, a loud microphone under the cutoff is skipped, and one loud enough to take a place is decoded', () => {
    const g = new InputGate({ thresholdLevel: 60, hangoverMs: 2000 });
    // Talking at -17 dBov, as loud as the mix's weakest talker: the room sets the cutoff 3 dB louder.
    expect(run(g, 0, 0, Array(50).fill(17)).every((x) => x !== undefined)).toBe(true);
    expect(Math.round(g.smoothedLevel!)).toBe(17);
    g.cutoff = 14;
    // Still talking, but it could not take a place: skipped once the hangover is over.
    const out = run(g, 50, 1000, Array(200).fill(17));
    expect(out.slice(0, 100).every((x) => x !== undefined)).toBe(true);
    expect(out.slice(100).every((x) => x === undefined)).toBe(true);
    // 8 dB louder (-9 dBov): within reach of a place, decoded again once its smoothed level is
    // under the cutoff (about 200 ms of smoothing), with numbers still contiguous.
    const louder = run(g, 250, 5000, Array(50).fill(9));
    const first = louder.findIndex((x) => x !== undefined);
    expect(first, 'packets until it is decoded again').toBeGreaterThan(0);
    expect(first).toBeLessThan(15);
    expect(louder.slice(first).every((x) => x !== undefined)).toBe(true);
    // The room lifts the cutoff (a place is free, or it is mixed): as before.
    g.cutoff = undefined;
    expect(run(g, 300, 6000, Array(10).fill(17)).every((x) => x !== undefined)).toBe(true);
  });
});

