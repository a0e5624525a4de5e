import { describe, expect, it } from 'vitest';
import { fitProfile, h264Level, h264LevelLimits, offerLimits, parseLimits, profileKey, tighten } from '../../src/core/profiles.js';
import { DEFAULT_RUNG_POLICY, ladder, LinkWindow, RungController } from '../../src/core/rungs.js';

const BASE = { width: 640, height: 360, fps: 30, bitrate: 800_000 };

describe('output profiles', () => {
  it('reads limits from a query or a body, and names what is wrong', () => {
    expect(parseLimits({ maxWidth: '320', maxHeight: '180', maxFps: '15', name: 'x' })).toEqual({ maxWidth: 320, maxHeight: 180, maxFps: 15 });
    expect(parseLimits({ maxBitrate: 300000 })).toEqual({ maxBitrate: 300000 });
    expect(() => parseLimits({ maxWidth: '32' })).toThrow(/maxWidth must be an integer from 64/);
    expect(() => parseLimits({ maxFps: '15.5' })).toThrow(/maxFps/);
    expect(() => parseLimits({ maxBitrate: '1e9' })).toThrow(/maxBitrate/);
    expect(tighten({ maxWidth: 320, maxFps: 30 }, { maxWidth: 640, maxFps: 15, maxBitrate: 1 })).toEqual({ maxWidth: 320, maxFps: 15, maxBitrate: 1 });
  });

  it('fits the canvas into the limits, keeping its shape', () => {
    expect(fitProfile(BASE, {})).toEqual(BASE);
    expect(fitProfile(BASE, { maxWidth: 320, maxHeight: 180, maxFps: 15 })).toEqual({ width: 320, height: 180, fps: 15, bitrate: 200_000 });
    expect(fitProfile(BASE, { maxHeight: 240 })).toMatchObject({ width: 426, height: 240 });
    expect(fitProfile(BASE, { maxWidth: 1920 })).toMatchObject({ width: 640, height: 360 });
    expect(fitProfile(BASE, { maxBitrate: 300_000 })).toMatchObject({ width: 640, height: 360, bitrate: 300_000 });
    expect(profileKey(fitProfile(BASE, { maxWidth: 320 }))).toBe('320x180@30/200k');
  });

  it('reads H.264 levels from profile-level-id, and never lets a level 1.2 device get more than 352x288, or 3.0 more than 720x576', () => {
    expect(h264Level('42e00c')).toBe('1.2');
    expect(h264Level('42e01e')).toBe('3');
    expect(h264Level('42e01f')).toBe('3.1');
    expect(h264Level('42f00b')).toBe('1b');
    expect(h264Level('640032')).toBe('5');
    expect(h264Level('zz')).toBeUndefined();
    const l12 = h264LevelLimits('1.2', 16 / 9);
    expect(l12.maxWidth).toBeLessThanOrEqual(352);
    expect(l12.maxHeight).toBeLessThanOrEqual(288);
    const p12 = fitProfile({ ...BASE, width: 1280, height: 720 }, l12);
    expect(p12.width).toBeLessThanOrEqual(352);
    expect(p12.height).toBeLessThanOrEqual(288);
    // Within the level's macroblocks per frame and per second.
    const mbs = Math.ceil(p12.width / 16) * Math.ceil(p12.height / 16);
    expect(mbs).toBeLessThanOrEqual(396);
    expect(mbs * p12.fps).toBeLessThanOrEqual(6000);
    const p30 = fitProfile({ ...BASE, width: 1920, height: 1080 }, h264LevelLimits('3', 16 / 9));
    expect(p30.width).toBeLessThanOrEqual(720);
    expect(p30.height).toBeLessThanOrEqual(576);
    expect(Math.ceil(p30.width / 16) * Math.ceil(p30.height / 16) * p30.fps).toBeLessThanOrEqual(40500);
  });

  it('takes b=TIAS, else b=AS, and the best offered H.264 level from an offer', () => {
    const video = (lines: string[]) => ['m=video 9 UDP/TLS/RTP/SAVPF 96 102', 'c=IN IP4 0.0.0.0', ...lines].join('\r\n') + '\r\n';
    expect(offerLimits(video(['b=AS:300']), 16 / 9)).toEqual({ maxBitrate: 285_000 });
    expect(offerLimits(video(['b=AS:300', 'b=TIAS:250000']), 16 / 9)).toEqual({ maxBitrate: 250_000 });
    const h264 = video(['a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e00c', 'a=fmtp:103 profile-level-id=42e00b']);
    expect(offerLimits(h264, 16 / 9, 'h264')).toMatchObject({ maxWidth: 352 });
    expect(offerLimits(h264, 16 / 9, 'vp8')).toEqual({});
  });
});

describe('the bandwidth ladder', () => {
  const rungs = ladder(BASE);

  it('has four rungs: full, half the bitrate, a quarter at half the size, and a low frame rate', () => {
    expect(rungs.map((r) => `${r.name} ${profileKey(r)}`)).toEqual(['full 640x360@30/800k', 'half 640x360@30/400k', 'quarter 320x180@30/200k', 'low-fps 320x180@15/100k']);
  });

  /** Runs a controller over a link of `capacity` bits/s for `ms`, reporting every 250 ms as werift would. */
  function run(c: RungController, from: number, ms: number, capacity: number) {
    const seen: string[] = [];
    for (let t = from; t < from + ms; t += 250) {
      const sending = c.rung.bitrate + 40_000;
      const r = c.update({ now: t, sending, estimate: Math.min(sending, capacity) });
      if (seen.at(-1) !== r.name) seen.push(r.name);
    }
    return seen;
  }

  it('steps down within 2 s of congestion, to the rung that fits, several at once', () => {
    const c = new RungController(rungs, 0);
    let downAt: number | undefined;
    for (let t = 0; t <= 3000; t += 250) {
      const sending = c.rung.bitrate + 40_000;
      if (c.update({ now: t, sending, estimate: Math.min(sending, 300_000) }).name !== 'full') {
        downAt ??= t;
      }
    }
    expect(downAt).toBeLessThanOrEqual(2000);
    expect(c.rung.name).toBe('quarter');
    expect(c.changes).toBe(1);
  });

  it('does not step down for a still picture encoded far below its bitrate', () => {
    const c = new RungController(rungs, 0);
    for (let t = 0; t < 20_000; t += 250) c.update({ now: t, sending: 90_000, estimate: 90_000 });
    expect(c.rung.name).toBe('full');
  });

  it('steps down on loss alone', () => {
    const c = new RungController(rungs, 0);
    for (let t = 0; t <= 1500; t += 250) c.update({ now: t, loss: 0.2 });
    expect(c.rung.name).toBe('half');
  });

  it('steps up slowly, one rung at a time, and waits longer after each failed try (hysteresis)', () => {
    const c = new RungController(rungs, 0);
    // Congested to the quarter rung, then the link stays at 300 kbit/s: a try at "half" fails.
    run(c, 0, 2000, 300_000);
    expect(c.rung.name).toBe('quarter');
    const tries: number[] = [];
    let last = c.rung.name;
    for (let t = 2000; t < 120_000; t += 250) {
      const sending = c.rung.bitrate + 40_000;
      const r = c.update({ now: t, sending, estimate: Math.min(sending, 300_000) });
      if (r.name === 'half' && last !== 'half') tries.push(t);
      last = r.name;
    }
    expect(tries.length).toBeGreaterThanOrEqual(2);
    // The gaps between tries grow.
    const gaps = tries.slice(1).map((t, i) => t - tries[i]);
    for (let i = 1; i < gaps.length; i++) expect(gaps[i]).toBeGreaterThanOrEqual(gaps[i - 1]);
    expect(gaps[0]).toBeGreaterThanOrEqual(DEFAULT_RUNG_POLICY.upAfterMs);
    // The link clears: it climbs back to full, one rung per clean stretch.
    const seen = run(c, 120_000, 200_000, 10_000_000);
    expect(seen.at(-1)).toBe('full');
    expect(seen).toEqual(seen.at(0) === 'quarter' ? ['quarter', 'half', 'full'] : ['half', 'full']);
  });
});

describe('LinkWindow', () => {
  it('takes the median estimate of its window, so a few low samples under random loss are not congestion, and a bottleneck is', () => {
    const w = new LinkWindow(1500, 60);
    let sent = 0;
    let bytes = 0;
    // 5 % random loss at 100 packets a second: each 250 ms report, 25 packets; NACKs land unevenly.
    const nacks = [0, 3, 0, 1, 0, 4, 1, 0];
    let nacked = 0;
    for (let i = 0; i < 8; i++) {
      sent += 25;
      bytes += 25 * 1000;
      nacked += nacks[i];
      // Mostly what is sent (800 kbit/s), now and then a 100 ms window that looked starved.
      w.add(i * 250, i % 3 === 1 ? 300_000 : 780_000, sent, nacked, bytes);
    }
    expect(w.estimate).toBe(780_000);
    expect(w.sending).toBeCloseTo(800_000, -3);
    expect(w.loss).toBeGreaterThan(0.03);
    expect(w.loss).toBeLessThan(0.1);
    // A bottleneck: every sample low for a window.
    for (let i = 8; i < 14; i++) {
      sent += 25;
      bytes += 25 * 1000;
      w.add(i * 250, 290_000, sent, nacked, bytes);
    }
    expect(w.estimate).toBe(290_000);
  });

  it('says no loss from too few packets', () => {
    const w = new LinkWindow(1500, 60);
    w.add(0, undefined, 0, 0, 0);
    w.add(1000, undefined, 20, 5, 20_000);
    expect(w.loss).toBe(0);
    expect(w.estimate).toBeUndefined();
  });
});
