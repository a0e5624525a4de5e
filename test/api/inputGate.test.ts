import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RtpPacket } from 'werift';
import { LocalUdp } from '../../src/media/localUdp.js';
import { ears, sleep, toneSender } from '../helpers/media.js';
import { authFetch, startServerProcess, type ServerProcess } from '../helpers/server.js';
import { joinWerift, type WeriftPeer } from '../helpers/weriftPeer.js';

// A microphone whose packets say it is silent (RFC 6464 audio level) is not decoded; its first
// louder packet is. The test's speaker sends a tone all along and only the level it claims
// changes, so what the listener hears shows what the server decoded.
let server: ServerProcess;
const cleanup: Array<() => unknown> = [];
beforeAll(async () => {
  server = await startServerProcess({});
});
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
  expect(await server.stop()).toBe(0);
});

const ROOM = 'input-gate';
const LEVEL_URI = 'urn:ietf:params:rtp-hdrext:ssrc-audio-level';

/** Sends a tone as the peer's microphone, each packet claiming the level `level()` says. */
async function talk(peer: WeriftPeer, level: () => number, freq = 440) {
  const t = peer.pc.getTransceivers().find((x) => x.sender.track === peer.send.audio)!;
  const id = t.headerExtensions.find((e) => e.uri === LEVEL_URI)?.id;
  expect(id, 'the server negotiates audio levels').toBeDefined();
  const udp = await LocalUdp.open((b) => {
    const rtp = RtpPacket.deSerialize(b);
    rtp.header.extensions.push({ id: id!, payload: Buffer.from([level()]) });
    peer.send.audio!.writeRtp(rtp);
  });
  const p = toneSender(freq, udp.port);
  cleanup.push(() => p.close(), () => udp.close());
}

async function speakerStats(id: string, url = server.url, room = ROOM) {
  const r = (await (await authFetch(`${url}/v1/rooms/${room}`)).json()) as {
    participants: Array<{ id: string; stats: { audioPacketsIn: number; audioPacketsSkipped: number } }>;
  };
  return r.participants.find((p) => p.id === id)!.stats;
}

describe('a silent microphone is not decoded', () => {
  it('skips the packets of a microphone that says it is silent, and decodes from its first louder packet', async () => {
    const speaker = await joinWerift(server.url, ROOM, 'S', { audio: 'sendrecv', audioLevel: true });
    const listener = await joinWerift(server.url, ROOM, 'L', { audio: 'recvonly' });
    cleanup.push(() => speaker.close(), () => listener.close());
    let level = 127;
    await talk(speaker, () => level);
    const listen = await ears(listener, cleanup);
    const hear = async (ms: number) => (await listen(ms, [440]))[440];

    // Silent by its levels from the start: nothing of it is decoded, so nothing of it is heard.
    await sleep(1500);
    const quiet = await hear(2000);
    const s0 = await speakerStats(speaker.id);
    expect(s0.audioPacketsIn, `packets in ${JSON.stringify(s0)}`).toBeGreaterThan(100);
    expect(s0.audioPacketsSkipped, `skipped ${JSON.stringify(s0)}`).toBe(s0.audioPacketsIn);
    expect(quiet, 'the listener hears nothing of a skipped microphone').toBeLessThan(-60);

    // It talks (-17 dBov): decoded at once, and heard.
    level = 17;
    const loud = await hear(2000);
    expect(loud, 'the listener hears it once it is loud').toBeGreaterThan(-30);
    // Nothing skipped while it talks (stats come from the RTC worker four times a second, so
    // compare two readings taken well inside the loud stretch).
    const s1 = await speakerStats(speaker.id);
    await sleep(1000);
    const s1b = await speakerStats(speaker.id);
    expect(s1b.audioPacketsIn - s1.audioPacketsIn, 'packets while it talks').toBeGreaterThan(30);
    expect(s1b.audioPacketsSkipped - s1.audioPacketsSkipped, 'skipped while it talks').toBe(0);

    // Quiet again: still decoded through the 2 s hangover, then skipped.
    level = 127;
    await sleep(3000);
    const s2 = await speakerStats(speaker.id);
    await sleep(1000);
    const s3 = await speakerStats(speaker.id);
    expect(s3.audioPacketsSkipped - s2.audioPacketsSkipped, 'skipped again after the hangover').toBeGreaterThan(40);
  });

  it('while the mix is full, a talker who could not take a place is not decoded until it is loud enough to', async () => {
    // The mix carries one talker: A, who talked first. B talks as loud as A, so it could not take
    // A's place (that takes 6 dB more): it is skipped. Then B is 8 dB louder: decoded again.
    const full = await startServerProcess({ MCU_MIX_SPEAKERS: '1' });
    cleanup.push(async () => expect(await full.stop()).toBe(0));
    const room = 'input-gate-full';
    const a = await joinWerift(full.url, room, 'A', { audio: 'sendrecv', audioLevel: true });
    const b = await joinWerift(full.url, room, 'B', { audio: 'sendrecv', audioLevel: true });
    const l = await joinWerift(full.url, room, 'L', { audio: 'recvonly' });
    cleanup.push(() => a.close(), () => b.close(), () => l.close());
    await talk(a, () => 17, 440);
    await sleep(1500);
    let levelB = 17;
    await talk(b, () => levelB, 700);
    const listen = await ears(l, cleanup);
    const stats = (p: WeriftPeer) => speakerStats(p.id, full.url, room);
    const skippedOver = async (p: WeriftPeer, ms: number) => {
      const s0 = await stats(p);
      await sleep(ms);
      const s1 = await stats(p);
      return { skipped: s1.audioPacketsSkipped - s0.audioPacketsSkipped, packets: s1.audioPacketsIn - s0.audioPacketsIn };
    };
    // The hangover (2 s) and a stats round or two.
    await sleep(3500);
    const bOut = await skippedOver(b, 1500);
    const aIn = await skippedOver(a, 1500);
    expect(bOut.packets).toBeGreaterThan(50);
    expect(bOut.skipped, `B, as loud as the one talker mixed: ${JSON.stringify(bOut)}`).toBe(bOut.packets);
    expect(aIn.skipped, `A, the talker mixed: ${JSON.stringify(aIn)}`).toBe(0);
    const heard = await listen(1500, [440, 700]);
    expect(heard[440], 'L hears A').toBeGreaterThan(-30);
    expect(heard[700], 'L does not hear B (not mixed)').toBeLessThan(-60);

    // B is now 8 dB louder than A: within reach of A's place, so decoded.
    levelB = 9;
    await sleep(1000);
    const bIn = await skippedOver(b, 1500);
    expect(bIn.packets).toBeGreaterThan(50);
    expect(bIn.skipped, `B, loud enough to take a place: ${JSON.stringify(bIn)}`).toBe(0);
  });
});

