import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RtpPacket } from 'werift';
import type { GstPipeline } from '../../src/gst/native.js';
import { LocalUdp } from '../../src/media/localUdp.js';
import { colourSender, latestFrame, near, sleep, toneSender } from '../helpers/media.js';
import { authFetch, joinToken, startServerProcess, type ServerProcess } from '../helpers/server.js';
import { grabVideo, joinWerift, makeOffer, type WeriftPeer } from '../helpers/weriftPeer.js';

let server: ServerProcess;
const cleanup: Array<() => unknown> = [];
beforeAll(async () => {
  server = await startServerProcess();
});
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
  expect(await server.stop()).toBe(0);
});

const post = async (room: string, body: string, type = 'application/sdp', name = 'T') =>
  authFetch(`${server.url}/v1/rooms/${room}/participants?name=${encodeURIComponent(name)}`, { method: 'POST', headers: { 'Content-Type': type }, body }, await joinToken(room));

async function expectError(res: Response, status: number, message: RegExp) {
  expect(res.status).toBe(status);
  const body = (await res.json()) as { error: { code: string; message: string } };
  expect(body.error.code).toEqual(expect.any(String));
  expect(body.error.message).toMatch(message);
}

/** Feeds GStreamer-made VP8 and Opus RTP into a werift peer's outgoing tracks. */
async function publish(peer: WeriftPeer, rgb: [number, number, number], freq: number) {
  for (const kind of ['video', 'audio'] as const) {
    const track = peer.send[kind];
    if (!track) continue;
    const udp = await LocalUdp.open((b) => track.writeRtp(RtpPacket.deSerialize(b)));
    const p: GstPipeline = kind === 'video' ? colourSender(rgb, udp.port) : toneSender(freq, udp.port);
    cleanup.push(() => p.close(), () => udp.close());
  }
}

describe('WHIP join', () => {
  it('answers 201 with a non-trickle SDP answer and a Location, and DELETE leaves', async () => {
    const o = await makeOffer({ audio: 'sendrecv', video: 'sendrecv' });
    const res = await post('api-basic', o.sdp, 'application/sdp', 'Basic');
    expect(res.status).toBe(201);
    expect(res.headers.get('content-type')).toMatch(/^application\/sdp/);
    const location = res.headers.get('location')!;
    expect(location).toMatch(/^\/v1\/rooms\/api-basic\/participants\/[0-9a-f-]{36}$/);
    const answer = await res.text();
    expect(answer).toMatch(/^v=0/);
    // Non-trickle: the candidates are in the answer.
    expect(answer).toMatch(/a=candidate:.* 127\.0\.0\.1 \d+ typ host/);
    await o.pc.close();
    const room = await (await authFetch(`${server.url}/v1/rooms/api-basic`)).json();
    expect(room.participants.map((p: { name: string }) => p.name)).toEqual(['Basic']);
    const rooms = await (await authFetch(`${server.url}/v1/rooms`)).json();
    expect(rooms.rooms.map((r: { id: string }) => r.id)).toContain('api-basic');
    expect((await authFetch(server.url + location, { method: 'DELETE' })).status).toBe(204);
    expect((await authFetch(server.url + location, { method: 'DELETE' })).status).toBe(404);
  });
});

describe('keep-alive', () => {
  it('keeps an idle connection past 5 s, so a client reusing it is not cut off', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const get = () =>
      new Promise<{ port: number; keepAlive: string | undefined }>((resolve, reject) => {
        http
          .get(`${server.url}/healthz`, { agent }, (res) => {
            const port = res.socket.localPort!;
            res.resume();
            res.on('end', () => resolve({ port, keepAlive: res.headers['keep-alive'] }));
          })
          .on('error', reject);
      });
    try {
      const first = await get();
      expect(first.keepAlive).toBe('timeout=65');
      // Node's default (5 s) closed the connection here, and a request sent as it closed failed.
      await sleep(6000);
      const second = await get();
      expect(second.port).toBe(first.port);
    } finally {
      agent.destroy();
    }
  }, 20_000);
});

describe('bad input gets a clear 4xx and disturbs nobody', () => {
  let viewer: WeriftPeer;
  let frames: string;

  beforeAll(async () => {
    const publisher = await joinWerift(server.url, 'api-bad', 'Pub', { audio: 'sendonly', video: 'sendonly' });
    viewer = await joinWerift(server.url, 'api-bad', 'Watcher', { audio: 'recvonly', video: 'recvonly' });
    cleanup.push(() => publisher.close(), () => viewer.close());
    await publish(publisher, [200, 40, 200], 500);
    frames = grabVideo(viewer, cleanup);
  });

  it.each([
    ['an empty body', '', 'application/sdp', 400, /empty/],
    ['garbage', 'hello, I am not an SDP', 'application/sdp', 400, /not an SDP offer/],
    ['a JSON body', '{"sdp": "v=0"}', 'application/json', 415, /application\/sdp/],
  ])('%s', async (_what, body, type, status, msg) => {
    await expectError(await post('api-bad', body as string, type as string), status as number, msg as RegExp);
  });

  it('an offer without ICE credentials', async () => {
    const o = await makeOffer({ audio: 'sendrecv' });
    await o.pc.close();
    await expectError(await post('api-bad', o.sdp.replace(/a=ice-(ufrag|pwd):.*\r\n/g, '')), 400, /ICE credentials/);
  });

  it('an offer with no codec in common (VP9 only)', async () => {
    const o = await makeOffer({ video: 'sendrecv' });
    await o.pc.close();
    await expectError(await post('api-bad', o.sdp.replace(/VP8\/90000/g, 'VP9/90000')), 415, /no common codec/);
  });

  it('an over-long name, a bad room id, an over-long body', async () => {
    const o = await makeOffer({ audio: 'sendrecv' });
    await o.pc.close();
    await expectError(await post('api-bad', o.sdp, 'application/sdp', 'x'.repeat(65)), 400, /at most 64/);
    await expectError(await post('bad room!', o.sdp), 400, /room ids/);
    await expectError(await post('api-bad', o.sdp + 'a=x:' + 'y'.repeat(70_000)), 413, /too large/);
  });

  it('unknown rooms and participants are 404, trickle PATCH is 405', async () => {
    await expectError(await authFetch(`${server.url}/v1/rooms/nope`), 404, /no room/);
    await expectError(await authFetch(`${server.url}/v1/rooms/api-bad/participants/123`), 404, /no participant/);
    await expectError(await authFetch(`${server.url}/v1/rooms/api-bad/participants/123/view`), 404, /no participant/);
    await expectError(await authFetch(`${server.url}/v1/rooms/api-bad/participants/123`, { method: 'DELETE' }), 404, /no participant/);
    await expectError(await authFetch(`${server.url}/v1/nothing-here`), 404, /no such API route/);
    expect((await authFetch(`${server.url}/v1/rooms/api-bad/participants/${viewer.id}`, { method: 'PATCH' })).status).toBe(405);
  });

  it('after all that, the viewer still sees the publisher in its tile and hears it', async () => {
    const room = await (await authFetch(`${server.url}/v1/rooms/api-bad`)).json();
    expect(room.participants.map((p: { name: string; role: string }) => [p.name, p.role])).toEqual([
      ['Pub', 'publisher'],
      ['Watcher', 'viewer'],
    ]);
    let view: { tiles: Array<{ x: number; y: number; width: number; height: number; source: string; name: string }> } = { tiles: [] };
    for (let i = 0; i < 50 && view.tiles[0]?.source !== 'video'; i++) {
      await sleep(200);
      view = await (await authFetch(`${server.url}/v1/rooms/api-bad/participants/${viewer.id}/view`)).json();
    }
    // A viewer that sends nothing is not a tile: the publisher is the only one.
    expect(view.tiles.map((t) => [t.name, t.source])).toEqual([['Pub', 'video']]);
    await sleep(1500);
    const f = await latestFrame(frames);
    const t = view.tiles[0];
    const centre = f.px(t.x + t.width / 2, t.y + t.height / 2);
    expect(near(centre, [200, 40, 200], 45), `centre ${centre}`).toBe(true);
    expect(viewer.received.audio).toBeGreaterThan(50);
    // A publisher receives no video, so it has no view.
    const pub = room.participants[0].id;
    expect((await authFetch(`${server.url}/v1/rooms/api-bad/participants/${pub}/view`)).status).toBe(409);
  });
});

describe('roles and media kinds', () => {
  it('an audio-only participant hears the mix and shows as a placeholder tile', async () => {
    const talker = await joinWerift(server.url, 'api-roles', 'Talker', { audio: 'sendrecv' });
    const watcher = await joinWerift(server.url, 'api-roles', 'Watcher', { audio: 'recvonly', video: 'recvonly' });
    cleanup.push(() => talker.close(), () => watcher.close());
    await publish(talker, [0, 0, 0], 660);
    await sleep(2500);
    const view = await (await authFetch(`${server.url}/v1/rooms/api-roles/participants/${watcher.id}/view`)).json();
    expect(view.tiles.map((t: { name: string; source: string }) => [t.name, t.source])).toEqual([['Talker', 'placeholder']]);
    expect(talker.received.audio).toBeGreaterThan(50);
    expect(talker.received.video).toBe(0);
    expect(watcher.received.video).toBeGreaterThan(30);
  });

  it('an H.264-only viewer gets H.264', async () => {
    const h = await joinWerift(server.url, 'api-h264', 'Legacy', { audio: 'recvonly', video: 'recvonly', videoCodec: 'h264' });
    cleanup.push(() => h.close());
    expect(h.answer).toMatch(/a=rtpmap:\d+ H264\/90000/);
    expect(h.answer).not.toMatch(/VP8/);
    const dir = grabVideo(h, cleanup, 'h264');
    await sleep(3000);
    const f = await latestFrame(dir);
    expect([f.width, f.height]).toEqual([640, 360]);
  });
});

describe('a peer that dies', () => {
  it('is removed by itself within 10 s', async () => {
    const { spawn } = await import('node:child_process');
    const child = spawn(process.execPath, [path.resolve('test/helpers/doomed-peer.mjs'), server.url, 'api-doomed', await joinToken('api-doomed')], { stdio: ['ignore', 'pipe', 'inherit'] });
    const location = await new Promise<string>((resolve, reject) => {
      child.stdout!.on('data', (d) => resolve(String(d).trim()));
      child.once('exit', (c) => reject(new Error(`peer exited ${c}`)));
    });
    expect((await authFetch(server.url + location)).status).toBe(200);
    child.kill('SIGKILL');
    const killedAt = Date.now();
    let status = 200;
    while (status === 200 && Date.now() - killedAt < 12_000) {
      await sleep(250);
      status = (await authFetch(server.url + location)).status;
    }
    expect(status).toBe(404);
    expect(Date.now() - killedAt).toBeLessThan(10_000);
  });
});

describe('a publisher whose video stops', () => {
  it('shows its placeholder, and the viewer’s stream stays one continuous RTP stream throughout', async () => {
    const publisher = await joinWerift(server.url, 'api-stall', 'Stalls', { video: 'sendonly' });
    const viewer = await joinWerift(server.url, 'api-stall', 'Watcher', { video: 'recvonly' });
    cleanup.push(() => publisher.close(), () => viewer.close());
    const headers: Array<{ ssrc: number; seq: number; ts: number }> = [];
    viewer.onRtp('video', (rtp) => headers.push({ ssrc: rtp.header.ssrc, seq: rtp.header.sequenceNumber, ts: rtp.header.timestamp }));
    const frames = grabVideo(viewer, cleanup);
    const udp = await LocalUdp.open((b) => publisher.send.video!.writeRtp(RtpPacket.deSerialize(b)));
    const sender = colourSender([240, 200, 20], udp.port);
    cleanup.push(() => udp.close());
    const viewOf = async () => (await (await authFetch(`${server.url}/v1/rooms/api-stall/participants/${viewer.id}/view`)).json()).tiles[0];
    let tile = await viewOf();
    for (let i = 0; i < 50 && tile.source !== 'video'; i++) {
      await sleep(200);
      tile = await viewOf();
    }
    expect(tile.source).toBe('video');
    await sleep(1000);
    const live = (await latestFrame(frames)).px(tile.x + tile.width / 2, tile.y + tile.height / 2);
    expect(near(live, [240, 200, 20], 45), `live ${live}`).toBe(true);

    await sender.close(); // the camera stops; RTP stops
    for (let i = 0; i < 40 && tile.source !== 'placeholder'; i++) {
      await sleep(200);
      tile = await viewOf();
    }
    expect(tile.source).toBe('placeholder');
    await sleep(1000);
    const shown = (await latestFrame(frames)).px(tile.x + tile.width / 2, tile.y + tile.height * 0.22);
    expect(near(shown, [240, 200, 20], 45), 'no longer the last frame').toBe(false);
    expect(shown.reduce((a, b) => a + b), 'the placeholder, not black').toBeGreaterThan(60);

    // Three compositions went by (placeholder, video, placeholder); the viewer saw one stream.
    expect(new Set(headers.map((h) => h.ssrc)).size).toBe(1);
    let backwards = 0;
    for (let i = 1; i < headers.length; i++) {
      const dSeq = (headers[i].seq - headers[i - 1].seq) & 0xffff;
      const dTs = (headers[i].ts - headers[i - 1].ts) >>> 0;
      if (dSeq === 0 || dSeq > 0x8000 || dTs > 0x80000000) backwards++;
    }
    expect(backwards, 'packets whose sequence number or timestamp went backwards').toBe(0);
    expect(headers.length).toBeGreaterThan(100);
  });
});
