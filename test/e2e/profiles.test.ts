import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { joinSynthetic, launchBrowser, waitFor, type SyntheticPeer } from '../helpers/browser.js';
import { near } from '../helpers/media.js';
import { authFetch, startServerProcess, type ServerProcess } from '../helpers/server.js';

// A low-power device asks for what it can decode, and a real browser gets exactly that.

let server: ServerProcess;
let browser: Browser;
const ROOM = 'small-screen';

beforeAll(async () => {
  server = await startServerProcess({}, { pinCpu: true });
  browser = await launchBrowser();
});
afterAll(async () => {
  await browser?.close();
  expect(await server?.stop()).toBe(0);
});

describe('a viewer with a small screen', () => {
  it('joins with maxWidth=320&maxHeight=180&maxFps=15 and decodes at most 320x180 at 15 fps, with every colour at its tile', async () => {
    const red = await joinSynthetic(browser, server.url, { room: ROOM, name: 'Red', color: [220, 30, 30], freq: 440, render: false });
    const blue = await joinSynthetic(browser, server.url, { room: ROOM, name: 'Blue', color: [30, 60, 220], freq: 660, render: false });
    const small: SyntheticPeer = await joinSynthetic(browser, server.url, {
      room: ROOM,
      name: 'Small',
      color: [0, 0, 0],
      freq: 0,
      direction: 'recvonly',
      query: 'maxWidth=320&maxHeight=180&maxFps=15',
    });
    const view = (await (await authFetch(`${server.url}/v1/rooms/${ROOM}/participants/${small.id}/view`)).json()) as {
      width: number;
      height: number;
      tiles: Array<{ participantId: string; x: number; y: number; width: number; height: number; source: string }>;
    };
    expect(view).toMatchObject({ width: 320, height: 180 });
    // What the browser decodes.
    const size = await waitFor(() => small.page.evaluate(() => (window as any).mcuTest.size()) as Promise<number[]>, (s) => s[0] > 0, 15_000, 'decoded frames').catch(async (e) => {
      console.log(JSON.stringify(await small.page.evaluate(() => (window as any).mcuTest.videoStats())), server.output().slice(-5000));
      throw e;
    });
    expect(size).toEqual([320, 180]);
    // Every publisher's colour at the centre of its tile, in the small picture (once both are live).
    await waitFor(
      async () => (await (await authFetch(`${server.url}/v1/rooms/${ROOM}`)).json()) as { participants: Array<{ videoLive: boolean }> },
      (r) => r.participants.filter((p) => p.videoLive).length === 2,
      20_000,
      'both publishers live',
    );
    let last: unknown;
    await waitFor(
      async () => {
        const v = (await (await authFetch(`${server.url}/v1/rooms/${ROOM}/participants/${small.id}/view`)).json()) as typeof view;
        const checks = await Promise.all(
          v.tiles.map(async (t) => {
            const want = [red, blue].find((p) => p.id === t.participantId)!.color;
            const got = (await small.page.evaluate(([x, y]) => (window as any).mcuTest.sample(x, y), [t.x + t.width / 2, t.y + t.height / 2])) as number[];
            return { ok: t.source === 'video' && near(got, want, 60), source: t.source, want, got };
          }),
        );
        last = checks;
        return v.tiles.length === 2 && checks.every((c) => c.ok);
      },
      (ok) => ok,
      30_000,
      'both colours at their tiles',
    ).catch((e) => {
      throw new Error(`${e.message}: ${JSON.stringify(last)}`);
    });
    // Its frame rate over a few seconds: at most 15.
    const s0 = await small.page.evaluate(() => (window as any).mcuTest.videoStats());
    const t0 = Date.now();
    await new Promise((r) => setTimeout(r, 4000));
    const s1 = await small.page.evaluate(() => (window as any).mcuTest.videoStats());
    const fps = (s1.framesDecoded - s0.framesDecoded) / ((Date.now() - t0) / 1000);
    console.log(`small viewer: ${s1.frameWidth}x${s1.frameHeight}, ${fps.toFixed(1)} fps decoded`);
    expect(s1.frameWidth).toBeLessThanOrEqual(320);
    expect(s1.frameHeight).toBeLessThanOrEqual(180);
    expect(fps).toBeLessThanOrEqual(16);
    expect(fps).toBeGreaterThan(10);
    // The others still get the full picture.
    const redStats = await waitFor(() => red.page.evaluate(() => (window as any).mcuTest.videoStats()), (st) => st?.frameWidth > 0, 10_000, 'Red decoding');
    expect([redStats.frameWidth, redStats.frameHeight]).toEqual([640, 360]);
  });
});
