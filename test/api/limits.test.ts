import { afterAll, describe, expect, it } from 'vitest';
import { makeOffer } from '../helpers/weriftPeer.js';
import { waitFor } from '../helpers/browser.js';
import { apiCall, authFetch, joinToken, startServerProcess, type ServerProcess } from '../helpers/server.js';

// Every limit refuses with a status a client can act on, and names the limit it hit.

const servers: ServerProcess[] = [];
afterAll(async () => {
  for (const s of servers) await s.stop();
});
const start = async (env: Record<string, string>) => {
  const s = await startServerProcess(env);
  servers.push(s);
  return s;
};

/** A WHIP POST with a werift recvonly offer (the peer never connects: the offer is all it takes). */
async function post(s: ServerProcess, room: string, name = 'P') {
  const o = await makeOffer({ audio: 'recvonly' });
  await o.pc.close();
  const res = await authFetch(
    `${s.url}/v1/rooms/${room}/participants?name=${encodeURIComponent(name)}`,
    { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: o.sdp },
    await joinToken(room),
  );
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: res.status === 201 ? undefined : JSON.parse(text) };
}

describe('limits', () => {
  it('a full room refuses the next join with 409 and names the limit, also when joins race', async () => {
    const s = await start({ MCU_MAX_PARTICIPANTS: '2' });
    const results = await Promise.all(Array.from({ length: 5 }, (_, i) => post(s, 'full', `P${i}`)));
    expect(results.filter((r) => r.status === 201)).toHaveLength(2);
    const refused = results.filter((r) => r.status !== 201);
    expect(refused.map((r) => r.status)).toEqual([409, 409, 409]);
    expect(refused[0].body.error).toMatchObject({ code: 'limit_participants_per_room', limit: 'participants_per_room' });
    expect(refused[0].body.error.message).toMatch(/MCU_MAX_PARTICIPANTS/);
    expect((await apiCall(s.url, 'GET', '/v1/rooms/full')).body.participants).toHaveLength(2);
    // Another room is not affected.
    expect((await post(s, 'other')).status).toBe(201);
  });

  it('a node at its room limit answers 503 with Retry-After for a new room, and still takes joins to its rooms', async () => {
    const s = await start({ MCU_MAX_ROOMS: '1' });
    expect((await post(s, 'one')).status).toBe(201);
    const r = await post(s, 'two');
    expect(r.status).toBe(503);
    expect(Number(r.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(r.body.error).toMatchObject({ code: 'limit_rooms', limit: 'rooms' });
    expect((await apiCall(s.url, 'POST', '/v1/rooms', { id: 'three' })).status).toBe(503);
    expect((await post(s, 'one')).status).toBe(201);
  });

  it('joins from one address beyond the rate get 429 with rate-limit headers, before the offer is read', async () => {
    const s = await start({ MCU_JOINS_PER_SECOND: '3' });
    const token = await joinToken('rate');
    const statuses: number[] = [];
    let last: Response | undefined;
    for (let i = 0; i < 6; i++) {
      // Empty offers: 400 when admitted, 429 when over the rate.
      last = await authFetch(`${s.url}/v1/rooms/rate/participants`, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: '' }, token);
      statuses.push(last.status);
    }
    expect(statuses.filter((x) => x === 400).length).toBeGreaterThanOrEqual(3);
    expect(statuses.filter((x) => x === 429).length).toBeGreaterThanOrEqual(1);
    expect(statuses.at(-1)).toBe(429);
    const body = await last!.json();
    expect(body.error).toMatchObject({ code: 'limit_joins_per_second', limit: 'joins_per_second' });
    expect(last!.headers.get('retry-after')).toBe('1');
    expect(last!.headers.get('ratelimit-policy')).toMatch(/q=3/);
    // A second later the address may join again.
    await new Promise((r) => setTimeout(r, 1100));
    expect((await post(s, 'rate')).status).toBe(201);
  });

  it('names and room ids longer than the configured lengths get 400', async () => {
    const s = await start({ MCU_MAX_NAME_LENGTH: '8', MCU_MAX_ROOM_ID_LENGTH: '6' });
    const long = await post(s, 'room', 'Bartholomew');
    expect(long.status).toBe(400);
    expect(long.body.error.message).toMatch(/at most 8 characters/);
    expect((await post(s, 'room', 'Bart')).status).toBe(201);
    const room = await post(s, 'roomroom');
    expect(room.status).toBe(400);
    expect(room.body.error.message).toMatch(/1-6 letters/);
  });

  it('admission by cost: joins are taken while their cost fits the CPU budget, then refused with 503 and Retry-After', async () => {
    // Each (audio-only) participant is priced at 0.3 cores and the budget is 80 % of the cores this
    // server may use: an idle node takes a few joins, counting those not yet in its measured load,
    // then refuses.
    const s = await start({ MCU_CPU_BUDGET: '0.8', MCU_AUDIO_PARTICIPANT_COST: '0.3' });
    // The node is idle: its measured load (its own CPU, read every second) is well below one
    // participant's price. On a slow machine the first second after start can still hold the
    // workers' warm-up.
    const load = async () => Number(/mcu_admission_cores\{what="load"\} ([\d.]+)/.exec(await (await authFetch(`${s.url}/metrics`)).text())?.[1]);
    await waitFor(load, (l) => l < 0.2, 20_000, 'an idle node');
    const statuses: number[] = [];
    let refusal: Awaited<ReturnType<typeof post>> | undefined;
    for (let i = 0; i < 12 && !refusal; i++) {
      const r = await post(s, 'admit', `A${i}`);
      statuses.push(r.status);
      if (r.status !== 201) refusal = r;
    }
    expect(statuses.filter((x) => x === 201).length).toBeGreaterThanOrEqual(1);
    expect(refusal?.status).toBe(503);
    expect(Number(refusal!.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(refusal!.body.error).toMatchObject({ code: 'limit_cpu', limit: 'cpu' });
    expect(refusal!.body.error.message).toMatch(/MCU_CPU_BUDGET/);
    const metrics = await (await authFetch(`${s.url}/metrics`)).text();
    expect(metrics).toMatch(/mcu_refusals_total\{limit="cpu"\} [1-9]/);
    expect(metrics).toMatch(/mcu_admission_cores\{what="capacity"\} \d/);
    // A participant priced beyond the whole budget is never taken.
    const never = await start({ MCU_CPU_BUDGET: '0.8', MCU_AUDIO_PARTICIPANT_COST: '64' });
    expect((await post(never, 'admit')).status).toBe(503);
  });
});
