import { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { KEY_PREFIX as P, PLACE_LUA, type NodeRecord } from '../../src/cluster/placement.js';
import { startRedis, type RedisProcess } from '../helpers/cluster.js';

// The placement script alone, on a real redis-server, with node records written by the test:
// which node a room goes to, by load, rooms, capacity and draining.

let redis: RedisProcess;
let a: Redis;
let b: Redis;
const GRACE = 30_000;

const node = (id: string, over: Partial<NodeRecord> = {}): NodeRecord => ({
  id,
  url: `http://${id}`,
  iceAddresses: [],
  loadCores: 0.05,
  pendingCores: 0,
  capacityCores: 1.6,
  participantCost: 0.16,
  rooms: 0,
  participants: 0,
  maxRooms: 100,
  draining: false,
  startedAt: new Date().toISOString(),
  ...over,
});

async function register(...records: NodeRecord[]) {
  for (const r of records) {
    await a.set(P + 'node:' + r.id, JSON.stringify(r), 'PX', 10_000);
    await a.sadd(P + 'nodes', r.id);
  }
}

const place = (client: Redis, room: string, avoid = '') => client.eval(PLACE_LUA, 1, P + 'room:' + room, P, room, GRACE, avoid) as Promise<string | null>;

beforeAll(async () => {
  redis = await startRedis('127.0.0.1');
  a = new Redis(redis.url);
  b = new Redis(redis.url);
});
afterAll(async () => {
  a?.disconnect();
  b?.disconnect();
  await redis?.stop();
});
beforeEach(async () => {
  await a.flushall();
});

describe('placement (PLACE_LUA)', () => {
  it('places a room on the least-loaded node, and keeps it there', async () => {
    await register(node('a', { loadCores: 0.9 }), node('b', { loadCores: 0.1 }), node('c', { loadCores: 0.4 }));
    expect(await place(a, 'r1')).toBe('b');
    expect(await a.get(P + 'room:r1')).toBe('b');
    expect(await a.pttl(P + 'room:r1')).toBeGreaterThan(GRACE - 1000);
    // Asked again, from anywhere: the same node, even when another is less loaded now.
    await register(node('c', { loadCores: 0 }));
    expect(await place(b, 'r1')).toBe('b');
  });

  it('counts committed joins with the measured load, and each room as one participant', async () => {
    // a: 0.05 + 0.48 committed (three joins) = 3.3 participants' worth; b: idle.
    await register(node('a', { pendingCores: 0.48 }), node('b'));
    const got = [];
    for (let i = 0; i < 8; i++) got.push(await place(a, `r${i}`));
    // b takes rooms until its room count outweighs a's load, then they alternate.
    expect(got.slice(0, 3)).toEqual(['b', 'b', 'b']);
    const on = (id: string) => got.filter((x) => x === id).length;
    expect(on('b') - on('a')).toBeGreaterThanOrEqual(2);
    expect(on('b') - on('a')).toBeLessThanOrEqual(4);
  });

  it('skips draining nodes, full nodes (MCU_MAX_ROOMS or CPU capacity), and a node that asks to be avoided', async () => {
    await register(node('a', { draining: true }), node('b', { maxRooms: 1 }), node('c', { loadCores: 1.5 }), node('d', { capacityCores: 0, loadCores: 5 }));
    // d has admission off (capacity 0): it always has room.
    expect(await place(a, 'r1')).toBe('b');
    expect(await place(a, 'r2')).toBe('d');
    expect(await place(a, 'r3', 'd')).toBe(null);
    // A draining node that still holds the placement of a room it closed hands it on.
    await register(node('a', { draining: false }));
    await a.set(P + 'room:r4', 'd', 'PX', GRACE);
    expect(await place(a, 'r4', 'd')).toBe('a');
  });

  it('places again a room whose node has left the registry', async () => {
    await register(node('a'), node('b', { loadCores: 1 }));
    expect(await place(a, 'r1')).toBe('a');
    await a.del(P + 'node:a');
    expect(await place(b, 'r1')).toBe('b');
    expect(await a.zrange(P + 'noderooms:a', 0, -1)).toEqual([]);
  });

  it('two clients racing for the same rooms 50 times get one answer each time', async () => {
    await register(node('a'), node('b'), node('c'));
    let disagreements = 0;
    for (let i = 0; i < 50; i++) {
      const [x, y] = await Promise.all([place(a, `race-${i}`), place(b, `race-${i}`)]);
      if (x !== y || x === null) disagreements++;
    }
    expect(disagreements).toBe(0);
    const counts = await Promise.all(['a', 'b', 'c'].map((id) => a.zcard(P + 'noderooms:' + id)));
    expect(counts.reduce((s, n) => s + n, 0)).toBe(50);
    expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(1);
  });
});
