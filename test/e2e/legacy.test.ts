import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { joinSynthetic, launchBrowser, waitFor, type SyntheticPeer } from '../helpers/browser.js';
import { decodeAudio } from '../helpers/fileMedia.js';
import { expectPhoneHears, startPhone, startRoomSystem, type RoomSystem } from '../helpers/legacyEndpoint.js';
import { near, toneDb } from '../helpers/media.js';
import { apiCall, authFetch, joinToken, startServerProcess, TEST_API_KEY, type ServerProcess } from '../helpers/server.js';

// Issue #12: endpoints without WebRTC. The phones and the room system are gst-launch-1.0 pipelines
// (test/helpers/legacyEndpoint.ts) behind a socket that plays their NAT: plain RTP/AVP, no ICE, no DTLS.

let server: ServerProcess;
let browser: Browser;
const stops: Array<() => Promise<unknown>> = [];
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mcu-legacy-'));

beforeAll(async () => {
  server = await startServerProcess({ MCU_RTP_TIMEOUT_MS: '4000' }, { pinCpu: true });
  browser = await launchBrowser();
});
afterAll(async () => {
  for (const s of stops.splice(0)) await s().catch(() => undefined);
  await browser?.close();
  expect(await server?.stop()).toBe(0);
});

type Dump = {
  participants: Array<{ id: string; name: string; transport: string; media: { audio: { codec: string } | null; video: { codec: string } | null } }>;
  events: Array<{ type: string; participant: string; digit: string }>;
};
const room = async (id: string) => (await apiCall(server.url, 'GET', `/v1/rooms/${id}`)).body as Dump;

/** POSTs a plain offer as WHIP does, with the admin key (or `token`). */
const offerTo = (roomId: string, name: string, sdp: string, token = TEST_API_KEY) =>
  fetch(`${server.url}/v1/rooms/${roomId}/participants?name=${encodeURIComponent(name)}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${token}` },
    body: sdp,
  });

async function browserHears(peer: SyntheticPeer, freq: number, what: string) {
  const levels = await waitFor(
    () => peer.page.evaluate((f) => (window as any).mcuTest.levels(f), [freq, peer.freq]) as Promise<number[]>,
    ([theirs, own]) => theirs > -60 && theirs > own + 20,
    20_000,
    what,
  );
  console.log(`${what}: ${levels[0].toFixed(0)} dB, own tone ${levels[1].toFixed(0)} dB`);
}

describe('phones', () => {
  it('a PCMU phone (SDP offer) and a G.722 gateway leg (SDP-less) hear a WebRTC person and not themselves, are heard, show as tiles, send DTMF, get RTCP, and are recorded', { timeout: 150_000 }, async () => {
    const ROOM = 'phones';
    const ann = await joinSynthetic(browser, server.url, { room: ROOM, name: 'Ann', color: [220, 30, 30], freq: 440, render: true });
    const rec = await apiCall(server.url, 'POST', `/v1/rooms/${ROOM}/recordings`, { format: 'webm', width: 640, height: 360 });
    expect(rec.status).toBe(201);

    const desk = await startPhone({ codec: 'pcmu', freq: 660 });
    stops.push(() => desk.stop());
    // Plain RTP is unauthenticated: a participant's join token may not create a leg.
    expect((await offerTo(ROOM, 'Desk', desk.offer(), await joinToken(ROOM))).status).toBe(403);
    const res = await offerTo(ROOM, 'Desk', desk.offer());
    expect(res.status).toBe(201);
    expect(res.headers.get('content-type')).toMatch(/application\/sdp/);
    const answer = await res.text();
    expect(answer).toMatch(/^m=audio \d+ RTP\/AVP 0 101\r$/m);
    expect(answer).not.toMatch(/a=ice-ufrag|a=fingerprint/);
    desk.answer(answer);
    const deskId = res.headers.get('location')!.split('/').pop()!;

    const gw = await startPhone({ codec: 'g722', freq: 880 });
    stops.push(() => gw.stop());
    expect((await apiCall(server.url, 'POST', `/v1/rooms/${ROOM}/rtp-legs`, { name: 'Gateway', codec: 'g722' }, await joinToken(ROOM))).status).toBe(403);
    const leg = await apiCall(server.url, 'POST', `/v1/rooms/${ROOM}/rtp-legs`, { name: 'Gateway', codec: 'g722' });
    expect(leg.status).toBe(201);
    expect(leg.body).toMatchObject({ host: '127.0.0.1', codec: 'g722', payloadType: 9 });
    gw.connect(leg.body.host, leg.body.port);

    await expectPhoneHears(desk, 440, 660, 'PCMU phone hears Ann');
    await expectPhoneHears(gw, 440, 880, 'G.722 leg hears Ann');
    // Each phone hears the other too (mix-minus: everyone but themselves).
    await expectPhoneHears(desk, 880, 660, 'PCMU phone hears the G.722 leg');
    await browserHears(ann, 660, 'Ann hears the PCMU phone');
    await browserHears(ann, 880, 'Ann hears the G.722 leg');

    const dump = await room(ROOM);
    const d = dump.participants.find((p) => p.id === deskId)!;
    expect(d).toMatchObject({ name: 'Desk', transport: 'rtp', media: { audio: { codec: 'pcmu' }, video: null } });
    expect(dump.participants.find((p) => p.id === leg.body.id)).toMatchObject({ name: 'Gateway', transport: 'rtp', media: { audio: { codec: 'g722' } } });
    // Both are tiles (placeholders with their names) in Ann's view.
    const view = (await apiCall(server.url, 'GET', `/v1/rooms/${ROOM}/participants/${ann.id}/view`)).body;
    const tiles = view.tiles.map((t: { name: string; source: string }) => `${t.name}:${t.source}`);
    expect(tiles).toEqual(expect.arrayContaining(['Desk:placeholder', 'Gateway:placeholder']));

    // RFC 4733 DTMF from the gateway leg: an event on the room, once.
    await gw.sendDtmf('7', 200);
    await desk.sendDtmf('#', 160);
    const events = await waitFor(() => room(ROOM), (r) => r.events.length >= 2, 5000, 'DTMF events');
    expect(events.events.map((e) => `${e.participant}:${e.digit}`)).toEqual([`${leg.body.id}:7`, `${deskId}:#`]);
    expect(server.output()).toMatch(/DTMF 7/);

    // Sender reports come to the phones' RTCP ports.
    await waitFor(async () => desk.received.rtcpTypes[200] ?? 0, (n) => n > 0, 10_000, 'an RTCP SR at the phone');

    // The recording has the phones in its mix.
    const stopped = await apiCall(server.url, 'POST', `/v1/rooms/${ROOM}/recordings/${rec.body.id}/stop`);
    expect(stopped.body.state).toBe('done');
    const file = path.join(tmp, 'phones.webm');
    fs.writeFileSync(file, Buffer.from(await (await authFetch(`${server.url}/v1/recordings/${rec.body.id}/file`)).arrayBuffer()));
    const pcm = decodeAudio(file, path.join(tmp, 'phones.raw'));
    const last = pcm.subarray(Math.max(0, pcm.length - 48000 * 3), pcm.length - 48000);
    console.log(`recording: 440 ${toneDb(last, 440).toFixed(1)} dB, 660 ${toneDb(last, 660).toFixed(1)} dB, 880 ${toneDb(last, 880).toFixed(1)} dB`);
    expect(toneDb(last, 660)).toBeGreaterThan(-40);
    expect(toneDb(last, 880)).toBeGreaterThan(-40);

    // A phone that goes away without a BYE is removed after MCU_RTP_TIMEOUT_MS (4 s here).
    await desk.stop();
    await waitFor(() => room(ROOM), (r) => !r.participants.some((p) => p.id === deskId), 15_000, 'the silent phone removed');
    // The gateway leg leaves by DELETE, like any participant.
    expect((await authFetch(`${server.url}/v1/rooms/${ROOM}/participants/${leg.body.id}`, { method: 'DELETE' })).status).toBe(204);
  });

  it('a WebRTC peer that offers only PCMU gets G.711, hears and is heard', { timeout: 60_000 }, async () => {
    const ROOM = 'g711-webrtc';
    const ann = await joinSynthetic(browser, server.url, { room: ROOM, name: 'Ann', color: [220, 30, 30], freq: 440, render: false });
    const old = await joinSynthetic(browser, server.url, { room: ROOM, name: 'Old', color: [30, 60, 220], freq: 660, render: false, audioCodec: 'pcmu' });
    const p = (await room(ROOM)).participants.find((x) => x.id === old.id)!;
    expect(p.media.audio?.codec).toBe('pcmu');
    await browserHears(old, 440, 'the PCMU browser hears Ann');
    await browserHears(ann, 660, 'Ann hears the PCMU browser');
  });
});

describe('refusals', () => {
  it('answers what it cannot take with a 4xx that says why', async () => {
    const g729 = ['v=0', 'o=- 1 1 IN IP4 127.0.0.1', 's=-', 'c=IN IP4 127.0.0.1', 't=0 0', 'm=audio 4000 RTP/AVP 18', 'a=rtpmap:18 G729/8000', ''].join('\r\n');
    const res = await offerTo('refusals', 'G729', g729);
    expect(res.status).toBe(415);
    expect((await res.json()).error.message).toMatch(/PCMU, PCMA, G\.722/);
    const noAddress = g729.replace('c=IN IP4 127.0.0.1\r\n', '').replace('18', '0');
    expect((await offerTo('refusals', 'NoC', noAddress)).status).toBe(400);
    expect((await apiCall(server.url, 'POST', '/v1/rooms/refusals/rtp-legs', { codec: 'g729' })).status).toBe(400);
    expect((await apiCall(server.url, 'POST', '/v1/rooms/refusals/rtp-legs', { codec: 'pcmu', remote: { host: 'example.com', port: 5004 } })).status).toBe(400);
    expect((await apiCall(server.url, 'POST', '/v1/rooms/refusals/rtp-legs', { codec: 'pcmu' }, null)).status).toBe(401);
  });
});

describe('a room system', () => {
  it('an H.264 packetization-mode=0 endpoint at level 1.2 gets the composite within 352x288 as single NAL units, with every colour in place, is a tile itself, and FIR gets it a keyframe', { timeout: 120_000 }, async () => {
    const ROOM = 'room-system';
    const ann = await joinSynthetic(browser, server.url, { room: ROOM, name: 'Ann', color: [220, 30, 30], freq: 440, render: true });
    const rs: RoomSystem = await startRoomSystem({ color: [30, 200, 40], packetizationMode: 0, profileLevelId: '42e00c', audioCodec: 'pcmu', freq: 660 });
    stops.push(() => rs.stop());
    const res = await offerTo(ROOM, 'Boardroom', rs.offer());
    expect(res.status).toBe(201);
    const answer = await res.text();
    expect(answer).toMatch(/a=fmtp:97 profile-level-id=42e00c;packetization-mode=0/);
    rs.answer(answer);
    const rsId = res.headers.get('location')!.split('/').pop()!;

    // What the room system decodes: at most 352x288, Ann's colour at her tile.
    await waitFor(async () => rs.frameSize(), (s) => !!s, 20_000, 'decoded frames at the room system').catch((e) => {
      console.log(rs.log().slice(-3000));
      throw e;
    });
    const size = rs.frameSize()!;
    console.log(`room system decodes ${size.width}x${size.height}`);
    expect(size.width).toBeLessThanOrEqual(352);
    expect(size.height).toBeLessThanOrEqual(288);
    const view = await waitFor(
      async () => (await apiCall(server.url, 'GET', `/v1/rooms/${ROOM}/participants/${rsId}/view`)).body,
      (v) => v.tiles?.some((t: { participantId: string; source: string }) => t.participantId === ann.id && t.source === 'video'),
      20_000,
      'Ann live in the room system’s view',
    );
    expect([view.width, view.height]).toEqual([size.width, size.height]);
    await waitFor(
      async () => {
        const t = view.tiles.find((x: { participantId: string }) => x.participantId === ann.id);
        return rs.sample(t.x + t.width / 2, t.y + t.height / 2) ?? [0, 0, 0];
      },
      (got) => near(got, ann.color, 60),
      20_000,
      'Ann’s red at her tile in the room system’s picture',
    );
    // Only single NAL units (types 1-23): no STAP-A (24), no FU-A (28).
    expect([...rs.nalTypes].every((t) => t >= 1 && t <= 23), `NAL types ${[...rs.nalTypes]}`).toBe(true);
    expect(rs.video.received.maxRtpBytes).toBeLessThanOrEqual(1200 + 12);

    // Ann sees the room system's green tile and hears its tone; it hears her.
    await waitFor(
      async () => {
        const v = (await apiCall(server.url, 'GET', `/v1/rooms/${ROOM}/participants/${ann.id}/view`)).body;
        const t = v.tiles?.find((x: { participantId: string; source: string }) => x.participantId === rsId && x.source === 'video');
        if (!t) return [0, 0, 0];
        return (await ann.page.evaluate(([x, y]) => (window as any).mcuTest.sample(x, y), [t.x + t.width / 2, t.y + t.height / 2])) as number[];
      },
      (got) => near(got, [30, 200, 40], 60),
      20_000,
      'the room system’s green in Ann’s picture',
    );
    await browserHears(ann, 660, 'Ann hears the room system');
    const [heard, own] = await waitFor(async () => rs.levels([440, 660]), ([t, o]) => t > o + 20, 20_000, 'the room system hears Ann');
    console.log(`room system hears Ann at ${heard.toFixed(1)} dBFS, itself at ${own.toFixed(1)}`);

    // FIR (RFC 5104) asks for a keyframe, as PLI does.
    for (const ask of [() => rs.sendFir(), () => rs.sendPli()]) {
      const before = rs.video.received.keyframes;
      ask();
      await waitFor(async () => rs.video.received.keyframes, (n) => n > before, 5000, 'a keyframe after FIR/PLI');
    }
    await waitFor(async () => rs.video.received.rtcpTypes[200] ?? 0, (n) => n > 0, 10_000, 'an RTCP SR for the video');
  });
});
