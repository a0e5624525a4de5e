import { RtpPacket } from 'werift';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GstPipeline } from '../../src/gst/native.js';
import { LocalUdp } from '../../src/media/localUdp.js';
import { waitFor } from '../helpers/browser.js';
import { colourSender } from '../helpers/media.js';
import { apiCall, authFetch, startServerProcess, type ServerProcess } from '../helpers/server.js';
import { vp8KeyframeSize } from '../helpers/vp8.js';
import { joinWerift, type WeriftPeer } from '../helpers/weriftPeer.js';

// Each viewer gets a stream sized to its device: limits from the join's query, from the offer
// (b=TIAS/b=AS, the H.264 level), and from PUT .../output during the call.

let server: ServerProcess;
const ROOM = 'profiles';
const cleanup: Array<() => unknown> = [];
const peers: WeriftPeer[] = [];

interface Received {
  keyframes: Array<{ width: number; height: number; at: number }>;
  timestamps: Array<{ ts: number; at: number }>;
}

async function viewer(name: string, opts: Parameters<typeof joinWerift>[3]) {
  const p = await joinWerift(server.url, ROOM, name, { audio: 'recvonly', video: 'recvonly', ...opts });
  peers.push(p);
  const got: Received = { keyframes: [], timestamps: [] };
  p.onRtp('video', (rtp) => {
    const at = performance.now();
    if (got.timestamps.at(-1)?.ts !== rtp.header.timestamp) got.timestamps.push({ ts: rtp.header.timestamp, at });
    const size = vp8KeyframeSize(rtp.payload);
    if (size) got.keyframes.push({ ...size, at });
  });
  return { p, got };
}

/** Frames per second received over the last `ms` (distinct RTP timestamps). */
const fpsOver = (got: Received, ms: number) => {
  const since = performance.now() - ms;
  return got.timestamps.filter((t) => t.at >= since).length / (ms / 1000);
};

const view = async (id: string) => (await apiCall(server.url, 'GET', `/v1/rooms/${ROOM}/participants/${id}/view`)).body as { width: number; height: number };
const me = async (id: string) => (await apiCall(server.url, 'GET', `/v1/rooms/${ROOM}/participants/${id}`)).body;

beforeAll(async () => {
  server = await startServerProcess();
  // Two publishers with a colour each.
  for (const [i, colour] of [
    [0, [220, 40, 40]],
    [1, [40, 200, 60]],
  ] as Array<[number, [number, number, number]]>) {
    const pub = await joinWerift(server.url, ROOM, `Pub${i}`, { audio: 'recvonly', video: 'sendrecv' });
    peers.push(pub);
    const track = pub.send.video!;
    const udp = await LocalUdp.open((b) => track.writeRtp(RtpPacket.deSerialize(b)));
    const gst: GstPipeline = colourSender(colour, udp.port);
    cleanup.push(() => gst.close(), () => udp.close());
  }
  await waitFor(() => apiCall(server.url, 'GET', `/v1/rooms/${ROOM}`), (r) => r.body.participants.filter((p: { videoLive: boolean }) => p.videoLive).length === 2, 15_000, 'publishers live');
});

afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
  for (const p of peers) await p.close();
  expect(await server.stop()).toBe(0);
});

describe('keyframes', () => {
  it('an encoder sends at most one keyframe a second, whatever number of viewers ask', async () => {
    const a = await viewer('Asker1', { query: 'maxWidth=480' });
    const b = await viewer('Asker2', { query: 'maxWidth=480' });
    await waitFor(async () => [a.got.keyframes.length, b.got.keyframes.length], ([x, y]) => x > 0 && y > 0, 10_000, 'first keyframes');
    await new Promise((r) => setTimeout(r, 1200));
    const ssrc = { a: 0, b: 0 };
    a.p.onRtp('video', (rtp) => (ssrc.a = rtp.header.ssrc));
    b.p.onRtp('video', (rtp) => (ssrc.b = rtp.header.ssrc));
    await waitFor(async () => ssrc.a && ssrc.b, Boolean, 2000, 'ssrcs');
    const t0 = performance.now();
    // 40 PLIs over 3 s from the two viewers of one encoder.
    for (let i = 0; i < 20; i++) {
      for (const [v, s] of [[a, ssrc.a], [b, ssrc.b]] as const) {
        const t = v.p.pc.getTransceivers().find((x) => x.kind === 'video')!;
        await t.receiver.sendRtcpPLI(s);
      }
      await new Promise((r) => setTimeout(r, 150));
    }
    await new Promise((r) => setTimeout(r, 500));
    const seconds = (performance.now() - t0) / 1000;
    const keyframes = a.got.keyframes.filter((k) => k.at >= t0).length;
    console.log(`${keyframes} keyframes in ${seconds.toFixed(1)} s for 40 PLIs`);
    expect(keyframes).toBeGreaterThanOrEqual(2);
    expect(keyframes).toBeLessThanOrEqual(Math.ceil(seconds) + 1);
  });
});

describe('output profiles', () => {
  it('?maxWidth=320&maxHeight=180&maxFps=15: the viewer is sent 320x180 at 15 fps, and a second such viewer shares its encoder', async () => {
    const { p, got } = await viewer('Small', { query: 'maxWidth=320&maxHeight=180&maxFps=15' });
    expect(await view(p.id)).toMatchObject({ width: 320, height: 180 });
    expect((await me(p.id)).output).toMatchObject({ limits: { maxWidth: 320, maxHeight: 180, maxFps: 15 }, profile: { width: 320, height: 180, fps: 15, bitrate: 200_000 } });
    await waitFor(async () => got.keyframes.length, (n) => n > 0, 10_000, 'a keyframe');
    expect(got.keyframes.every((k) => k.width === 320 && k.height === 180)).toBe(true);
    await waitFor(async () => got.timestamps.length, (n) => n > 60, 10_000, 'frames');
    const fps = fpsOver(got, 3000);
    expect(fps).toBeGreaterThan(11);
    expect(fps).toBeLessThan(17);
    const encoders = (await apiCall(server.url, 'GET', `/v1/rooms/${ROOM}`)).body.encoders;
    const twin = await viewer('Small2', { query: 'maxWidth=320&maxHeight=180&maxFps=15' });
    expect(await view(twin.p.id)).toMatchObject({ width: 320, height: 180 });
    expect((await apiCall(server.url, 'GET', `/v1/rooms/${ROOM}`)).body.encoders).toBe(encoders);
    const metrics = await (await authFetch(`${server.url}/metrics`)).text();
    expect(metrics).toContain(`mcu_output_profile{room="${ROOM}",participant="${p.id}",what="width"} 320`);
  });

  it('an H.264 offer at level 1.2 (42e00c) never gets more than 352x288, and level 3.0 (42e01e) never more than 720x576', async () => {
    for (const [level, maxW, maxH] of [
      ['42e00c', 352, 288],
      ['42e01e', 720, 576],
    ] as const) {
      const { p } = await viewer(`H264-${level}`, { videoCodec: 'h264', editOffer: (sdp) => sdp.replace(/profile-level-id=42e01f/g, `profile-level-id=${level}`) });
      const v = await view(p.id);
      expect(v.width).toBeLessThanOrEqual(maxW);
      expect(v.height).toBeLessThanOrEqual(maxH);
      const { output } = await me(p.id);
      // Within the level's macroblocks per second too.
      const mbs = Math.ceil(output.profile.width / 16) * Math.ceil(output.profile.height / 16);
      expect(mbs * output.profile.fps).toBeLessThanOrEqual(level === '42e00c' ? 6000 : 40500);
    }
  });

  it('b=TIAS in the offer caps the bitrate, and the size stays', async () => {
    const { p } = await viewer('Capped', { editOffer: (sdp) => sdp.replace(/(m=video[^\n]*\n(?:c=[^\n]*\n)?)/, '$1b=TIAS:300000\r\n') });
    expect((await me(p.id)).output.profile).toMatchObject({ width: 640, height: 360, bitrate: 300_000 });
  });

  it('PUT .../output changes it during the call: the viewer moves to the new size at a keyframe, and back', async () => {
    const { p, got } = await viewer('Mover', {});
    await waitFor(async () => got.keyframes.length, (n) => n > 0, 10_000, 'a first keyframe');
    expect(got.keyframes[0]).toMatchObject({ width: 640, height: 360 });
    const put = await apiCall(server.url, 'PUT', `/v1/rooms/${ROOM}/participants/${p.id}/output`, { maxWidth: 320, maxFps: 15 }, p.token);
    expect(put.status).toBe(200);
    expect(put.body.output.profile).toMatchObject({ width: 320, height: 180, fps: 15 });
    await waitFor(async () => got.keyframes.at(-1), (k) => k?.width === 320 && k.height === 180, 10_000, 'a 320x180 keyframe');
    expect(await view(p.id)).toMatchObject({ width: 320, height: 180 });
    const back = await apiCall(server.url, 'PUT', `/v1/rooms/${ROOM}/participants/${p.id}/output`, { maxWidth: null }, p.token);
    expect(back.body.output.profile).toMatchObject({ width: 640, height: 360, fps: 30 });
    await waitFor(async () => got.keyframes.at(-1), (k) => k?.width === 640, 10_000, 'a 640x360 keyframe');
    // Bad limits name the field.
    const bad = await apiCall(server.url, 'PUT', `/v1/rooms/${ROOM}/participants/${p.id}/output`, { maxWidth: 10 }, p.token);
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toMatch(/maxWidth/);
    await expect(joinWerift(server.url, ROOM, 'Bad', { video: 'recvonly', query: 'maxFps=0' })).rejects.toThrow(/join failed 400.*maxFps/);
  });
});
