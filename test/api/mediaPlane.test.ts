import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RtpPacket } from 'werift';
import type { GstPipeline } from '../../src/gst/native.js';
import { LocalUdp } from '../../src/media/localUdp.js';
import { colourSender, sleep, toneSender } from '../helpers/media.js';
import { apiCall, authFetch, startServerProcess, type ServerProcess } from '../helpers/server.js';
import { joinWerift, type WeriftPeer } from '../helpers/weriftPeer.js';

let server: ServerProcess;
const cleanup: Array<() => unknown> = [];
beforeAll(async () => {
  // Shared tile scalers on (MCU_TILE_SCALERS=1), so that their path carries the call here too.
  server = await startServerProcess({ MCU_TEST_HOOKS: '1', MCU_RTC_WORKERS: '2', MCU_TILE_SCALERS: '1' });
});
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
  expect(await server.stop()).toBe(0);
});

/** Feeds GStreamer-made VP8 and Opus RTP into a werift peer's outgoing tracks. */
async function publish(peer: WeriftPeer, rgb: [number, number, number], freq: number) {
  for (const kind of ['video', 'audio'] as const) {
    const track = peer.send[kind]!;
    const udp = await LocalUdp.open((b) => track.writeRtp(RtpPacket.deSerialize(b)));
    const p: GstPipeline = kind === 'video' ? colourSender(rgb, udp.port) : toneSender(freq, udp.port);
    cleanup.push(() => p.close(), () => udp.close());
  }
}

/** When each video frame (marker bit) and each audio packet reached a peer, in performance.now() ms. */
function arrivals(peer: WeriftPeer) {
  const a = { video: [] as number[], audio: [] as number[] };
  peer.onRtp('video', (rtp) => rtp.header.marker && a.video.push(performance.now()));
  peer.onRtp('audio', () => a.audio.push(performance.now()));
  return a;
}

const within = (xs: number[], from: number, to: number) => xs.filter((t) => t >= from && t < to);
const maxGap = (xs: number[]) => xs.slice(1).reduce((m, t, i) => Math.max(m, t - xs[i]), 0);

async function until(cond: () => boolean | Promise<boolean>, ms: number, what: string) {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * A and B publishing in `room`, each on its own RTC worker (the server runs two here,
 * MCU_RTC_WORKERS=2, and places each peer on the less loaded one), and B receiving.
 */
async function twoOnTwoWorkers(room: string) {
  const a = await joinWerift(server.url, room, 'A', { audio: 'sendrecv', video: 'sendrecv' });
  const b = await joinWerift(server.url, room, 'B', { audio: 'sendrecv', video: 'sendrecv' });
  cleanup.push(() => a.close(), () => b.close());
  await publish(a, [200, 40, 40], 500);
  await publish(b, [40, 40, 200], 800);
  const workerOf = async () => {
    const r = (await apiCall(server.url, 'GET', `/v1/rooms/${room}`)).body as { participants: Array<{ id: string; worker: number }> };
    return new Map(r.participants.map((p) => [p.id, p.worker]));
  };
  const before = await workerOf();
  expect(before.get(a.id)).not.toBe(before.get(b.id));
  await until(() => b.received.audio > 50 && b.received.video > 30, 15_000, 'B receiving');
  return { a, b, workerOf, before };
}

describe('the media plane runs off the control thread', () => {
  it('keeps every viewer at 30 fps and every mix without a gap over 60 ms while the control thread is stalled for 1 s', async () => {
    const people: Array<{ peer: WeriftPeer; got: ReturnType<typeof arrivals> }> = [];
    const colours: Array<[number, number, number]> = [[220, 30, 30], [30, 200, 40], [40, 50, 220]];
    for (const [i, rgb] of colours.entries()) {
      const peer = await joinWerift(server.url, 'stall', `P${i}`, { audio: 'sendrecv', video: 'sendrecv' });
      cleanup.push(() => peer.close());
      const got = arrivals(peer);
      await publish(peer, rgb, 400 + 300 * i);
      people.push({ peer, got });
    }
    // Everyone sees the other two (a composite of both live videos) and hears the mix.
    await until(async () => {
      const room = (await apiCall(server.url, 'GET', '/v1/rooms/stall')).body;
      return room.participants.every((p: { videoLive: boolean }) => p.videoLive);
    }, 20_000, 'every video live');
    // Each of the three is scaled once to the one tile size the others' grids use (once the
    // composites with every video live have replaced those with placeholders).
    await until(async () => (await apiCall(server.url, 'GET', '/v1/rooms/stall')).body.scalers === 3, 10_000, 'one scaler per person');
    const now = performance.now();
    await until(() => people.every(({ got }) => within(got.video, now, Infinity).length > 45 && within(got.audio, now, Infinity).length > 75), 20_000, 'steady media');

    const t0 = performance.now();
    const stall = await apiCall(server.url, 'POST', '/v1/test/stall?ms=1000');
    const t1 = performance.now();
    expect(stall.status).toBe(200);
    expect(stall.body.stalledMs).toBeGreaterThanOrEqual(1000);
    expect(t1 - t0).toBeGreaterThanOrEqual(1000);
    // And the control thread noticed its own stall.
    const metrics = await (await authFetch(`${server.url}/metrics`)).text();
    expect(Number(/mcu_event_loop_max_stall_ms (\d+)/.exec(metrics)?.[1])).toBeGreaterThanOrEqual(900);

    await new Promise((r) => setTimeout(r, 300)); // packets of the stall's last instants arrive
    for (const [i, { got }] of people.entries()) {
      const frames = within(got.video, t0, t1);
      const audio = within(got.audio, t0 - 100, t1 + 100);
      const fps = ((frames.length - 1) * 1000) / (frames.at(-1)! - frames[0]);
      console.log(`P${i} during the stall: ${frames.length} frames in ${(t1 - t0).toFixed(0)} ms (${fps.toFixed(1)} fps), largest frame gap ${maxGap(frames).toFixed(0)} ms, largest audio gap ${maxGap(audio).toFixed(0)} ms`);
      expect(fps, `P${i} fps`).toBeGreaterThanOrEqual(27);
      expect(maxGap(frames), `P${i} frame gap`).toBeLessThan(150);
      expect(maxGap(audio), `P${i} audio gap`).toBeLessThanOrEqual(60);
    }
  });
});

describe('a control thread stalled past the peer timeout', () => {
  it('removes no one: silence is judged on what the RTC workers heard, not on how late the control thread reads it', async () => {
    // The three of the test above are still in the call. The control thread stalls for 6 s, longer
    // than MCU_PEER_TIMEOUT_MS (5 s): the peers kept sending all along, and their workers heard them.
    // (Before, the control thread added the time since a worker's last report to the silence that
    // report gave, and removed everyone as soon as it woke from a stall that long.)
    const ids = async () => ((await apiCall(server.url, 'GET', '/v1/rooms/stall')).body.participants as Array<{ id: string }>).map((p) => p.id).sort();
    const before = await ids();
    expect(before).toHaveLength(3);
    const stall = await apiCall(server.url, 'POST', '/v1/test/stall?ms=6000');
    expect(stall.body.stalledMs).toBeGreaterThanOrEqual(6000);
    // Several rounds of the room's upkeep (every 250 ms) and of the workers' reports.
    await sleep(2000);
    expect(await ids()).toEqual(before);
    expect(server.output()).not.toMatch(/went silent/);
  });
});

describe('an RTC worker that dies', () => {
  it('takes only its own peers with it: they leave, the others keep their media, and a fresh worker takes new joins', async () => {
    const room = 'crash';
    const { a, b, workerOf, before } = await twoOnTwoWorkers(room);

    const crash = await apiCall(server.url, 'POST', `/v1/test/crash-rtc-worker/${before.get(a.id)}`);
    expect(crash.status).toBe(202);
    await until(async () => !(await workerOf()).has(a.id), 10_000, 'A gone with its worker');
    expect((await workerOf()).has(b.id)).toBe(true);
    const got = arrivals(b);
    const t = performance.now();
    await until(() => within(got.audio, t, Infinity).length > 50, 10_000, 'B still hearing the mix');

    // A fresh worker has taken the slot. A listener who says nothing joins it (the less loaded) and
    // hears the room's shared mix there, which was started before that worker was.
    // Until the fresh worker is up, joins go to B's: try again until one lands there.
    let d = await joinWerift(server.url, room, 'D', { audio: 'recvonly' });
    for (let i = 0; i < 40 && (await workerOf()).get(d.id) === before.get(b.id); i++) {
      await d.leave();
      await d.close();
      await sleep(250);
      d = await joinWerift(server.url, room, 'D', { audio: 'recvonly' });
    }
    const listener = d;
    cleanup.push(() => listener.close());
    expect((await workerOf()).get(d.id)).not.toBe(before.get(b.id));
    await until(() => listener.received.audio > 50, 10_000, 'D hearing the shared mix on the fresh worker');
    // And a new person joins and receives.
    const c = await joinWerift(server.url, room, 'C', { audio: 'sendrecv', video: 'sendrecv' });
    cleanup.push(() => c.close());
    await publish(c, [40, 200, 40], 1100);
    await until(() => c.received.audio > 50 && c.received.video > 30, 15_000, 'C receiving after the restart');
    expect(server.output()).toMatch(/RTC worker \d died/);
  });
});

describe('an error nobody catches in an RTC worker', () => {
  it('is logged, counted and survived: its peers stay and keep their media', async () => {
    const room = 'stray';
    const { a, b, workerOf, before } = await twoOnTwoWorkers(room);
    const index = before.get(a.id)!;
    const deaths = () => server.output().match(/RTC worker \d died/g)?.length ?? 0;
    const deathsBefore = deaths();
    // A throw in a timer and a promise rejected that nobody awaits, as werift's own code could
    // make for one peer: by Node's default either ends the thread and every peer on it.
    expect((await apiCall(server.url, 'POST', `/v1/test/stray-rtc-worker/${index}`)).status).toBe(202);
    const strays = async () => Number(new RegExp(`mcu_media_thread_stray_errors\\{thread="rtc-${index}"\\} (\\d+)`).exec(await (await authFetch(`${server.url}/metrics`)).text())?.[1] ?? 0);
    await until(async () => (await strays()) === 2, 5000, 'both stray errors counted');
    // The first is logged with its stack; the next, a moment later, only counted (one line every 10 s).
    expect(server.output()).toMatch(/stray error \((uncaught exception|unhandled rejection)\), survived: Error: a stray (exception|rejection) \(test\)\n\s+at /);
    expect(deaths()).toBe(deathsBefore);
    // A is still in the call on the same thread, and both still get media.
    const got = { a: arrivals(a), b: arrivals(b) };
    const t = performance.now();
    await until(() => [got.a, got.b].every((g) => within(g.audio, t, Infinity).length > 50 && within(g.video, t, Infinity).length > 30), 10_000, 'A and B still receiving');
    expect((await workerOf()).get(a.id)).toBe(index);
    expect((await workerOf()).get(b.id)).toBe(before.get(b.id));
  });
});

describe('an RTC worker that hangs', () => {
  it('is ended by the watchdog: its peers leave, the others keep their media, and a fresh worker takes its slot', async () => {
    const room = 'hang';
    const { a, b, workerOf, before } = await twoOnTwoWorkers(room);

    // A's worker loops for ever. Its peers get no media and its reports stop; since a peer's silence
    // is what its worker reports, nothing but the watchdog (10 rounds of 1 s) can end this.
    const t0 = performance.now();
    expect((await apiCall(server.url, 'POST', `/v1/test/hang-rtc-worker/${before.get(a.id)}`)).status).toBe(202);
    await until(async () => !(await workerOf()).has(a.id), 25_000, 'A gone with its hung worker');
    const tookMs = performance.now() - t0;
    console.log(`hung RTC worker ended and its peer removed after ${(tookMs / 1000).toFixed(1)} s`);
    expect(tookMs).toBeGreaterThanOrEqual(9000);
    expect(server.output()).toMatch(/rtc-\d sent nothing for 10 s: hung/);
    expect((await workerOf()).has(b.id)).toBe(true);
    const got = arrivals(b);
    const t = performance.now();
    await until(() => within(got.audio, t, Infinity).length > 50, 10_000, 'B still hearing the mix');
    // The slot's fresh worker takes new joins, and they get media.
    const c = await joinWerift(server.url, room, 'C', { audio: 'sendrecv', video: 'sendrecv' });
    cleanup.push(() => c.close());
    await publish(c, [40, 200, 40], 1100);
    await until(() => c.received.audio > 50 && c.received.video > 30, 15_000, 'C receiving after the restart');
  });
});
