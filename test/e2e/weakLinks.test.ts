import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { joinSynthetic, launchBrowser, waitFor, type SyntheticPeer } from '../helpers/browser.js';
import { ImpairedLink } from '../helpers/impairedLink.js';
import { near } from '../helpers/media.js';
import { apiCall, authFetch, joinToken, startServerProcess, type ServerProcess } from '../helpers/server.js';
import { ONE_MORE_TRY, oneTry } from '../helpers/tries.js';
import { startTurn } from '../helpers/turn.js';

// A viewer on a weak link: its downlink goes through a user-space relay that throttles it (this
// kernel has no netem). The server must find out from transport-cc and move it to a rung that fits.

let server: ServerProcess;
let browser: Browser;
const links: ImpairedLink[] = [];
/** The 300 kbit/s test's room: each try is a call of its own. */
let ROOM = 'weak';

beforeAll(async () => {
  server = await startServerProcess({}, { pinCpu: true });
  browser = await launchBrowser();
});
afterAll(async () => {
  await browser?.close();
  for (const l of links) l.close();
  expect(await server?.stop()).toBe(0);
});

type Output = { rung: { index: number; name: string } | null; profile: { width: number; height: number; bitrate: number }; link: { estimate?: number; source?: string } | null };
const outputOf = async (id: string) => (await apiCall(server.url, 'GET', `/v1/rooms/${ROOM}/participants/${id}`)).body.output as Output;
const stats = (p: SyntheticPeer) => p.page.evaluate(() => (window as any).mcuTest.videoStats());
/** The server's log lines about one participant (its lines carry the id's first 8 characters, or all of it). */
const linesOn = (s: ServerProcess, id: string) => s.output().split('\n').filter((l) => l.includes(id.slice(0, 8)));

describe('a viewer on a 300 kbit/s downlink', () => {
  it('settles within 10 s on a rung that fits, then sees under 2 % loss and no freeze, while the others keep the full rung', ONE_MORE_TRY, () =>
    oneTry('300 kbit/s', async (n, cleanups) => {
      ROOM = `weak-${n}`;
      const pages: SyntheticPeer[] = [];
      cleanups.push(async () => {
        for (const p of pages) await p.page.close();
      });
      const red = await joinSynthetic(browser, server.url, { room: ROOM, name: 'Red', color: [220, 30, 30], freq: 440, render: false, busy: true });
      pages.push(red);
      const blue = await joinSynthetic(browser, server.url, { room: ROOM, name: 'Blue', color: [30, 60, 220], freq: 660, render: false, busy: true });
      pages.push(blue);
      await waitFor(() => apiCall(server.url, 'GET', `/v1/rooms/${ROOM}`), (r) => r.body.participants.filter((p: { videoLive: boolean }) => p.videoLive).length === 2, 20_000, 'publishers live');
      const link = ImpairedLink.create();
      links.push(link);
      // A 300 kbit/s bottleneck with 400 ms of buffer, as tc's tbf is usually set up (latency 400ms).
      link.set('down', { rateKbps: 300, queueMs: 400 });
      const weak = await joinSynthetic(browser, server.url, { room: ROOM, name: 'Weak', color: [0, 0, 0], freq: 0, direction: 'recvonly', link, render: false });
      pages.push(weak);
      // From the join as the server took it (opening a Chromium page on this busy machine took 3-4 s before it).
      const t0 = Date.parse((await apiCall(server.url, 'GET', `/v1/rooms/${ROOM}/participants/${weak.id}`)).body.joinedAt);
      // Settled: on a rung whose bitrate fits, with no change for 4 s; the settling time is its last change.
      let rung = -1;
      let changedAt = Date.now();
      const settled = await waitFor(
        async () => {
          const o = await outputOf(weak.id);
          if ((o.rung?.index ?? 0) !== rung) {
            rung = o.rung?.index ?? 0;
            changedAt = Date.now();
          }
          return o;
        },
        (o) => !!o.rung && o.rung.index >= 1 && o.profile.bitrate <= 300_000 * 0.85 && Date.now() - changedAt >= 4000,
        25_000,
        'a rung that fits, kept for 4 s',
      );
      const settleS = (changedAt - t0) / 1000;
      const decisions = () => `the server on Weak:\n${linesOn(server, weak.id).slice(-30).join('\n')}`;
      console.log(`settled on "${settled.rung!.name}" (${settled.profile.width}x${settled.profile.height}, ${settled.profile.bitrate} bit/s) ${settleS.toFixed(1)} s after joining; estimate ${settled.link?.estimate} (${settled.link?.source})`);
      expect(settleS, decisions()).toBeLessThanOrEqual(10);
      // Watch a stretch.
      const s0 = await stats(weak);
      const l0 = { ...link.down.stats };
      await new Promise((r) => setTimeout(r, 12_000));
      const s1 = await stats(weak);
      const l1 = { ...link.down.stats };
      const sent = l1.packets - l0.packets;
      const dropped = l1.dropped - l0.dropped + (l1.lost - l0.lost);
      const frames = s1.framesDecoded - s0.framesDecoded;
      console.log(
        `after settling, 12 s: ${sent} packets offered to the link, ${dropped} dropped (${((100 * dropped) / Math.max(1, sent)).toFixed(2)} %), ` +
          `browser lost ${s1.packetsLost - s0.packetsLost}, ${frames} frames decoded (${(frames / 12).toFixed(1)} fps), freezes ${s0.freezeCount} -> ${s1.freezeCount}, ` +
          `${s1.frameWidth}x${s1.frameHeight}`,
      );
      const after = await outputOf(weak.id);
      console.log(`then: rung "${after.rung?.name}", estimate ${after.link?.estimate} (${after.link?.source}), NACK repairs ${JSON.stringify(after.link)}`);
      // Should a bound fail, what the server decided for this viewer comes with it.
      expect(dropped / Math.max(1, sent), decisions()).toBeLessThan(0.02);
      expect(s1.freezeCount - s0.freezeCount, decisions()).toBe(0);
      expect(frames / 12, decisions()).toBeGreaterThan(10);
      // The others were never moved.
      for (const p of [red, blue]) {
        const o = await outputOf(p.id);
        // (The message says why, should a starved page's own feedback have read as congestion.)
        expect(o.rung?.index ?? 0, `${p.name}, on a link of its own, was moved: ${JSON.stringify(o)}`).toBe(0);
        expect(o.profile).toMatchObject({ width: 640, height: 360 });
      }
    }),
  );
});

/** Freezes (Chromium's freezeCount) and frames a viewer shows over `seconds` behind a lossy downlink. */
async function lossyViewer(s: ServerProcess, room: string, seconds: number) {
  const pubs = [
    await joinSynthetic(browser, s.url, { room, name: 'Red', color: [220, 30, 30], freq: 440, render: false }),
    await joinSynthetic(browser, s.url, { room, name: 'Blue', color: [30, 60, 220], freq: 660, render: false }),
  ];
  await waitFor(() => apiCall(s.url, 'GET', `/v1/rooms/${room}`), (r) => r.body.participants.filter((p: { videoLive: boolean }) => p.videoLive).length === 2, 20_000, 'publishers live');
  const link = ImpairedLink.create();
  links.push(link);
  link.set('down', { lossPct: 5 });
  const v = await joinSynthetic(browser, s.url, { room, name: 'Lossy', color: [0, 0, 0], freq: 0, direction: 'recvonly', link });
  // The control: a viewer of the same composite on a clean link, watched over the same window. A
  // machine that starves its browsers freezes it too.
  const c = await joinSynthetic(browser, s.url, { room, name: 'Clean', color: [0, 0, 0], freq: 0, direction: 'recvonly' });
  // Without NACK a lossy viewer decodes a few frames a second at best: start counting at its first ones.
  await waitFor(() => stats(v), (st) => st?.framesDecoded > 5, 20_000, 'the lossy viewer decoding');
  await waitFor(() => stats(c), (st) => st?.framesDecoded > 5, 20_000, 'the clean viewer decoding');
  const [s0, c0] = [await stats(v), await stats(c)];
  const l0 = { ...link.down.stats };
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const [s1, c1] = [await stats(v), await stats(c)];
  const l1 = { ...link.down.stats };
  const o = (await apiCall(s.url, 'GET', `/v1/rooms/${room}/participants/${v.id}`)).body.output;
  const out = {
    freezes: s1.freezeCount - s0.freezeCount,
    fps: +((s1.framesDecoded - s0.framesDecoded) / seconds).toFixed(1),
    framesDropped: s1.framesDropped - s0.framesDropped,
    nacks: s1.nackCount - s0.nackCount,
    plis: s1.pliCount - s0.pliCount,
    /** Packets the browser never got, repairs included. */
    lost: s1.packetsLost - s0.packetsLost,
    /** What the relay carried toward the viewer, and what it dropped. */
    relayed: l1.packets - l0.packets,
    dropped: l1.lost - l0.lost + (l1.dropped - l0.dropped),
    rung: o.rung?.name,
    repaired: o.link?.repaired,
    refused: o.link?.refused,
    control: { freezes: c1.freezeCount - c0.freezeCount, fps: +((c1.framesDecoded - c0.framesDecoded) / seconds).toFixed(1) },
  };
  for (const p of [...pubs, v, c]) await p.page.close();
  console.log(linesOn(s, v.id).filter((l) => /link: rung/.test(l)).join('\n'));
  return out;
}

describe('5 % random loss', () => {
  // The goal: at most 1 freeze a minute with NACK. Measured in 6 runs: 0-1 freezes in 60 s at
  // 30 fps on the full rung (random loss is not congestion), against 1-7 freezes in 30 s without
  // NACK (the last run: 7, at 4 fps). Later: 0 in four local runs, and 3 in a CI run whose browser
  // also dropped 6 decoded frames (a starved renderer: 29.7 fps, 72 packets never repaired, no PLI).
  // Then 9 in another CI run, with no figures printed. So a clean viewer of the same composite is
  // watched over the same window, and only the freezes beyond its own count; NACK broken shows as
  // the frame rate (2.6-7.6 fps).
  // Both are judged at Chromium pages on the shared 2-core machine: one more try, each in rooms of
  // its own (see test/helpers/tries.ts).
  it("on a viewer's downlink: the call stays watchable with NACK, and the figures with and without it are printed", { timeout: 240_000, ...ONE_MORE_TRY }, () =>
    oneTry('5 % downlink loss', async (n) => {
      const withNack = await lossyViewer(server, `lossy-nack-${n}`, 60);
      console.log(`5 % downlink loss, NACK on, 60 s: ${JSON.stringify(withNack)}`);
      const other = await startServerProcess({ MCU_NACK: '0' }, { pinCpu: true });
      let without: Awaited<ReturnType<typeof lossyViewer>>;
      try {
        without = await lossyViewer(other, `lossy-no-nack-${n}`, 30);
        console.log(`5 % downlink loss, NACK off, 30 s: ${JSON.stringify(without)}`);
      } finally {
        await other.stop();
      }
      // CI prints only part of a run's output: the figures go with each failure.
      const said = `with NACK ${JSON.stringify(withNack)}; without ${JSON.stringify(without)}`;
      expect(withNack.nacks, said).toBeGreaterThan(0);
      expect(withNack.repaired, said).toBeGreaterThan(0);
      // Freezes the loss caused: beyond those of the clean viewer of the same composite at the same time.
      expect(withNack.freezes - withNack.control.freezes, said).toBeLessThanOrEqual(2);
      expect(withNack.fps, said).toBeGreaterThan(25);
      expect(withNack.rung, said).toBe('full');
      // Without NACK nothing is repaired.
      expect(without.repaired).toBe(0);
    }),
  );

  it("on a publisher's uplink: it stays live in every composite", { timeout: 120_000, ...ONE_MORE_TRY }, () =>
    oneTry('5 % uplink loss', async (n, cleanups) => {
      const room = `lossy-up-${n}`;
      const link = ImpairedLink.create();
      links.push(link);
      link.set('up', { lossPct: 5 });
      const green = await joinSynthetic(browser, server.url, { room, name: 'Green', color: [40, 200, 60], freq: 550, link, render: false });
      cleanups.push(() => green.page.close());
      const watcher = await joinSynthetic(browser, server.url, { room, name: 'Watcher', color: [0, 0, 0], freq: 0, direction: 'recvonly' });
      cleanups.push(() => watcher.page.close());
      // (Once, in a full run of this file, Green was gone from the room by then: the server's lines on
      // it go with a timeout.)
      await waitFor(() => apiCall(server.url, 'GET', `/v1/rooms/${room}`), (r) => r.body.participants.find((p: { id: string }) => p.id === green.id)?.videoLive, 20_000, 'Green live').catch((e: Error) => {
        throw new Error(`${e.message}\nthe server on Green:\n${linesOn(server, green.id).join('\n')}`);
      });
      // The watcher moves to the composite with Green's video once that one flows steadily (some
      // 200 ms after Green is live; a CI run looked at once and found the placeholder still shown).
      const viewOf = async () => (await apiCall(server.url, 'GET', `/v1/rooms/${room}/participants/${watcher.id}/view`)).body;
      await waitFor(viewOf, (v) => v.tiles?.find((x: { participantId: string }) => x.participantId === green.id)?.source === 'video', 10_000, "Green's video in the watcher's view");
      // From then on, for 20 s: always live, and its colour at its tile in what the watcher gets.
      const t0 = Date.now();
      let samples = 0;
      while (Date.now() - t0 < 20_000) {
        const r = await apiCall(server.url, 'GET', `/v1/rooms/${room}`);
        expect(r.body.participants.find((p: { id: string }) => p.id === green.id).videoLive).toBe(true);
        const v = await viewOf();
        const t = v.tiles.find((x: { participantId: string }) => x.participantId === green.id);
        expect(t.source).toBe('video');
        const got = (await watcher.page.evaluate(([x, y]) => (window as any).mcuTest.sample(x, y), [t.x + t.width / 2, t.y + t.height / 2])) as number[];
        if (got.some((c) => c > 0)) {
          expect(Math.abs(got[1] - 200)).toBeLessThan(70);
          samples++;
        }
        await new Promise((r) => setTimeout(r, 1000));
      }
      expect(samples).toBeGreaterThan(10);
      const dump = (await apiCall(server.url, 'GET', `/v1/rooms/${room}`)).body.participants.find((p: { id: string }) => p.id === green.id);
      console.log(`publisher behind 5 % uplink loss, 20 s: live throughout, ${dump.stats.pliSent} PLIs sent to it; link dropped ${link.up.stats.lost} of ${link.up.stats.packets} packets`);
    }),
  );
});

/**
 * A Chromium peer that may use only the TURN servers the server announces, over TCP (plain, or TLS),
 * joins, and sees and hears another.
 */
async function relayOnlyJoin(browser: Browser, turnOpts: { port?: number; tls?: boolean }, room: string, protocol: 'tcp' | 'tls') {
  const turn = await startTurn('127.0.0.1', turnOpts);
  const s = await startServerProcess({ MCU_TURN_URLS: `${turn.url},turn:127.0.0.1:3478?transport=udp`, MCU_TURN_SECRET: turn.secret }, { pinCpu: true });
  const pages: SyntheticPeer[] = [];
  try {
    // The WHIP OPTIONS answers the ICE servers with credentials of the peer's own (RFC 9725 4.6).
    const opt = await authFetch(`${s.url}/v1/rooms/${room}/participants`, { method: 'OPTIONS' }, await joinToken(room));
    expect(opt.status).toBe(204);
    const link = opt.headers.get('link') ?? '';
    expect(link.startsWith(`<${turn.url}>; rel="ice-server"; username="`)).toBe(true);
    expect(link).toMatch(/username="\d+:[^"]+"; credential="[^"]+"; credential-type="password"/);
    const red = await joinSynthetic(browser, s.url, { room, name: 'Red', color: [220, 30, 30], freq: 440 });
    pages.push(red);
    const far = await joinSynthetic(browser, s.url, { room, name: 'Far', color: [30, 60, 220], freq: 660, relayOnly: 'tcp' });
    pages.push(far);
    const route = await waitFor(() => far.page.evaluate(() => (window as any).mcuTest.route()), (r) => !!r, 20_000, 'a selected candidate pair').catch((e) => {
      console.log(turn.output().slice(-4000));
      throw e;
    });
    console.log(`Far's route: ${JSON.stringify(route)}`);
    expect(route).toMatchObject({ type: 'relay', relayProtocol: protocol });
    // Far sees Red, Red sees Far; each hears the other.
    for (const [viewer, other] of [
      [far, red],
      [red, far],
    ] as const) {
      let seen = 'nothing yet';
      await waitFor(
        async () => {
          const v = (await apiCall(s.url, 'GET', `/v1/rooms/${room}/participants/${viewer.id}/view`)).body;
          const t = v.tiles?.find((x: { participantId: string }) => x.participantId === other.id);
          if (!t || t.source !== 'video') {
            seen = `view ${JSON.stringify(v)}`;
            return false;
          }
          // The tile's centre, as a share of the view: the page's video may still be another rung's size.
          const [fx, fy] = [(t.x + t.width / 2) / v.width, (t.y + t.height / 2) / v.height];
          const got = (await viewer.page.evaluate(([x, y]) => {
            const [w, h] = (window as any).mcuTest.size();
            return (window as any).mcuTest.sample(Math.round(x * w), Math.round(y * h));
          }, [fx, fy])) as number[];
          seen = `tile ${JSON.stringify(t)} of a ${v.width}x${v.height} view, sampled ${JSON.stringify(got)}`;
          return near(got, other.color, 60);
        },
        Boolean,
        20_000,
        `${viewer.name} to see ${other.name}`,
      ).catch(async (e) => {
        // What the page and the server had, for a failure that does not reproduce.
        const page = await viewer.page.evaluate(async () => ({ size: (window as any).mcuTest.size(), video: await (window as any).mcuTest.videoStats(), state: (window as any).mcuTest.state() }));
        const me = (await apiCall(s.url, 'GET', `/v1/rooms/${room}`)).body.participants.find((p: { id: string }) => p.id === viewer.id);
        console.log(`${viewer.name} did not see ${other.name}: last ${seen}; page ${JSON.stringify(page)}; server ${JSON.stringify({ output: me?.output, stats: me?.stats, videoLive: me?.videoLive })}`);
        // (A CI run's Far had an empty view, as if Red had gone: what the server said of each.)
        console.log(`the server on ${other.name}:\n${linesOn(s, other.id).slice(-30).join('\n')}\nand on ${viewer.name}:\n${linesOn(s, viewer.id).slice(-30).join('\n')}`);
        console.log(s.output().slice(-3000));
        throw e;
      });
      const levels = await waitFor(
        () => viewer.page.evaluate((f) => (window as any).mcuTest.levels(f), [other.freq, viewer.freq]) as Promise<number[]>,
        ([theirs, own]) => theirs > own + 20,
        15_000,
        `${viewer.name} to hear ${other.name}`,
      );
      console.log(`${viewer.name} hears ${other.name} at ${levels[0].toFixed(0)} dB, itself at ${levels[1].toFixed(0)} dB`);
    }
    // The browser's own selected pair (relay over TCP) is the proof; coturn's log is buffered when
    // piped, so its session lines may not have arrived yet and are not asserted on.
  } finally {
    for (const p of pages) await p.page.close();
    await s.stop();
    await turn.stop();
  }
}

describe('a network that lets only TCP to the TURN server through', () => {
  // Each judges, within 20 s deadlines, two Chromium pages and a server pinned to one CPU, after the
  // file's heavier tests: one more try each (test/helpers/tries.ts), with its own server and TURN.
  it('a Chromium peer that may use only TURN over TCP (the servers from the WHIP Link headers) joins, and sees and hears the others', { timeout: 120_000, ...ONE_MORE_TRY }, () =>
    oneTry('TURN over TCP', (n) => relayOnlyJoin(browser, {}, `tcp-only-${n}`, 'tcp')),
  );

  it('and one that may reach only TLS on port 443: TURN over TLS (turns:, a self-signed certificate)', { timeout: 120_000, ...ONE_MORE_TRY }, () =>
    oneTry('TURN over TLS', async (n, cleanups) => {
      // The TURN server's certificate is self-signed: this browser is told not to check certificates.
      const trusting = await launchBrowser(['--ignore-certificate-errors']);
      cleanups.push(() => trusting.close());
      await relayOnlyJoin(trusting, { port: 443, tls: true }, `tls-443-${n}`, 'tls');
    }),
  );
});
