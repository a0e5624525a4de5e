import { describe, expect, it } from 'vitest';
import { Admission, LimitError } from '../../src/core/admission.js';

/** An Admission on a fake clock and a fake CPU meter: `busy(cores, ms)` moves both. */
function fixture(opts: { cores?: number; budget?: number; cost?: number; audioCost?: number } = {}) {
  let now = 0;
  let cpu = 0;
  const a = new Admission({
    cores: opts.cores ?? 2,
    budget: opts.budget ?? 0.8,
    participantCost: opts.cost ?? 0.16,
    audioParticipantCost: opts.audioCost ?? 0.04,
    cpuMicros: () => cpu,
    now: () => now,
  });
  const busy = (cores: number, ms: number) => {
    for (let t = 0; t < ms; t += 1000) {
      now += 1000;
      cpu += cores * 1000 * 1000;
      a.sample();
    }
  };
  const wait = (ms: number) => (now += ms);
  return { a, busy, wait };
}

const refused = (fn: () => void) => {
  try {
    fn();
    return undefined;
  } catch (err) {
    return err as LimitError;
  }
};

describe('Admission', () => {
  it('takes joins while load, committed joins and one more fit the budget, then refuses with 503 and Retry-After', () => {
    const { a, busy } = fixture();
    busy(0.4, 3000); // 0.4 of the 1.6 cores allowed
    for (let i = 0; i < 7; i++) a.admit(); // 0.4 + 7 x 0.16 = 1.52
    const err = refused(() => a.admit());
    expect(err).toBeInstanceOf(LimitError);
    expect(err).toMatchObject({ status: 503, limit: 'cpu', code: 'limit_cpu', retryAfterSeconds: 5 });
    // An audio-only participant still fits: 1.52 + 0.04.
    a.admit({ video: false });
    expect(a.dump()).toMatchObject({ loadCores: 0.4, pendingCores: 1.16, capacityCores: 1.6 });
  });

  it('counts an admitted join until its cost shows in the measured load, then only the measure', () => {
    const { a, busy, wait } = fixture();
    busy(0.2, 2000);
    for (let i = 0; i < 8; i++) a.admit();
    expect(refused(() => a.admit())).toBeDefined();
    wait(Admission.SETTLE_MS);
    // The eight now cost what was measured: 1.0 cores, not 8 x 0.16.
    busy(1.0, 8000);
    expect(a.dump().pendingCores).toBe(0);
    a.admit();
    a.admit();
    a.admit();
    expect(refused(() => a.admit())).toBeDefined();
  });

  it('refuses everything once the measured load alone is past the budget, and takes joins again when it falls', () => {
    const { a, busy } = fixture();
    busy(1.9, 5000);
    expect(refused(() => a.admit({ video: false }))).toBeDefined();
    busy(0.3, 6000);
    a.admit();
  });

  it("does not read the node's own start as load: after rebase() the first sample measures from then", () => {
    let now = 0;
    let cpu = 0;
    const a = new Admission({ cores: 2, budget: 0.8, participantCost: 0.16, audioParticipantCost: 0.3, cpuMicros: () => cpu, now: () => now });
    // Starting the workers: 1.5 s of CPU in the first second.
    now += 1000;
    cpu += 1.5e6;
    a.rebase();
    now += 1000;
    cpu += 0.05e6;
    a.sample();
    expect(a.dump().loadCores).toBe(0.05);
    a.admit({ video: false });
    // Without the rebase that second would have read 1.55 cores, and refused the first join.
    const b = new Admission({ cores: 2, budget: 0.8, participantCost: 0.16, audioParticipantCost: 0.3, cpuMicros: () => cpu, now: () => now });
    now += 1000;
    cpu += 1.55e6;
    b.sample();
    expect(refused(() => b.admit({ video: false }))).toBeDefined();
    a.close();
    b.close();
  });

  it('is off with a budget of 0', () => {
    const { a, busy } = fixture({ budget: 0 });
    busy(2, 3000);
    for (let i = 0; i < 100; i++) a.admit();
    expect(a.enabled).toBe(false);
  });
});
