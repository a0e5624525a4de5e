import dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { ImpairedLink } from '../helpers/impairedLink.js';

// The test relay that stands in for netem: checked on its own before tests lean on it.

/** A deterministic random source (mulberry32). */
const seeded = (seed: number) => () => {
  seed |= 0;
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};

const open: Array<{ close(): void }> = [];
afterEach(() => {
  for (const s of open.splice(0)) s.close();
});

/** A "server" that echoes every datagram, and a "peer" talking to it through a link. */
async function setup() {
  const server = dgram.createSocket('udp4');
  open.push(server);
  await new Promise<void>((r) => server.bind(0, '127.0.0.1', () => r()));
  server.on('message', (m, from) => server.send(m, from.port, from.address));
  const port = server.address().port;
  const link = ImpairedLink.create({ random: seeded(7) });
  open.push(link);
  const answer = await link.rewriteAnswer(`v=0\r\nc=IN IP4 127.0.0.1\r\na=candidate:1 1 udp 2130706431 127.0.0.1 ${port} typ host\r\n`);
  const front = link.frontPort(port)!;
  const peer = dgram.createSocket('udp4');
  open.push(peer);
  await new Promise<void>((r) => peer.bind(0, '127.0.0.1', () => r()));
  const got: Array<{ at: number; size: number; sent: number }> = [];
  peer.on('message', (m) => got.push({ at: performance.now(), size: m.length, sent: m.readDoubleBE(0) }));
  const send = (size: number) => {
    const b = Buffer.alloc(size);
    b.writeDoubleBE(performance.now(), 0);
    peer.send(b, front, '127.0.0.9');
  };
  return { link, answer, port, front, got, send };
}

const until = async (ok: () => boolean, ms: number) => {
  const deadline = Date.now() + ms;
  while (!ok() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
};

describe('ImpairedLink', () => {
  it('moves the server candidates of an answer to the link', async () => {
    const { answer, front } = await setup();
    expect(answer).toContain(`a=candidate:1 1 udp 2130706431 127.0.0.9 ${front} typ host`);
    expect(answer).toContain('c=IN IP4 127.0.0.9');
  });

  it('adds its delay each way', async () => {
    const { link, got, send } = await setup();
    link.set('up', { delayMs: 40 });
    link.set('down', { delayMs: 40 });
    for (let i = 0; i < 5; i++) send(100);
    await until(() => got.length === 5, 2000);
    const rtts = got.map((g) => g.at - g.sent);
    expect(Math.min(...rtts)).toBeGreaterThanOrEqual(79);
    expect(Math.max(...rtts)).toBeLessThan(400);
  });

  it('drops at random at the rate asked', async () => {
    const { link, got, send } = await setup();
    link.set('down', { lossPct: 10 });
    // In batches, each sent once the link has taken the one before, so that no socket buffer
    // overflows however slowly the machine runs (a fixed 5 ms pause lost 52 of 2000 in CI):
    // every loss is the link's.
    for (let i = 0; i < 2000; i++) {
      send(50);
      if (i % 50 === 49) await until(() => link.down.stats.packets === i + 1, 3000);
    }
    await until(() => got.length === 2000 - link.down.stats.lost, 1000);
    expect(link.down.stats.packets).toBe(2000);
    expect(link.down.stats.lost).toBeGreaterThan(140);
    expect(link.down.stats.lost).toBeLessThan(260);
    expect(got.length).toBe(2000 - link.down.stats.lost);
  });

  it('throttles like a bottleneck: what gets through is the rate, the rest waits up to queueMs and is then dropped', async () => {
    const { link, got, send } = await setup();
    link.set('down', { rateKbps: 300, queueMs: 100 });
    // 1 Mbit/s offered for 1.5 s: 1200-byte packets every 9.6 ms.
    const t0 = performance.now();
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        send(1200);
        if (performance.now() - t0 > 1500) {
          clearInterval(timer);
          resolve();
        }
      }, 9.6);
    });
    await new Promise((r) => setTimeout(r, 300));
    const span = (got.at(-1)!.at - got[0].at) / 1000;
    const kbps = (got.reduce((n, g) => n + g.size, 0) * 8) / 1000 / span;
    expect(kbps).toBeGreaterThan(240);
    expect(kbps).toBeLessThan(340);
    expect(link.down.stats.dropped).toBeGreaterThan(50);
    // Nothing waited much longer than the queue allows (plus timer slack on this shared machine).
    expect(Math.max(...got.map((g) => g.at - g.sent))).toBeLessThan(100 + 150);
  });
});
