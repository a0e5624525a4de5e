import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RtpPacket } from 'werift';
import { LocalUdp } from '../../src/media/localUdp.js';
import { colourSender, sleep } from '../helpers/media.js';
import { apiCall, authFetch, startServerProcess, type ServerProcess } from '../helpers/server.js';
import { joinWerift, type WeriftPeer } from '../helpers/weriftPeer.js';

let server: ServerProcess;
const cleanup: Array<() => unknown> = [];
beforeAll(async () => {
  server = await startServerProcess();
});
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
  expect(await server.stop()).toBe(0);
});

const api = (method: string, path: string, body?: unknown) => apiCall(server.url, method, path, body);

async function publisher(room: string, name: string, rgb: [number, number, number]): Promise<WeriftPeer> {
  const p = await joinWerift(server.url, room, name, { video: 'sendonly' });
  const udp = await LocalUdp.open((b) => p.send.video!.writeRtp(RtpPacket.deSerialize(b)));
  const sender = colourSender(rgb, udp.port);
  cleanup.push(() => p.close(), () => sender.close(), () => udp.close());
  return p;
}

async function viewer(room: string, name: string): Promise<WeriftPeer> {
  const v = await joinWerift(server.url, room, name, { video: 'recvonly' });
  cleanup.push(() => v.close());
  return v;
}

const view = async (room: string, id: string) => (await api('GET', `/v1/rooms/${room}/participants/${id}/view`)).body;

async function until<T>(fn: () => Promise<T>, ok: (v: T) => boolean, what: string, ms = 8000): Promise<T> {
  const end = Date.now() + ms;
  let v = await fn();
  while (!ok(v) && Date.now() < end) {
    await sleep(150);
    v = await fn();
  }
  if (!ok(v)) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(v)}`);
  return v;
}

describe('layouts over REST', () => {
  it('lists the shipped layouts, and serves an OpenAPI document that describes every route', async () => {
    const { body } = await api('GET', '/v1/layouts');
    expect(body.layouts.map((l: { id: string }) => l.id)).toEqual(expect.arrayContaining(['grid', 'speaker', 'pip', 'side-by-side', 'presentation']));
    expect((await api('GET', '/v1/layouts/speaker')).body).toMatchObject({ id: 'speaker', builtin: true });
    const doc = (await api('GET', '/v1/openapi.json')).body;
    expect(doc.openapi).toBe('3.1.0');
    for (const p of ['/v1/rooms/{room}/participants', '/v1/rooms/{room}/participants/{id}/view', '/v1/layouts/{layout}', '/v1/rooms/{room}/layout', '/v1/rooms/{room}/participants/{id}/layout', '/v1/rooms/{room}/pin']) {
      expect(Object.keys(doc.paths)).toContain(p);
    }
  });

  it('creates, replaces and deletes a custom layout; built-ins are read-only', async () => {
    const custom = { name: 'Two rows', regions: [{ x: 0, y: 0, width: 1, height: 0.5 }, { x: 0, y: 0.5, width: 1, height: 0.5 }] };
    expect((await api('PUT', '/v1/layouts/two-rows', custom)).status).toBe(201);
    expect((await api('PUT', '/v1/layouts/two-rows', { ...custom, name: 'Two rows!' })).status).toBe(200);
    expect((await api('GET', '/v1/layouts/two-rows')).body).toMatchObject({ id: 'two-rows', name: 'Two rows!', builtin: false });
    expect((await api('PUT', '/v1/layouts/grid', custom)).status).toBe(409);
    expect((await api('DELETE', '/v1/layouts/grid')).status).toBe(409);
    expect((await api('DELETE', '/v1/layouts/two-rows')).status).toBe(204);
    expect((await api('GET', '/v1/layouts/two-rows')).status).toBe(404);
  });

  it.each([
    [{ name: 'x', regions: [{ x: 0.5, y: 0, width: 0.8, height: 1 }] }, /regions\[0\]\.width/],
    [{ name: 'x', regions: [{ x: -1, y: 0, width: 1, height: 1 }] }, /regions\[0\]\.x/],
    [{ name: 'x', regions: [] }, /regions/],
    [{ name: 'x', regions: [{ x: 0, y: 0, width: 1, height: 1, fill: ['loudest'] }] }, /regions\[0\]\.fill/],
    [{ name: 'x', regions: [{ x: 0, y: 0, width: 1, height: 1 }], spin: true }, /"spin"/],
    [{ regions: [{ x: 0, y: 0, width: 1, height: 1 }] }, /"name"/],
  ])('refuses an invalid layout with a 400 naming the field (%j)', async (layout, field) => {
    const r = await api('PUT', '/v1/layouts/bad', layout);
    expect(r.status).toBe(400);
    expect(r.body.error.message).toMatch(field);
  });

  it('refuses a body that is not JSON, and unknown layouts, rooms and participants', async () => {
    expect((await api('PUT', '/v1/layouts/bad', '{nope')).status).toBe(400);
    expect((await api('PUT', '/v1/rooms/nope/layout', { layout: 'grid' })).status).toBe(404);
  });
});

describe('choosing layouts per room and per viewer', () => {
  const room = 'lay';
  let a: WeriftPeer, b: WeriftPeer, v1: WeriftPeer, v2: WeriftPeer;

  beforeAll(async () => {
    a = await publisher(room, 'A', [220, 30, 30]);
    b = await publisher(room, 'B', [30, 30, 220]);
    v1 = await viewer(room, 'V1');
    v2 = await viewer(room, 'V2');
    await until(() => view(room, v1.id), (v) => v.tiles.every((t: { source: string }) => t.source === 'video') && v.tiles.length === 2, 'both publishers live');
  });

  it('viewers with identical compositions share one encoder', async () => {
    const r = await until(() => api('GET', `/v1/rooms/${room}`), (r) => r.body.encoders === 1, 'one shared encoder');
    expect(r.body.encoders).toBe(1);
  });

  it('GET /metrics reports rooms, participants, pipelines, encoders, per-viewer fps and bitrate, keyframe requests, loop lag per thread and CPU', async () => {
    await authFetch(`${server.url}/metrics`); // the bitrate gauge measures between two scrapes
    await sleep(1000);
    const res = await authFetch(`${server.url}/metrics`);
    expect(res.headers.get('content-type')).toMatch(/text\/plain/);
    const text = await res.text();
    const value = (re: RegExp) => Number(re.exec(text)?.[1] ?? NaN);
    expect(value(/^mcu_participants\{role="viewer"\} (\d+)/m)).toBeGreaterThanOrEqual(2);
    expect(value(/^mcu_participants\{role="publisher"\} (\d+)/m)).toBeGreaterThanOrEqual(2);
    expect(value(/^mcu_encoders\{room="lay"\} (\d+)/m)).toBe(1);
    expect(value(/^mcu_pipelines (\d+)/m)).toBeGreaterThanOrEqual(3);
    expect(value(new RegExp(`^mcu_output_fps\\{room="lay",participant="${v1.id}"\\} ([\\d.]+)`, 'm'))).toBeGreaterThan(20);
    expect(value(new RegExp(`^mcu_output_bitrate_bps\\{room="lay",participant="${v1.id}"\\} ([\\d.e+]+)`, 'm'))).toBeGreaterThan(50_000);
    expect(text).toMatch(/^mcu_keyframe_requests\{direction="to_encoders"\} \d+/m);
    expect(text).toMatch(/^nodejs_eventloop_lag_seconds /m);
    // Each media thread's own stall figure, and how many peers each RTC worker carries.
    expect(text).toMatch(/^mcu_media_thread_max_stall_ms\{thread="rtc-0"\} \d+/m);
    expect(text).toMatch(/^mcu_media_thread_max_stall_ms\{thread="mixer-0"\} \d+/m);
    const peers = [...text.matchAll(/^mcu_media_thread_peers\{thread="rtc-\d+"\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
    expect(peers).toBeGreaterThanOrEqual(4);
    expect(text).toMatch(/^process_cpu_seconds_total /m);
  });

  it('a viewer override changes that viewer only; DELETE returns it to the room default', async () => {
    expect((await api('PUT', `/v1/rooms/${room}/participants/${v1.id}/layout`, { layout: 'side-by-side' })).status).toBe(200);
    const changed = await until(() => view(room, v1.id), (v) => v.layout === 'side-by-side', 'V1 on side-by-side', 3000);
    expect(changed.tiles.map((t: { name: string }) => t.name)).toEqual(['A', 'B']);
    expect((await view(room, v2.id)).layout).toBe('grid');
    expect((await api('GET', `/v1/rooms/${room}`)).body.encoders).toBe(2);
    expect((await api('DELETE', `/v1/rooms/${room}/participants/${v1.id}/layout`)).status).toBe(204);
    await until(() => view(room, v1.id), (v) => v.layout === 'grid', 'V1 back on grid', 3000);
    await until(() => api('GET', `/v1/rooms/${room}`), (r) => r.body.encoders === 1, 'back to one encoder', 3000);
  });

  it('a room default and a room pin apply to every viewer without an override', async () => {
    expect((await api('PUT', `/v1/rooms/${room}/layout`, { layout: 'speaker' })).status).toBe(200);
    expect((await api('PUT', `/v1/rooms/${room}/pin`, { participantId: b.id })).body.pin).toBe(b.id);
    for (const v of [v1, v2]) {
      const got = await until(() => view(room, v.id), (x) => x.layout === 'speaker', 'speaker layout', 3000);
      const main = got.tiles.reduce((m: { height: number }, t: { height: number }) => (t.height > m.height ? t : m));
      expect(main.participantId).toBe(b.id);
    }
    expect((await api('PUT', `/v1/rooms/${room}/participants/${v2.id}/pin`, { participantId: a.id })).status).toBe(200);
    const v2view = await until(() => view(room, v2.id), (x) => x.tiles.some((t: { participantId: string; height: number }) => t.participantId === a.id && t.height > 200), 'V2 pins A', 3000);
    expect(v2view.layout).toBe('speaker');
    expect((await api('DELETE', `/v1/rooms/${room}/pin`)).status).toBe(204);
    expect((await api('PUT', `/v1/rooms/${room}/layout`, { layout: 'grid' })).status).toBe(200);
  });

  it('refuses bad layout bodies with 400 and unknown ids with 404', async () => {
    const r1 = await api('PUT', `/v1/rooms/${room}/layout`, { layout: 7 });
    expect(r1.status).toBe(400);
    expect(r1.body.error.message).toMatch(/"layout"/);
    expect((await api('PUT', `/v1/rooms/${room}/layout`, {})).status).toBe(400);
    expect((await api('PUT', `/v1/rooms/${room}/layout`, { layout: 'nope' })).status).toBe(404);
    expect((await api('PUT', `/v1/rooms/${room}/participants/${v1.id}/layout`, { pin: 'nobody' })).status).toBe(404);
    expect((await api('PUT', `/v1/rooms/${room}/participants/${a.id}/layout`, { layout: 'grid' })).status).toBe(409);
  });

  it('self-view is off by default and can be turned on per viewer', async () => {
    // Publishers do not receive video; self-view is for participants who both send and receive.
    const both = await joinWerift(server.url, room, 'Both', { video: 'sendrecv' });
    cleanup.push(() => both.close());
    const mine = () => view(room, both.id);
    expect((await mine()).tiles.map((t: { participantId: string }) => t.participantId)).not.toContain(both.id);
    await api('PUT', `/v1/rooms/${room}/participants/${both.id}/layout`, { selfView: true });
    await until(mine, (v) => v.tiles.some((t: { participantId: string }) => t.participantId === both.id), 'self-view tile', 3000);
  });
});

describe('active speaker', () => {
  it('is decided from audio levels, shown in GET /v1/rooms/{room}, and drives the speaker layout', async () => {
    const { toneSender } = await import('../helpers/media.js');
    const room = 'talk';
    const quiet = await joinWerift(server.url, room, 'Quiet', { audio: 'sendonly', video: 'sendonly' });
    const loud = await joinWerift(server.url, room, 'Loud', { audio: 'sendonly', video: 'sendonly' });
    const watcher = await joinWerift(server.url, room, 'Watcher', { audio: 'recvonly', video: 'recvonly' });
    cleanup.push(() => quiet.close(), () => loud.close(), () => watcher.close());
    const udp = await LocalUdp.open((b) => loud.send.audio!.writeRtp(RtpPacket.deSerialize(b)));
    const tone = toneSender(440, udp.port);
    cleanup.push(() => tone.close(), () => udp.close());
    await api('PUT', `/v1/rooms/${room}/participants/${watcher.id}/layout`, { layout: 'speaker' });
    const r = await until(() => api('GET', `/v1/rooms/${room}`), (x) => x.body.activeSpeaker === loud.id, 'Loud to be the active speaker');
    expect(r.body.activeSpeaker).toBe(loud.id);
    const v = await until(() => view(room, watcher.id), (x) => x.tiles.some((t: { participantId: string; height: number }) => t.participantId === loud.id && t.height > 200), 'Loud large');
    expect(v.tiles.find((t: { participantId: string }) => t.participantId === quiet.id).height).toBeLessThan(100);
  });
});
