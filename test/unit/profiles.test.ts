import { describe, expect, it } from 'vitest';
import { fitProfile, h264Level, h264LevelLimits, offerLimits, parseLimits, profileKey, tighten } from '../../src/core/profiles.js';
import { DEFAULT_RUNG_POLICY, ladder, LinkWindow, RungController, twccSample, type TwccTotals } from '../../src/core/rungs.js';

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


  /** Reports every 250 ms, as the transport makes them: the sample's own rate and the running totals. */
  function feed(w: LinkWindow, c: RungController | undefined, from: number, to: number, sample: (t: number) => TwccTotals, totals: TwccTotals) {
    for (let t = from; t <= to; t += 250) {
      const s = sample(t);
      totals.receivedBytes += s.receivedBytes;
      totals.receiveMs += s.receiveMs;
      totals.sentBytes += s.sentBytes;
      totals.sendMs += s.sendMs;
      w.add(t, (s.receivedBytes * 8000) / s.receiveMs, 0, 0, totals.sentBytes, totals);
      c?.update({ now: t, estimate: w.estimate, sending: w.yardstick });
    }
  }
  const zero = () => ({ receivedBytes: 0, receiveMs: 0, sentBytes: 0, sendMs: 0 });

  it('compares what the link delivered with what was sent over the same spans: keyframe bursts on a clean link are no congestion', () => {
    // Measured on loopback (a still composite, one packet a frame, a keyframe burst every few
    // seconds): samples of 20 packets read 75-110 kbit/s, one with a burst 310 kbit/s, while the
    // 1.5 s average sent was 160 kbit/s; against that average the viewer went to the lowest rung.
    const w = new LinkWindow(1500, 60);
    const c = new RungController(ladder(BASE), 0);
    const burst = (t: number) => t % 1500 === 0;
    feed(w, c, 0, 20_000, (t) => (burst(t) ? { receivedBytes: 15_000, receiveMs: 400, sentBytes: 15_000, sendMs: 400 } : { receivedBytes: 3000, receiveMs: 250, sentBytes: 3000, sendMs: 250 }), zero());
    expect(w.estimate! / w.yardstick!).toBeCloseTo(1, 5);
    expect(c.rung.name).toBe('full');
    // The old yardstick, the median sample against what was sent over the window, reads the same
    // link as congested.
    const old = new LinkWindow(1500, 60);
    const o = new RungController(ladder(BASE), 0);
    let sent = 0;
    for (let t = 0; t <= 20_000; t += 250) {
      sent += burst(t) ? 15_000 : 3000;
      old.add(t, burst(t) ? 300_000 : 96_000, 0, 0, sent);
      o.update({ now: t, estimate: old.estimate, sending: old.sending });
    }
    expect(o.rung.name).not.toBe('full');
  });

  it('reads 5 % random loss as no congestion, summed over the window, where a sample of 20 packets that lost a big one read 46 %', () => {
    const w = new LinkWindow(1500, 60);
    const c = new RungController(ladder(BASE), 0);
    // 600 kbit/s sent; each 250 ms sample lost 5 % of its bytes, one in four 20 %.
    feed(w, c, 0, 20_000, (t) => ({ receivedBytes: t % 1000 === 0 ? 15_000 : 17_800, receiveMs: 250, sentBytes: 18_750, sendMs: 250 }), zero());
    expect(w.estimate! / w.yardstick!).toBeGreaterThan(0.85);
    expect(c.rung.name).toBe('full');
  });

  it('reads a bottleneck: 800 kbit/s sent into a 300 kbit/s link, its queue dropping the rest, goes to the rung that fits', () => {
    const w = new LinkWindow(1500, 60);
    const c = new RungController(ladder(BASE), 0);
    feed(w, c, 0, 2000, () => ({ receivedBytes: 9375, receiveMs: 250, sentBytes: 25_000, sendMs: 250 }), zero());
    expect(w.estimate).toBeCloseTo(300_000, -3);
    expect(w.yardstick).toBeCloseTo(800_000, -3);
    expect(c.rung.name).toBe('quarter');
  });

  it('stays on the rung that fits while the window and the queue still hold what the old rung sent', () => {
    const w = new LinkWindow(1500, 60);
    const c = new RungController(ladder(BASE), 0);
    // What the link reports lags the rung by 1.5 s (the window, the queue draining, repairs).
    const rungAt: Array<[number, number]> = [];
    feed(w, c, 0, 20_000, (t) => {
      rungAt.push([t, c.rung.bitrate]);
      const then = rungAt.filter(([at]) => at <= t - 1500).at(-1)?.[1] ?? rungAt[0][1];
      const sent = then + 40_000;
      return { receivedBytes: (Math.min(sent, 300_000) * 250) / 8000, receiveMs: 250, sentBytes: (sent * 250) / 8000, sendMs: 250 };
    }, zero());
    expect(c.rung.name).toBe('quarter');
    expect(c.changes).toBe(1);
  });

  it('without transport-wide feedback (REMB), takes the median estimate and the rate sent over the window', () => {
    const w = new LinkWindow(1500, 60);
    w.add(0, 500_000, 0, 0, 0);
    w.add(250, 400_000, 0, 0, 25_000);
    w.add(500, 450_000, 0, 0, 50_000);
    w.add(750, 450_000, 0, 0, 75_000);
    expect(w.estimate).toBe(450_000);
    expect(w.yardstick).toBeCloseTo(800_000, -3);
  });
});

describe('twccSample', () => {
  /** n packets of `size` bytes, one every `everyMs` from 1000 ms. */
  const sends = (n: number, everyMs: number, size: number) => Array.from({ length: n }, (_, i) => ({ size, sendingAtMs: 1000 + i * everyMs }));

  it('counts everything sent over the span of the packets that arrived, the lost ones too', () => {
    // 800 kbit/s sent (101 packets of 1000 bytes over 1 s); a 300 kbit/s link delivered 37 of them.
    const later = sends(5, 1, 1200).map((p) => ({ ...p, sendingAtMs: p.sendingAtMs + 1500 }));
    const s = twccSample({ firstSentMs: 1000, lastSentMs: 2000, firstReceivedMs: 3000, lastReceivedMs: 3000 + 37 * 26.7, receivedBytes: 37_000 }, [...sends(101, 10, 1000), ...later])!;
    expect(s.sentBytes).toBe(101 * 1000);
    expect(s.sendMs).toBe(1000);
    expect((s.receivedBytes * 8000) / s.receiveMs).toBeCloseTo(300_000, -4);
  });

  it('says nothing of a sample sent within a few milliseconds (one burst)', () => {
    expect(twccSample({ firstSentMs: 1000, lastSentMs: 1003, firstReceivedMs: 0, lastReceivedMs: 4, receivedBytes: 20_000 }, sends(20, 0.15, 1000))).toBeUndefined();
  });
});
