import { describe, expect, it } from 'vitest';
import { AudioMixer, FRAME_SAMPLES, PLAYOUT_DELAY_MS, SampleFifo } from '../../src/media/audioMixer.js';

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

  it('plays each sample PLAYOUT_DELAY_MS after it arrived, and starts again after the input stops', () => {
    let now = 0;
    const m = new AudioMixer(() => now);
    const outs: number[] = [];
    m.addOutput('l', (b) => outs.push(first(b))); // the mixer's frames count from t=0
    const fifo = m.addInput('x');
    now = 1000;
    fifo.write(pcm(7, 1)); // 20 ms of samples, arrived at t=1000
    // Frame k covers mix time [20k, 20k+20): it plays the samples that arrived 40 ms earlier.
    const frameAt = (t: number) => BigInt(t) * 1_000_000n;
    m.mixFrame(frameAt(1000)); // arrived at 980-1000: not yet
    m.mixFrame(frameAt(1020)); // 980-1000: this one
    now = 1020;
    fifo.write(pcm(8, 1));
    now = 1030;
    m.mixFrame(frameAt(1040)); // 1000-1020: the second packet
    m.mixFrame(frameAt(1060)); // nothing came: silence, and the input counts as stopped
    now = 5000;
    fifo.write(pcm(9, 1)); // much later: a fresh start, PLAYOUT_DELAY_MS after this arrival
    m.mixFrame(frameAt(5000));
    m.mixFrame(frameAt(5020));
    expect(PLAYOUT_DELAY_MS).toBe(40);
    expect(outs).toEqual([0, 7, 8, 0, 0, 9]);
    m.close();
  });

  it('keeps the delay whatever the phase of the packets against the frames', () => {
    for (const phase of [0, 3, 9, 17]) {
      let now = 0;
      const fifo = new SampleFifo(() => now);
      // 10 ms packets of a ramp (sample n has value n), arriving on time.
      let n = 0;
      const firsts: number[] = [];
      for (let t = phase; t < 600; t += 10) {
        now = t;
        const b = Buffer.alloc(960);
        for (let i = 0; i < 480; i++) b.writeInt16LE(n++ % 30000, i * 2);
        fifo.write(b);
        if ((t - phase) % 20 === 10 && t > 200) {
          const own = new Int16Array(FRAME_SAMPLES);
          fifo.readFrame(own, Math.floor(t / 20) * 20 - 20);
          // The first sample of the frame at mix time T arrived at T - 40 ms (the ramp tells when:
          // the packet holding sample n arrived at phase - 10 + (n + 1) / 48 ms, had it been on time).
          const arrivedAt = phase - 10 + (own[0] + 1) / 48;
          firsts.push(Math.round(Math.floor(t / 20) * 20 - 20 - arrivedAt));
        }
      }
      for (const d of firsts) expect(Math.abs(d - PLAYOUT_DELAY_MS), `phase ${phase}: ${firsts}`).toBeLessThanOrEqual(2);
    }
  });

  it('takes late packets (a stalled event loop) at their true time, not when they were read', () => {
    let now = 0;
    const fifo = new SampleFifo(() => now);
    const frame = (v: number) => pcm(v, 1);
    for (let k = 0; k < 50; k++) {
      now = k * 20 + 20;
      fifo.write(frame(k));
    }
    // 200 ms of packets held up, then read all at once.
    now = 1200;
    for (let k = 50; k < 60; k++) fifo.write(frame(k));
    const own = new Int16Array(FRAME_SAMPLES);
    // The frame at mix time 1000 plays what arrived at 960-980 in truth: packet 48.
    fifo.readFrame(own, 1000);
    expect(own[0]).toBe(48);
    fifo.readFrame(own, 1020);
    expect(own[0]).toBe(49);
    fifo.readFrame(own, 1040);
    expect(own[0]).toBe(50);
    expect(fifo.corrections).toBe(1); // only the first anchoring read
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

  it('reads the same samples from a buffer at an odd offset (no Int16Array view) as from an aligned one, across the ring\'s end', () => {
    let now = 0;
    // A ring of 3.5 frames, so that writes and reads wrap.
    const fifos = [new SampleFifo(() => now, FRAME_SAMPLES * 3.5), new SampleFifo(() => now, FRAME_SAMPLES * 3.5)];
    const got: number[][] = [[], []];
    let n = 0;
    for (let k = 0; k < 40; k++) {
      now = k * 20 + 20;
      const aligned = Buffer.alloc(FRAME_SAMPLES * 2);
      for (let i = 0; i < FRAME_SAMPLES; i++) aligned.writeInt16LE(((n++ * 37) % 60000) - 30000, i * 2);
      const odd = Buffer.alloc(aligned.length + 1).subarray(1);
      aligned.copy(odd);
      expect(odd.byteOffset & 1).toBe(1);
      fifos[0].write(aligned);
      fifos[1].write(odd);
      fifos.forEach((f, j) => {
        const own = new Int16Array(FRAME_SAMPLES);
        f.readFrame(own, now);
        got[j].push(...own, Math.round(f.framePower * 1e9));
      });
    }
    expect(got[0].some((v) => v !== 0)).toBe(true);
    expect(got[1]).toEqual(got[0]);
  });
});
