import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { RtpPacket } from 'werift';
import { LocalUdp } from '../../src/media/localUdp.js';
import { joinSynthetic, launchBrowser, waitFor, type SyntheticPeer } from '../helpers/browser.js';
import { colourSender, near, sleep } from '../helpers/media.js';
import { authFetch, startServerProcess, type ServerProcess } from '../helpers/server.js';
import { joinWerift, type WeriftPeer } from '../helpers/weriftPeer.js';

// One Chromium viewer (it has a CPU to itself, so a freeze it counts is the server's doing), two
// werift publishers sending GStreamer-made colours, and a second viewer that chooses nothing.
let server: ServerProcess;
let browser: Browser;
const cleanup: Array<() => unknown> = [];
const room = 'e2e-switch';
const colours: Record<string, [number, number, number]> = { Red: [230, 30, 30], Blue: [30, 40, 230] };
const pubs: Record<string, WeriftPeer> = {};
let viewer: SyntheticPeer;
let other: WeriftPeer;

beforeAll(async () => {
  server = await startServerProcess({}, { pinCpu: true });
  browser = await launchBrowser();
  for (const [name, rgb] of Object.entries(colours)) {
    const p = await joinWerift(server.url, room, name, { video: 'sendonly' });
    const udp = await LocalUdp.open((b) => p.send.video!.writeRtp(RtpPacket.deSerialize(b)));
    const s = colourSender(rgb, udp.port);
    pubs[name] = p;
    cleanup.push(() => p.close(), () => s.close(), () => udp.close());
  }
  viewer = await joinSynthetic(browser, server.url, { room, name: 'Viewer', color: [0, 0, 0], freq: 0, direction: 'recvonly' });
  other = await joinWerift(server.url, room, 'Other', { video: 'recvonly' });
  cleanup.push(() => other.close());
});

afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
  await browser?.close();
  expect(await server.stop()).toBe(0);
});

const view = async (id: string) => (await (await authFetch(`${server.url}/v1/rooms/${room}/participants/${id}/view`)).json()) as {
  layout: string;
  tiles: Array<{ participantId: string; name: string; x: number; y: number; width: number; height: number; source: string }>;
};

/** The viewer sees each publisher's colour at the tile its /view reports, on `layout`. */
async function seesColours(layout: string) {
  return waitFor(
    async () => {
      const v = await view(viewer.id);
      const checks = await Promise.all(
        v.tiles.map(async (t) => {
          const got = (await viewer.page.evaluate(([x, y]) => (window as any).mcuTest.sample(x, y), [t.x + t.width / 2, t.y + t.height / 2])) as number[];
          return t.source === 'video' && near(got, colours[t.name], 60);
        }),
      );
      return { v, ok: v.layout === layout && v.tiles.length === 2 && checks.every(Boolean) };
    },
    (r) => r.ok,
    20_000,
    `the viewer to see both colours on ${layout}`,
  );
}

describe('switching a viewer’s layout in Chromium', () => {
  it('moves the colours to the new tiles with no freeze, and leaves another viewer’s view alone', async () => {
    await seesColours('grid');
    await sleep(2000); // let the receiver settle
    const otherBefore = await view(other.id);
    for (const layout of ['side-by-side', 'pip', 'grid']) {
      const stats0 = await viewer.page.evaluate(() => (window as any).mcuTest.videoStats());
      const t0 = Date.now();
      const put = await authFetch(`${server.url}/v1/rooms/${room}/participants/${viewer.id}/layout`, {
        method: 'PUT',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ layout }),
      });
      expect(put.status).toBe(200);
      const seen = await seesColours(layout);
      expect(seen.v.tiles.map((t) => t.name).sort()).toEqual(['Blue', 'Red']);
      await sleep(1500);
      const stats1 = await viewer.page.evaluate(() => (window as any).mcuTest.videoStats());
      const info = await (await authFetch(`${server.url}/v1/rooms/${room}/participants/${viewer.id}`)).json();
      const elapsed = (Date.now() - t0) / 1000;
      console.log(`${layout}: server switched in ${info.stats.lastSwitchMs} ms; freezeCount ${stats0.freezeCount} -> ${stats1.freezeCount}; ${stats1.framesDecoded - stats0.framesDecoded} frames in ${elapsed.toFixed(1)} s`);
      expect(stats1.freezeCount).toBe(stats0.freezeCount);
      expect(stats1.framesDecoded - stats0.framesDecoded).toBeGreaterThan(20 * elapsed);
    }
    // The other viewer chose nothing: its composition is exactly what it was.
    expect(await view(other.id)).toEqual(otherBefore);
  });
});
