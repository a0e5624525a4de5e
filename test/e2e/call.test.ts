import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { joinSynthetic, launchBrowser, waitFor, type SyntheticPeer } from '../helpers/browser.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { compose } from '../../src/core/composition.js';
import { LayoutRegistry } from '../../src/core/layouts.js';
import { decodeAudio, discover, framesEverySecond, pixel } from '../helpers/fileMedia.js';
import { sleep, toneDb } from '../helpers/media.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mcu-e2e-'));
import { authFetch, startServerProcess, type ServerProcess } from '../helpers/server.js';

interface ViewJson {
  width: number;
  height: number;
  layout: string;
  tiles: Array<{ participantId: string; name: string; x: number; y: number; width: number; height: number; source: string }>;
}

const near = (a: number[], b: number[], tol: number) => a.every((v, i) => Math.abs(v - b[i]) <= tol);

let server: ServerProcess;
let browser: Browser;

beforeAll(async () => {
  server = await startServerProcess({}, { pinCpu: true });
  browser = await launchBrowser();
});

let failed = false;
afterEach(({ task }) => {
  if (task.result?.state === 'fail') failed = true;
});

afterAll(async () => {
  if (failed) {
    console.log((await authFetch(`${server.url}/v1/rooms`).then((r) => r.text()).catch(() => '')).slice(0, 4000));
    console.log(server.output().slice(-6000));
  }
  await browser?.close();
  const code = await server?.stop();
  expect(code).toBe(0);
});

async function view(p: SyntheticPeer, room: string): Promise<ViewJson> {
  const r = await authFetch(`${server.url}/v1/rooms/${room}/participants/${p.id}/view`);
  expect(r.status).toBe(200);
  return (await r.json()) as ViewJson;
}

/** Every other peer's colour is at the centre of its tile in what `p` receives. */
async function seesOthers(p: SyntheticPeer, others: SyntheticPeer[], room: string, layout = 'grid') {
  return waitFor(
    async () => {
      const v = await view(p, room);
      const checks = await Promise.all(
        v.tiles.map(async (t) => {
          const want = others.find((o) => o.id === t.participantId)?.color;
          const got = (await p.page.evaluate(([x, y]) => (window as any).mcuTest.sample(x, y), [t.x + t.width / 2, t.y + t.height / 2])) as number[];
          return { id: t.participantId, want, got, ok: !!want && t.source === 'video' && near(got, want, 60) };
        }),
      );
      const ids = v.tiles.map((t) => t.participantId).sort();
      return { ok: v.layout === layout && checks.every((c) => c.ok) && ids.join() === others.map((o) => o.id).sort().join(), checks, v };
    },
    (r) => r.ok,
    20_000,
    `${p.name} to see ${others.map((o) => o.name).join(', ')} at their tiles`,
  );
}

async function hearsOthersNotSelf(p: SyntheticPeer, others: SyntheticPeer[]) {
  const freqs = [p.freq, ...others.map((o) => o.freq)];
  return waitFor(
    async () => (await p.page.evaluate((f) => (window as any).mcuTest.levels(f), freqs)) as number[],
    ([own, ...rest]) => rest.every((db) => db > -60) && rest.every((db) => db - own > 25),
    20_000,
    `${p.name} to hear ${others.map((o) => `${o.freq} Hz`).join(', ')} and not its own ${p.freq} Hz`,
  );
}

describe('a call with real Chromium peers on loopback', () => {
  const room = 'e2e-call';
  const peers: SyntheticPeer[] = [];

  it('three participants each see the others at their /view tiles and hear everyone but themselves', async () => {
    const specs: Array<[string, [number, number, number], number]> = [
      ['Red', [230, 30, 30], 440],
      ['Green', [30, 200, 40], 660],
      ['Blue', [30, 40, 230], 990],
    ];
    for (const [name, color, freq] of specs) peers.push(await joinSynthetic(browser, server.url, { room, name, color, freq }));

    for (const p of peers) {
      const others = peers.filter((o) => o !== p);
      const seen = await seesOthers(p, others, room);
      expect(seen.v.width).toBe(640);
      expect(seen.v.height).toBe(360);
      expect(await p.page.evaluate(() => (window as any).mcuTest.size())).toEqual([640, 360]);
      const [own, ...rest] = await hearsOthersNotSelf(p, others);
      expect(Math.min(...rest) - own).toBeGreaterThan(25);
    }
    await peers[0].page.screenshot({ path: 'test-results/e2e-red-view.png' }).catch(() => undefined);

    const r = await (await authFetch(`${server.url}/v1/rooms/${room}`)).json();
    expect(r.participants).toHaveLength(3);
  });

  it('a fourth joins and leaves: the others reflow, and their video keeps flowing', async () => {
    const t0 = Date.now();
    const before = await Promise.all(peers.map((p) => p.page.evaluate(() => (window as any).mcuTest.videoStats())));
    const fourth = await joinSynthetic(browser, server.url, { room, name: 'Yellow', color: [230, 220, 30], freq: 1320 });
    for (const p of peers) {
      await seesOthers(p, [...peers.filter((o) => o !== p), fourth], room);
    }
    const del = await authFetch(server.url + fourth.location, { method: 'DELETE' });
    expect(del.status).toBe(204);
    await fourth.page.close();
    for (const p of peers) {
      const v = await seesOthers(p, peers.filter((o) => o !== p), room);
      expect(v.v.tiles).toHaveLength(2);
    }
    const after = await Promise.all(peers.map((p) => p.page.evaluate(() => (window as any).mcuTest.videoStats())));
    const dump = (await (await authFetch(`${server.url}/v1/rooms/${room}`)).json()) as { participants: Array<{ id: string; stats: { maxFrameGapMs: number } }> };
    // Each viewer's one video stream went on across the join and the leave: the same track kept
    // decoding, at least half its frame rate on average, on this shared 2-core machine. The gap and
    // freeze figures are printed; bench/ measures them under controlled load.
    const elapsedS = (Date.now() - t0) / 1000;
    after.forEach((s, i) => {
      const gap = dump.participants.find((x) => x.id === peers[i].id)!.stats.maxFrameGapMs;
      console.log(`${peers[i].name}: ${s.framesDecoded - before[i].framesDecoded} frames in ${elapsedS.toFixed(1)} s, freezeCount ${before[i].freezeCount} -> ${s.freezeCount}, largest server-side gap ${gap} ms`);
      expect(s.framesDecoded - before[i].framesDecoded).toBeGreaterThan(15 * elapsedS);
    });
    expect((await authFetch(server.url + fourth.location + '/view')).status).toBe(404);
  });

  it('records 10 s of the call: every colour at its tile and every tone in the mix', async () => {
    // 640x360: in this test the server has one CPU (the browsers have the other), too little for a
    // 720p recording on top of three live composites; test/api/recording.test.ts records at 720p.
    const res = await authFetch(`${server.url}/v1/rooms/${room}/recordings`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ width: 640, height: 360 }) });
    expect(res.status).toBe(201);
    const rec = (await res.json()) as { id: string };
    await sleep(10_000);
    const stopped = await (await authFetch(`${server.url}/v1/rooms/${room}/recordings/${rec.id}/stop`, { method: 'POST' })).json();
    expect(stopped.state).toBe('done');
    const file = path.join(tmp, 'call.webm');
    fs.writeFileSync(file, Buffer.from(await (await authFetch(`${server.url}/v1/recordings/${rec.id}/file`)).arrayBuffer()));
    const d = discover(file);
    expect(d.durationS).toBeGreaterThan(9.3);
    expect(d.text).toMatch(/VP8/);
    expect(d.text).toMatch(/Opus/);
    // The recording's own view: everyone, in join order, on the grid.
    const grid = LayoutRegistry.fromDirectory(path.resolve('layouts')).get('grid');
    const c = compose(peers.map((p) => ({ id: p.id, name: p.name, hasVideo: true })), grid, { width: 640, height: 360, fps: 30 });
    const frames = framesEverySecond(file, path.join(tmp, 'call-frames'));
    for (const t of c.tiles) {
      const want = peers.find((p) => p.id === t.participantId)!.color;
      const got = await pixel(frames[6], t.x + t.width / 2, t.y + t.height / 2);
      expect(near(got, want, 60), `${t.name} in the recording: ${got}`).toBe(true);
    }
    const pcm = decodeAudio(file, path.join(tmp, 'call.raw'));
    const mid = pcm.subarray(48000 * 5, 48000 * 7);
    for (const p of peers) expect(toneDb(mid, p.freq), `${p.freq} Hz in the recording`).toBeGreaterThan(-40);
  });
});
