import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RtpPacket } from 'werift';
import { LocalUdp } from '../../src/media/localUdp.js';
import { ears, sleep, toneSender } from '../helpers/media.js';
import { authFetch, startServerProcess, type ServerProcess } from '../helpers/server.js';
import { joinWerift, type WeriftPeer } from '../helpers/weriftPeer.js';

// The mix carries the two loudest talkers here (MCU_MIX_SPEAKERS=2), so that a third talker and a
// silent listener both hear the room's shared mix, and the talkers their own mix-minus.
let server: ServerProcess;
const cleanup: Array<() => unknown> = [];
beforeAll(async () => {
  server = await startServerProcess({ MCU_MIX_SPEAKERS: '2' });
});
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
  expect(await server.stop()).toBe(0);
});

const ROOM = 'shared-mix';

/** Sends a tone as the peer's microphone. */
async function talk(peer: WeriftPeer, freq: number) {
  const track = peer.send.audio!;
  const udp = await LocalUdp.open((b) => track.writeRtp(RtpPacket.deSerialize(b)));
  const p = toneSender(freq, udp.port);
  cleanup.push(() => p.close(), () => udp.close());
  return () => {
    p.close();
    udp.close();
  };
}

/**
 * Records the RTP timestamps of the mix a peer hears. Each packet carries 20 ms of Opus, so
 * consecutive packets must be 960 apart (48 kHz): a step that follows the packets' arrival jitter
 * instead makes a browser's jitter buffer conceal the gaps and drop the overlaps.
 */
function timestamps(peer: WeriftPeer) {
  let steps = new Map<number, number>();
  let last: { seq: number; ts: number } | undefined;
  peer.onRtp('audio', (rtp) => {
    const { sequenceNumber: seq, timestamp: ts } = rtp.header;
    if (last && seq === ((last.seq + 1) & 0xffff)) {
      const step = (ts - last.ts) >>> 0;
      steps.set(step, (steps.get(step) ?? 0) + 1);
    }
    last = { seq, ts };
  });
  return () => {
    const out = steps;
    steps = new Map();
    return out;
  };
}

async function room() {
  return (await (await authFetch(`${server.url}/v1/rooms/${ROOM}`)).json()) as {
    audio: { mixed: string[]; sharedMix: boolean; sharedMixListeners: number };
  };
}

async function until<T>(what: () => Promise<T>, ok: (v: T) => boolean, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  let v = await what();
  while (!ok(v) && Date.now() < end) {
    await sleep(200);
    v = await what();
  }
  return v;
}

describe('the shared mix (the loudest talkers, encoded once for everyone outside them)', () => {
  const HEARD = -30; // dBFS: the tones are sent at about -12
  // Not heard: under -45 dBFS. A tone at -12 heard for a single 20 ms frame in the 2 s measured
  // comes to -32 (-12 + 10 log 0.01), so one frame of a talker's own voice fails this. Opus's noise
  // around two mixed tones is above -60: measured in this test at frequencies nobody sends (550,
  // 900 Hz), -53 to -66 dBFS, and a talker's own frequency, not in its mix, at up to -53 in CI.
  const NOT_HEARD = -45;

  it('talkers hear each other but not themselves; a third talker and a listener hear the two talkers, and the third comes in when one leaves', async () => {
    const a = await joinWerift(server.url, ROOM, 'A', { audio: 'sendrecv' });
    const b = await joinWerift(server.url, ROOM, 'B', { audio: 'sendrecv' });
    const c = await joinWerift(server.url, ROOM, 'C', { audio: 'sendrecv' });
    const d = await joinWerift(server.url, ROOM, 'D', { audio: 'recvonly' });
    cleanup.push(() => a.close(), () => b.close(), () => c.close(), () => d.close());
    const stopA = await talk(a, 440);
    await talk(b, 700);
    // C starts when A and B have the mix: as loud as they are, it does not take a place from them.
    const r0 = await until(room, (r) => r.audio.mixed.length === 2);
    expect(r0.audio.mixed.sort()).toEqual([a.id, b.id].sort());
    await talk(c, 1100);
    const [hearA, hearB, hearC, hearD] = await Promise.all([a, b, c, d].map((p) => ears(p, cleanup)));
    const [stepsA, stepsD] = [timestamps(a), timestamps(d)];
    await sleep(1500);
    stepsA();
    stepsD();

    const [atA, atB, atC, atD] = await Promise.all([hearA, hearB, hearC, hearD].map((h) => h(2000, [440, 700, 1100])));
    // Each talker: its own mix-minus, the other talker only.
    expect(atA[700], 'A hears B').toBeGreaterThan(HEARD);
    expect(atA[440], 'A does not hear itself').toBeLessThan(NOT_HEARD);
    expect(atB[440], 'B hears A').toBeGreaterThan(HEARD);
    expect(atB[700], 'B does not hear itself').toBeLessThan(NOT_HEARD);
    // Everyone else: the shared mix, which carries A and B and not C.
    for (const [who, at] of [['C', atC], ['D', atD]] as const) {
      expect(at[440], `${who} hears A`).toBeGreaterThan(HEARD);
      expect(at[700], `${who} hears B`).toBeGreaterThan(HEARD);
      expect(at[1100], `${who} does not hear C (not mixed)`).toBeLessThan(NOT_HEARD);
    }
    expect(atA[1100]).toBeLessThan(NOT_HEARD);
    // A's own mix-minus and D's shared mix each go on in exact 20 ms steps.
    for (const [who, steps] of [['A (its own mix-minus)', stepsA()], ['D (the shared mix)', stepsD()]] as const) {
      const n = [...steps.values()].reduce((x, y) => x + y, 0);
      expect(n, `${who}: packets in 2 s`).toBeGreaterThan(80);
      expect(Object.fromEntries(steps), `${who}: RTP timestamp steps`).toEqual({ 960: n });
    }
    const r1 = await room();
    expect(r1.audio.mixed.sort()).toEqual([a.id, b.id].sort());
    expect(r1.audio.sharedMix).toBe(true);
    expect(r1.audio.sharedMixListeners).toBe(4);

    // A stops talking: after the hold (1 s) C takes its place.
    stopA();
    const r2 = await until(room, (r) => r.audio.mixed.includes(c.id));
    expect(r2.audio.mixed.sort()).toEqual([b.id, c.id].sort());
    await sleep(500);
    const [atC2, atD2, atA2] = await Promise.all([hearC, hearD, hearA].map((h) => h(2000, [440, 700, 1100])));
    expect(atC2[700], 'C hears B').toBeGreaterThan(HEARD);
    expect(atC2[1100], 'C, now a talker, does not hear itself').toBeLessThan(NOT_HEARD);
    expect(atD2[700]).toBeGreaterThan(HEARD);
    expect(atD2[1100], 'D hears C now').toBeGreaterThan(HEARD);
    expect(atA2[1100], 'A, now outside the talkers, hears C').toBeGreaterThan(HEARD);
    expect(atA2[700]).toBeGreaterThan(HEARD);
  });
});
