import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RtpPacket } from 'werift';
import { LocalUdp } from '../../src/media/localUdp.js';
import { colourSender, latestFrame, near, sleep } from '../helpers/media.js';
import { authFetch, startServerProcess, type ServerProcess } from '../helpers/server.js';
import { grabVideo, joinWerift, type WeriftPeer } from '../helpers/weriftPeer.js';

// MCU_VIDEO_CODEC=h264: a peer that offers H.264 anywhere in its list gets it (both ways), so its
// composite costs the server's x264 and not VP8; a peer without it keeps VP8.
let server: ServerProcess;
const cleanup: Array<() => unknown> = [];
beforeAll(async () => {
  server = await startServerProcess({ MCU_VIDEO_CODEC: 'h264' });
});
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
  expect(await server.stop()).toBe(0);
});

async function publish(peer: WeriftPeer, rgb: [number, number, number], codec: 'vp8' | 'h264') {
  const track = peer.send.video!;
  const udp = await LocalUdp.open((b) => track.writeRtp(RtpPacket.deSerialize(b)));
  const p = colourSender(rgb, udp.port, '320x180', codec);
  cleanup.push(() => p.close(), () => udp.close());
}

const rtpmaps = (sdp: string) => [...sdp.matchAll(/a=rtpmap:\d+ (VP8|H264)\/90000/g)].map((m) => m[1]);

describe('MCU_VIDEO_CODEC=h264', () => {
  it('answers H.264 to a VP8-first offer that has it, VP8 to one that does not, and each sees the other', async () => {
    const room = 'codec-pref';
    const both = await joinWerift(server.url, room, 'Both', { video: 'sendrecv', videoCodec: ['vp8', 'h264'] });
    const vp8 = await joinWerift(server.url, room, 'Vp8', { video: 'sendrecv', videoCodec: 'vp8' });
    cleanup.push(() => both.close(), () => vp8.close());
    expect(rtpmaps(both.answer)[0]).toBe('H264'); // first: what both sides send
    expect(rtpmaps(vp8.answer)).toEqual(['VP8']);
    const r = await (await authFetch(`${server.url}/v1/rooms/${room}`)).json();
    expect(r.participants.map((p: { media: { video: { codec: string } } }) => p.media.video.codec)).toEqual(['h264', 'vp8']);

    await publish(both, [220, 30, 30], 'h264');
    await publish(vp8, [30, 200, 40], 'vp8');
    const atBoth = grabVideo(both, cleanup, 'h264');
    const atVp8 = grabVideo(vp8, cleanup);
    // Each sees the other's colour in the middle of its (single) tile.
    const centreOf = async (dir: string) => {
      const f = await latestFrame(dir);
      return { f, c: f.px(f.width / 2, f.height / 2) };
    };
    let a = { c: [0, 0, 0] } as { c: number[]; f?: Awaited<ReturnType<typeof latestFrame>> };
    let b = { c: [0, 0, 0] } as { c: number[]; f?: Awaited<ReturnType<typeof latestFrame>> };
    const end = Date.now() + 15_000;
    while (Date.now() < end && !(near(a.c, [30, 200, 40], 45) && near(b.c, [220, 30, 30], 45))) {
      await sleep(500);
      a = await centreOf(atBoth).catch(() => a);
      b = await centreOf(atVp8).catch(() => b);
    }
    expect(near(a.c, [30, 200, 40], 45), `the H.264 viewer sees green, got ${a.c}`).toBe(true);
    expect(near(b.c, [220, 30, 30], 45), `the VP8 viewer sees red, got ${b.c}`).toBe(true);
    expect([a.f?.width, a.f?.height]).toEqual([640, 360]);
  });
});
