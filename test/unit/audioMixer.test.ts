import { describe, expect, it } from 'vitest';
import { AudioMixer, FRAME_SAMPLES } from '../../src/media/audioMixer.js';

const pcm = (value: number, frames = 1) => {
  const b = Buffer.alloc(FRAME_SAMPLES * 2 * frames);
  for (let i = 0; i < FRAME_SAMPLES * frames; i++) b.writeInt16LE(value, i * 2);
  return b;
};
const first = (b: Buffer) => b.readInt16LE(0);

describe('AudioMixer (mix-minus)', () => {
  it('gives each listener everyone but itself', () => {
    const m = new AudioMixer(() => 0);
    const got = new Map<string, number[]>();
    for (const id of ['a', 'b', 'c', 'viewer']) m.addOutput(id, (b) => got.set(id, [...(got.get(id) ?? []), first(b)]));
    const values = { a: 100, b: 20, c: 3 };
    for (const [id, v] of Object.entries(values)) m.addInput(id).write(pcm(v, 3));
    m.mixFrame(0n);
    expect(got.get('a')).toEqual([23]);
    expect(got.get('b')).toEqual([103]);
    expect(got.get('c')).toEqual([120]);
    expect(got.get('viewer')).toEqual([123]);
    m.close();
  });

  it('clips instead of wrapping around', () => {
    const m = new AudioMixer(() => 0);
    let out = 0;
    m.addOutput('l', (b) => (out = first(b)));
    m.addInput('x').write(pcm(30000, 3));
    m.addInput('y').write(pcm(30000, 3));
    m.mixFrame(0n);
    expect(out).toBe(32767);
    m.close();
  });

  it('waits for a 40 ms cushion before playing an input, and rebuilds it after an underrun', () => {
    const m = new AudioMixer(() => 0);
    const outs: number[] = [];
    m.addOutput('l', (b) => outs.push(first(b)));
    const fifo = m.addInput('x');
    fifo.write(pcm(7, 1));
    m.mixFrame(0n); // 20 ms queued: not yet
    fifo.write(pcm(7, 1));
    m.mixFrame(1n); // 40 ms queued: plays
    m.mixFrame(2n); // 20 ms left: plays
    m.mixFrame(3n); // empty: silence, re-priming
    fifo.write(pcm(7, 1));
    m.mixFrame(4n); // 20 ms: not yet
    expect(outs).toEqual([0, 7, 7, 0, 0]);
    m.close();
  });

  it('stamps each output from zero, 20 ms apart', async () => {
    let now = 0;
    const m = new AudioMixer(() => now);
    const pts: bigint[] = [];
    m.addOutput('l', (_b, p) => pts.push(p));
    now = 45;
    m.pump(); // two frames due: made at once
    expect(pts).toEqual([0n, 20_000_000n]);
    now = 125;
    m.pump(); // four more after a stall: made after the loop has read its sockets
    expect(pts).toHaveLength(2);
    await new Promise((r) => setImmediate(r));
    expect(pts).toEqual([0n, 20_000_000n, 40_000_000n, 60_000_000n, 80_000_000n, 100_000_000n]);
    m.close();
  });

  it('bounds latency by dropping back to the cushion when an input runs ahead', () => {
    const m = new AudioMixer(() => 0);
    const fifo = m.addInput('x');
    fifo.write(pcm(1, 4));
    expect(fifo.size).toBe(FRAME_SAMPLES * 4);
    fifo.write(pcm(1, 30));
    expect(fifo.size).toBe(FRAME_SAMPLES * 2);
    m.close();
  });
});
