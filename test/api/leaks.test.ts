import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MediaStreamTrack, RtpPacket } from 'werift';
import type { GstPipeline } from '../../src/gst/native.js';
import { LocalUdp } from '../../src/media/localUdp.js';
import { colourSender, toneSender } from '../helpers/media.js';
import { apiCall, authFetch, startServerProcess, type ServerProcess } from '../helpers/server.js';
import { joinWerift, makeOffer } from '../helpers/weriftPeer.js';

/**
 * Everything a person takes when they join (a werift session and its sockets in an RTC worker,
 * their pipelines, the composites of everyone who sees them, the mixer's sockets) comes back when
 * they leave and their room closes: descriptors, threads, GStreamer pipelines, UDP ports and
 * memory, after 200 people who connected and sent media and 60 who never connected.
 */

const CYCLES = Number(process.env.LEAK_CYCLES ?? 200); // fewer only when investigating
const LANES = 4; // people joining and leaving at once, two to a room
const NEVER_CONNECT = 60;
/**
 * People who come and go before the start is read. What the first joins fill for good is part of
 * the start: thread pools, GStreamer's plugins, V8's compiled code, and glibc's arenas (one per
 * thread allocating at once, up to 8 per core), whose long-lived small blocks spread over more
 * pages as more threads have used them. Most of that fills within the first 40 people: measured in
 * one run (LEAK_WARM_UP=3 LEAK_CHECKPOINTS=40,120, RSS once idle after a full GC and trim in every
 * thread), 156 MB after 3, 192 after 40, 196 after 120, 203 after 200. It does not stop there,
 * though: another run, warmed up with 40, went 177 -> 207 MB over the 200 (malloc had 29 MB in use
 * after 100 and 33 MB after 200, by malloc_info; the rest is arena pages that a few live blocks
 * keep). Most of that was GLib's GSlice slabs spread over the arenas: with G_SLICE=always-malloc
 * (bin/mcu) two runs went 172 -> 190 and 171 -> 188 MB. Leaks that grew with people, before
 * patches/gstreamer-superficial+1.7.4.patch fixed them: each element handle's V8 templates (the
 * GStreamer worker's heap 7 -> 28 MB over 200) and the arenas' tops malloc_trim left (267 MB).
 */
const WARM_UP = Number(process.env.LEAK_WARM_UP ?? 40);
const CHECKPOINTS = (process.env.LEAK_CHECKPOINTS ?? '').split(',').filter(Boolean).map(Number);

let server: ServerProcess;
const feed = { video: new Set<MediaStreamTrack>(), audio: new Set<MediaStreamTrack>() };
const cleanup: Array<() => unknown> = [];
const withoutPicture: string[] = [];

interface Resources {
  fds: number;
  fdKinds: Record<string, number>;
  threads: number;
  udp: number;
  rssMb: number;
  pipelines: number;
  rooms: number;
}

beforeAll(async () => {
  server = await startServerProcess({ MCU_TEST_HOOKS: '1', MCU_MAX_PARTICIPANTS: '100', ...(process.env.LEAK_ENV ? JSON.parse(process.env.LEAK_ENV) : {}) });
  // One VP8 and one Opus encoder in this process feed every peer's outgoing tracks, as the bench's
  // generator does: each peer sends real media without an encoder of its own.
  for (const kind of ['video', 'audio'] as const) {
    const udp = await LocalUdp.open((b) => {
      for (const track of feed[kind]) track.writeRtp(RtpPacket.deSerialize(b));
    });
    const p: GstPipeline = kind === 'video' ? colourSender([200, 60, 40], udp.port) : toneSender(440, udp.port);
    cleanup.push(() => p.close(), () => udp.close());
  }
});
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
  expect(await server?.stop()).toBe(0);
});

const resources = async (): Promise<Resources> => (await apiCall(server.url, 'GET', '/v1/test/resources')).body;
/** A full GC in every thread of the server, then what it holds. */
const collected = async (): Promise<Resources> => (await apiCall(server.url, 'POST', '/v1/test/gc')).body;

async function until<T>(get: () => Promise<T>, ok: (v: T) => boolean, ms: number, what: string): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await get();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}; last: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/** A person joins, connects, sends audio and video until the composite and the mix come back, and leaves. */
async function cycle(room: string, name: string): Promise<void> {
  const peer = await joinWerift(server.url, room, name, { audio: 'sendrecv', video: 'sendrecv' });
  const tracks = [peer.send.video!, peer.send.audio!];
  try {
    if (peer.pc.connectionState !== 'connected') await peer.pc.connectionStateChange.watch((s) => s === 'connected', 15_000);
    feed.video.add(tracks[0]);
    feed.audio.add(tracks[1]);
    // Its mix comes back (its audio went through its pipeline and the mixer), and its picture,
    // a composite, mostly does. A viewer left alone in a room right after the last other person
    // left sometimes gets no picture (seen on the unpatched binding too): that is counted, not
    // failed, since this test is about what is left behind.
    const end = Date.now() + 15_000;
    while (peer.received.audio < 5 || (peer.received.video < 1 && Date.now() < end - 10_000)) {
      if (Date.now() > end) throw new Error(`${name} received ${JSON.stringify(peer.received)} in 15 s`);
      await new Promise((r) => setTimeout(r, 50));
    }
    if (peer.received.video === 0) withoutPicture.push(name);
  } finally {
    feed.video.delete(tracks[0]);
    feed.audio.delete(tracks[1]);
    const del = await apiCall(server.url, 'DELETE', peer.location);
    await peer.close();
    expect(del.status).toBe(204);
  }
}

/** A WHIP client that posts its offer and goes away: it never applies the answer, never connects. */
async function neverConnect(room: string): Promise<void> {
  const o = await makeOffer({ audio: 'sendrecv', video: 'sendrecv' });
  const res = await authFetch(`${server.url}/v1/rooms/${room}/participants?name=Ghost`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/sdp' },
    body: o.sdp,
  });
  await o.pc.close();
  // On a failure, what the server said and logged about it, to tell why.
  const said = res.status === 201 ? '' : `${await res.text()}\n${server.output().split('\n').filter((l) => / (ERROR|WARN) /.test(l)).slice(-10).join('\n')}`;
  expect(res.status, said).toBe(201);
}

/** LEAK_DUMP=dir (investigating): the server's memory by mapping, and heap snapshots of its threads. */
async function dump(snapshots = true): Promise<void> {
  const dir = process.env.LEAK_DUMP;
  if (!dir) return;
  console.log('smaps:', JSON.stringify((await apiCall(server.url, 'GET', '/v1/test/smaps')).body));
  if (!snapshots) return;
  // LEAK_HOLD=s: the server stays up that long afterwards, to look at it from outside (gdb, smaps).
  if (process.env.LEAK_HOLD) {
    console.log(`holding the server (pid ${server.proc.pid}) for ${process.env.LEAK_HOLD} s`);
    await new Promise((r) => setTimeout(r, Number(process.env.LEAK_HOLD) * 1000));
  }
  console.log('snapshots:', JSON.stringify((await apiCall(server.url, 'POST', `/v1/test/heap-snapshots?dir=${encodeURIComponent(dir)}`)).body));
}

/**
 * People `from`..`to` join, send and leave, LANES at a time in two rooms; meanwhile `ghosts` who
 * never connect arrive in twos, in rooms of their own and in the rooms where people come and go.
 */
async function people(prefix: string, from: number, to: number, ghosts: number): Promise<void> {
  let next = from;
  const lanes = Array.from({ length: LANES }, async (_, lane) => {
    while (next < to) {
      const n = next++;
      await cycle(`${prefix}-${lane % 2}`, `${prefix === 'leak' ? 'P' : 'W'}${n}`);
    }
  });
  const never = (async () => {
    for (let i = 0; i < ghosts; i += 2) {
      await Promise.all([neverConnect(`${prefix}-ghosts-${i % 3}`), neverConnect(`${prefix}-${i % 2}`)]);
      await new Promise((r) => setTimeout(r, 500));
    }
  })();
  await Promise.all([...lanes, never]);
}

const noRooms = (r: Resources) => r.rooms === 0 && r.pipelines === 0;

describe('resources', () => {
  it(`come back after ${CYCLES} people joined, sent media and left and ${NEVER_CONNECT} never connected: descriptors, threads, pipelines and UDP ports within 2, RSS within 15 %`, async () => {
    const t0 = performance.now();
    // Warm-up (see WARM_UP): the first person alone, then the others as in the test.
    await cycle('warm', 'W0');
    await people('warm', 1, WARM_UP, 4);
    const start = await until(collected, noRooms, 90_000, 'the warm-up room to close');
    console.log(`start (after the warm-up, ${((performance.now() - t0) / 1000).toFixed(0)} s):`, JSON.stringify(start));
    await dump(false);

    let peak = start;
    const sample = setInterval(() => {
      void resources().then((r) => (r.fds > peak.fds ? (peak = r) : undefined)).catch(() => undefined);
    }, 2000);
    try {
      // LEAK_CHECKPOINTS=40,120 (investigating): what the server holds after that many, once idle.
      let from = 0;
      for (const to of [...CHECKPOINTS.filter((c) => c > 0 && c < CYCLES), CYCLES]) {
        await people('leak', from, to, Math.round((NEVER_CONNECT * (to - from)) / CYCLES / 2) * 2);
        from = to;
        if (to < CYCLES) console.log(`after ${to}:`, JSON.stringify(await until(collected, noRooms, 90_000, 'the rooms to close')));
      }
    } finally {
      clearInterval(sample);
    }
    if (withoutPicture.length) console.log(`no picture within 5 s: ${withoutPicture.join(', ')}`);
    console.log(`${CYCLES} cycles and ${NEVER_CONNECT} that never connected in ${((performance.now() - t0) / 1000).toFixed(0)} s; peak:`, JSON.stringify(peak));

    // Rooms close 30 s after their last person leaves; the ones who never connected are removed
    // once silent for twice the peer timeout.
    const within2 = (a: number, b: number) => Math.abs(a - b) <= 2;
    const end = await until(
      collected,
      (r) => noRooms(r) && within2(r.fds, start.fds) && within2(r.threads, start.threads) && within2(r.udp, start.udp) && r.rssMb <= start.rssMb * 1.15,
      120_000,
      'the resources to come back',
    ).catch(async (err) => {
      const last = await collected();
      console.log('end (not back):', JSON.stringify(last));
      await dump();
      throw err;
    });
    console.log(`end (${((performance.now() - t0) / 1000).toFixed(0)} s):`, JSON.stringify(end));
    await dump();
    expect(end.pipelines).toBe(0);
    expect(Math.abs(end.fds - start.fds)).toBeLessThanOrEqual(2);
    expect(Math.abs(end.threads - start.threads)).toBeLessThanOrEqual(2);
    expect(Math.abs(end.udp - start.udp)).toBeLessThanOrEqual(2);
    expect(end.rssMb).toBeLessThanOrEqual(start.rssMb * 1.15);
  }, 420_000 + Number(process.env.LEAK_HOLD ?? 0) * 1000);
});
