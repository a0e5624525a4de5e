import { describe, expect, it } from 'vitest';
import { SpeakerDetector } from '../../src/core/speaker.js';

const lv = (o: Record<string, number>) => new Map(Object.entries(o));

describe('SpeakerDetector', () => {
  it('gives the floor to the first person who speaks at once', () => {
    const d = new SpeakerDetector({ holdMs: 1500, floorDb: -50 });
    expect(d.update(lv({ a: -100, b: -20 }), 0)).toBe(true);
    expect(d.current).toBe('b');
  });

  it('needs a new speaker to be loudest for the hold time, so it does not flap', () => {
    const d = new SpeakerDetector({ holdMs: 1500, floorDb: -50 });
    d.update(lv({ a: -20, b: -100 }), 0);
    for (let t = 250; t <= 1250; t += 250) {
      expect(d.update(lv({ a: -100, b: -15 }), t)).toBe(false); // b interrupts, but not for long enough yet
      expect(d.current).toBe('a');
    }
    d.update(lv({ a: -20, b: -100 }), 1500); // a is back: b's claim resets
    d.update(lv({ a: -100, b: -15 }), 1750);
    expect(d.current).toBe('a');
    let changed = false;
    for (let t = 2000; t <= 3500; t += 250) changed = d.update(lv({ a: -100, b: -15 }), t) || changed;
    expect(changed).toBe(true);
    expect(d.current).toBe('b');
  });

  it('ignores noise under the floor and forgets a speaker who left', () => {
    const d = new SpeakerDetector({ holdMs: 0, floorDb: -50 });
    expect(d.update(lv({ a: -60, b: -70 }), 0)).toBe(false);
    expect(d.current).toBeUndefined();
    d.update(lv({ a: -10 }), 100);
    expect(d.current).toBe('a');
    d.update(lv({ b: -80 }), 200);
    expect(d.current).toBeUndefined();
  });
});
