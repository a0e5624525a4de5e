import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchBrowser } from '../helpers/browser.js';
import { apiCall, startServerProcess, type ServerProcess } from '../helpers/server.js';

// What a new user does: start the server with nothing configured, open the join link it prints in
// a browser, type a name and press Join.

let server: ServerProcess;
let browser: Browser;
let key: string;
let link: string;

async function waitFor<T>(fn: () => Promise<T>, ok: (v: T) => boolean, ms: number, what: string): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`timed out: ${what}: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcu-page-'));
  server = await startServerProcess({ MCU_API_KEY: '', MCU_API_SECRET: '', MCU_SECRETS_FILE: path.join(dir, 'secrets.json') });
  const out = await waitFor(async () => server.output(), (o) => /Admin API key \(shown this once[^\n]*\n\s+\S+/.test(o), 5000, 'the printed key');
  key = /Admin API key \(shown this once[^\n]*\n\s+(\S+)/.exec(out)![1];
  link = /(http:\/\/\S+\?room=demo#token=\S+)/.exec(out)![1];
  browser = await launchBrowser();
});
afterAll(async () => {
  await browser?.close();
  expect(await server.stop()).toBe(0);
});

describe('the join page', () => {
  it('joins with the printed link: two people connect, each gets video, the layout list loads, and Leave removes them', async () => {
    const pages = [];
    for (const name of ['Ada', 'Grace']) {
      const page = await browser.newPage();
      page.on('pageerror', (e) => console.error(`[page ${name}]`, e.message));
      await page.goto(link);
      // The token names the room: the page shows it and does not let it be changed.
      expect(await page.inputValue('#room')).toBe('demo');
      expect(await page.getAttribute('#room', 'readonly')).not.toBeNull();
      await page.fill('#name', name);
      await page.click('#go');
      await page.waitForFunction(() => document.getElementById('status')!.textContent === 'Connection: connected', undefined, { timeout: 15_000 });
      pages.push(page);
    }
    const room = await waitFor(
      () => apiCall(server.url, 'GET', '/v1/rooms/demo', undefined, key),
      (r) => r.body?.participants?.length === 2 && r.body.participants.every((p: { videoLive: boolean }) => p.videoLive),
      15_000,
      'both live',
    );
    expect(room.body.participants.map((p: { name: string }) => p.name).sort()).toEqual(['Ada', 'Grace']);
    for (const page of pages) {
      // The composite plays, and the page could read the layouts with its token.
      await page.waitForFunction(() => (document.getElementById('remote') as HTMLVideoElement).videoWidth === 640, undefined, { timeout: 15_000 });
      await page.waitForFunction(() => (document.getElementById('layout') as HTMLSelectElement).options.length >= 5, undefined, { timeout: 5000 });
    }
    // Choosing a layout on the page changes that person's view.
    await pages[0].selectOption('#layout', 'speaker');
    const ada = room.body.participants.find((p: { name: string }) => p.name === 'Ada');
    await waitFor(() => apiCall(server.url, 'GET', `/v1/rooms/demo/participants/${ada.id}/view`, undefined, key), (r) => r.body?.layout === 'speaker', 5000, 'speaker layout');
    for (const page of pages) await page.click('#leave');
    await waitFor(() => apiCall(server.url, 'GET', '/v1/rooms/demo', undefined, key), (r) => r.status === 404 || r.body.participants.length === 0, 10_000, 'both gone');
    for (const page of pages) await page.close();
  });

  it('without a token the page cannot join, and says why', async () => {
    const page = await browser.newPage();
    await page.goto(server.url + '/');
    await page.fill('#token', 'not-a-token');
    await page.fill('#name', 'Eve');
    await page.click('#go');
    await page.waitForFunction(() => /Could not join: missing or invalid credentials/.test(document.getElementById('status')!.textContent ?? ''), undefined, { timeout: 10_000 });
    await page.close();
  });
});
