import { spawn } from 'node:child_process';
import path from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchBrowser } from '../helpers/browser.js';
import { clusterCall, clusterFetch, joinThrough, startNode, startRedis, until, type ClusterNodeProcess, type ClusterPeer, type RedisProcess } from '../helpers/cluster.js';
import { apiCall, authFetch, joinToken, ROOT, TEST_API_KEY, TEST_API_SECRET } from '../helpers/server.js';

// One redis-server and three MCU nodes, each on its own loopback address, in the tests' network
// namespace. The tests run in order: later ones kill and drain nodes that earlier ones used.

let redis: RedisProcess;
let nodes: ClusterNodeProcess[] = [];
const extra: ClusterNodeProcess[] = [];
let browser: Browser | undefined;
const peers: ClusterPeer[] = [];
const byId = (id: string) => [...nodes, ...extra].find((n) => n.id === id)!;
const within = <T>(p: Promise<T>, ms: number, what: string) =>
  Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms).unref())]);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const nodesSeenBy = async (n: ClusterNodeProcess) => (await apiCall(n.url, 'GET', '/v1/nodes')).body as { nodes: Array<{ id: string; url: string; draining: boolean; rooms: number }> };

beforeAll(async () => {
  redis = await startRedis('127.0.0.1');
  nodes = await Promise.all(['127.0.0.2', '127.0.0.3', '127.0.0.4'].map((host, i) => startNode(`n${i + 2}`, host, redis.url, i)));
  await until(() => nodesSeenBy(nodes[0]), (b) => b.nodes?.length === 3, 10_000, 'three nodes registered');
});

afterAll(async () => {
  await browser?.close();
  await Promise.all(peers.map((p) => p.close().catch(() => undefined)));
  await Promise.all([...nodes, ...extra].map((n) => n.stop('SIGINT')));
  await redis?.stop();
});

describe('a cluster of three nodes through Redis', () => {
  it('each node registers its URL, ICE addresses, load and capacity, and every node sees the same registry', async () => {
    for (const n of nodes) {
      const { nodes: seen } = await until(() => nodesSeenBy(n), (b) => b.nodes?.length === 3, 5000, `${n.id} sees three`);
      expect(seen.map((x) => x.id).sort()).toEqual(['n2', 'n3', 'n4']);
      for (const x of seen as Array<Record<string, unknown>>) {
        const own = byId(String(x.id));
        expect(x.url).toBe(own.url);
        expect(x.iceAddresses).toEqual([own.host]);
        expect(x).toMatchObject({ draining: false, maxRooms: 100, participantCost: 0.16 });
        for (const k of ['loadCores', 'pendingCores', 'capacityCores']) expect(typeof x[k]).toBe('number');
      }
    }
  });

  it('30 rooms created through one node spread evenly over the three, each by one 307 to its node', async () => {
    const count: Record<string, number> = {};
    const redirectMs: number[] = [];
    const directMs: number[] = [];
    for (let i = 0; i < 30; i++) {
      const r = await clusterCall(nodes[0].url, 'POST', '/v1/rooms', { id: `spread-${i}` });
      expect(r.status).toBe(201);
      count[r.node!] = (count[r.node!] ?? 0) + 1;
      if (r.hops.length === 2) {
        expect(r.hops[0].status).toBe(307);
        expect(new URL(r.hops[1].url).origin).toBe(byId(r.node!).url);
        redirectMs.push(r.hops[0].ms);
      } else directMs.push(r.hops[0].ms);
    }
    console.log(`30 rooms: ${JSON.stringify(count)}; 307 answered in ${median(redirectMs).toFixed(1)} ms median (max ${Math.max(...redirectMs).toFixed(1)}), a local create in ${median(directMs).toFixed(1)} ms`);
    const spread = Object.values(count);
    expect(spread.length).toBe(3);
    expect(Math.max(...spread) - Math.min(...spread)).toBeLessThanOrEqual(2);
    // Every node lists the whole cluster, each room with its node.
    const all = await apiCall(nodes[2].url, 'GET', '/v1/rooms');
    const listed = all.body.rooms.filter((r: { id: string }) => r.id.startsWith('spread-'));
    expect(listed.length).toBe(30);
    for (const [node, n] of Object.entries(count)) expect(listed.filter((r: { node: string }) => r.node === node).length).toBe(n);
    // ?scope=node: one node's own rooms.
    const own = await apiCall(nodes[2].url, 'GET', '/v1/rooms?scope=node');
    expect(own.body.rooms.filter((r: { id: string }) => r.id.startsWith('spread-')).length).toBe(count.n4);
  });

  it('werift peers join through one node and land on the rooms\' nodes, where they get the composite and the mix', async () => {
    for (const room of ['w1', 'w2', 'w3']) {
      peers.push(await joinThrough(nodes[0].url, room, `${room}-a`, { audio: 'sendrecv', video: 'sendrecv' }));
      peers.push(await joinThrough(nodes[1].url, room, `${room}-b`, { audio: 'recvonly', video: 'recvonly' }));
    }
    for (let i = 0; i < peers.length; i += 2) expect(peers[i].node).toBe(peers[i + 1].node);
    const landed = new Set(peers.map((p) => p.node));
    console.log(`rooms w1-w3 on ${peers.filter((_, i) => i % 2 === 0).map((p) => p.node).join(', ')}`);
    expect(landed.size).toBeGreaterThanOrEqual(2);
    expect(peers.some((p) => p.node !== 'n2' && p.hops.length === 2)).toBe(true);
    await until(async () => peers.map((p) => p.received), (r) => r.every((x) => x.video > 30 && x.audio > 30), 20_000, 'media at every peer');
    // The participant's own resource is on its node; through another node it is redirected there.
    const p = peers.find((x) => x.node !== 'n4')!;
    const other = nodes.find((n) => n.id !== p.node)!;
    const own = await clusterCall(other.url, 'GET', p.location, undefined, p.token);
    expect(own.status).toBe(200);
    expect(own.node).toBe(p.node);
    expect(own.hops[0].status).toBe(307);
  });

  it('/metrics labels every series with its node', async () => {
    const res = await authFetch(nodes[1].url + '/metrics');
    const text = await res.text();
    expect(text).toMatch(/^mcu_rooms\{node="n3"\} \d+/m);
    expect(text).toMatch(/^process_cpu_seconds_total\{node="n3"\}/m);
  });

  it('two nodes racing for a room 50 times always agree on where it is', async () => {
    let disagreements = 0;
    const placedOn: Record<string, number> = {};
    for (let i = 0; i < 50; i++) {
      const [a, b] = [nodes[i % 3], nodes[(i + 1) % 3]];
      const id = `race-${i}`;
      const [x, y] = await Promise.all([clusterCall(a.url, 'POST', '/v1/rooms', { id }), clusterCall(b.url, 'POST', '/v1/rooms', { id })]);
      // One creates it, the other finds it there.
      expect([x.status, y.status].sort()).toEqual([201, 409]);
      if (x.node !== y.node) disagreements++;
      const where = await clusterCall(nodes[(i + 2) % 3].url, 'GET', `/v1/rooms/${id}`);
      expect(where.status).toBe(200);
      if (where.node !== x.node) disagreements++;
      placedOn[x.node!] = (placedOn[x.node!] ?? 0) + 1;
    }
    console.log(`50 races: ${disagreements} disagreements; placed on ${JSON.stringify(placedOn)}`);
    expect(disagreements).toBe(0);
  });

  it('the join page follows a redirect: served by one node, it joins a room placed on another', async () => {
    // A room that lands on another node than the one serving the page.
    let room = '';
    for (let i = 0; i < 6 && !room; i++) {
      const r = await clusterCall(nodes[0].url, 'POST', '/v1/rooms', { id: `page-${i}` });
      if (r.node !== 'n2') room = `page-${i}`;
    }
    expect(room).not.toBe('');
    const roomNode = (await clusterCall(nodes[0].url, 'GET', `/v1/rooms/${room}`)).node!;
    browser = await launchBrowser();
    const page = await browser.newPage();
    page.on('pageerror', (e) => console.error('[page]', e.message));
    const requests: string[] = [];
    page.on('request', (r) => r.url().includes('/participants') && requests.push(`${r.method()} ${new URL(r.url()).host} auth=${!!r.headers().authorization}`));
    const token = await joinToken(room, { name: 'Ada' });
    await page.goto(`${nodes[0].url}/?room=${room}#token=${token}`);
    await page.click('#go');
    await page.waitForFunction(() => document.getElementById('status')!.textContent === 'Connection: connected', undefined, { timeout: 20_000 });
    console.log(`page requests: ${requests.join(' | ')}`);
    const onNode = await until(() => apiCall(byId(roomNode).url, 'GET', `/v1/rooms/${room}`), (r) => r.body?.participants?.length === 1, 10_000, 'Ada in the room');
    expect(onNode.body.participants[0].name).toBe('Ada');
    await page.waitForFunction(() => (document.getElementById('remote') as HTMLVideoElement).videoWidth === 640, undefined, { timeout: 15_000 });
    // Later requests go to the participant's node: a layout choice, then Leave.
    await page.waitForFunction(() => (document.getElementById('layout') as HTMLSelectElement).options.length >= 5, undefined, { timeout: 5000 });
    await page.selectOption('#layout', 'speaker');
    const id = onNode.body.participants[0].id;
    await until(() => apiCall(byId(roomNode).url, 'GET', `/v1/rooms/${room}/participants/${id}/view`), (r) => r.body?.layout === 'speaker', 5000, 'speaker layout');
    await page.click('#leave');
    await until(() => apiCall(byId(roomNode).url, 'GET', `/v1/rooms/${room}`), (r) => r.body?.participants?.length === 0, 10_000, 'Ada gone');
    await page.close();
  });

  it('a recording on one node is listed by every node, and its file is served by its node through a redirect', async () => {
    const room = 'w1';
    const started = await clusterCall(nodes[0].url, 'POST', `/v1/rooms/${room}/recordings`, {});
    expect(started.status).toBe(201);
    const rec = started.body.id as string;
    const holder = started.node!;
    await until(() => apiCall(nodes[2].url, 'GET', '/v1/recordings'), (r) => r.body.recordings.some((x: { id: string; node: string; state: string }) => x.id === rec && x.node === holder && x.state === 'recording'), 10_000, 'listed by another node');
    await new Promise((r) => setTimeout(r, 2000)); // two seconds of media in the file
    expect((await clusterCall(nodes[1].url, 'POST', `/v1/rooms/${room}/recordings/${rec}/stop`)).body.state).toBe('done');
    const via = nodes.find((n) => n.id !== holder)!;
    const file = await clusterFetch(`${via.url}/v1/recordings/${rec}/file`, { headers: { Authorization: `Bearer test-admin-key-0123456789` } });
    expect(file.hops[0].status).toBe(307);
    expect(file.res.status).toBe(200);
    expect((await file.res.arrayBuffer()).byteLength).toBeGreaterThan(1000);
  });

  it('Redis stopped in the middle of a call: the call goes on, new rooms get 503 + Retry-After, and all recovers by itself when Redis is back', async () => {
    const p = peers[0];
    const node = byId(p.node);
    const before = p.received.video;
    await redis.stop('SIGKILL');
    const stoppedAt = Date.now();
    const refused = await until(() => apiCall(nodes[0].url, 'POST', '/v1/rooms', { id: 'while-down' }), (r) => r.status === 503, 5000, '503 while Redis is down');
    expect(refused.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(refused.body.error.code).toBe('cluster_unavailable');
    // The room on its node is served, and its media flows.
    expect((await apiCall(node.url, 'GET', `/v1/rooms/${p.location.split('/')[3]}`)).status).toBe(200);
    await until(async () => p.received.video, (v) => v > before + 60, 5000, 'video while Redis is down');
    await redis.restart();
    const back = await until(() => clusterCall(nodes[0].url, 'POST', '/v1/rooms', { id: 'after-redis' }), (r) => r.status === 201, 15_000, 'a room placed once Redis is back');
    console.log(`Redis down ${((Date.now() - stoppedAt) / 1000).toFixed(1)} s in all; placing again ${back.hops.length} hop(s) after restart`);
    await until(() => nodesSeenBy(nodes[2]), (b) => b.nodes?.length === 3, 5000, 'three nodes again');
    // The running room was claimed again by its node: another node redirects there.
    const other = nodes.find((n) => n.id !== node.id)!;
    const where = await until(() => clusterCall(other.url, 'GET', `/v1/rooms/${p.location.split('/')[3]}`), (r) => r.status === 200, 5000, 'room found again');
    expect(where.node).toBe(node.id);
  });

  it('SIGKILL: the node leaves the registry within 10 s, its rooms are placed again on the next join, its recordings are listed as interrupted with their node gone', async () => {
    const victim = nodes[2];
    // A room of its own, kept open by a recording.
    let room = '';
    for (let i = 0; i < 10 && !room; i++) {
      const r = await clusterCall(victim.url, 'POST', '/v1/rooms', { id: `victim-${i}` });
      if (r.node === victim.id) room = `victim-${i}`;
    }
    expect(room).not.toBe('');
    const started = await apiCall(victim.url, 'POST', `/v1/rooms/${room}/recordings`, {});
    expect(started.status).toBe(201);
    const rec = started.body.id as string;
    await until(() => apiCall(nodes[0].url, 'GET', '/v1/recordings'), (r) => r.body.recordings.some((x: { id: string; state: string }) => x.id === rec && x.state === 'recording'), 10_000, 'recording published');
    const t0 = Date.now();
    victim.proc.kill('SIGKILL');
    await until(() => nodesSeenBy(nodes[0]), (b) => !b.nodes.some((n) => n.id === victim.id), 10_000, 'killed node out of the registry', 50);
    const goneMs = Date.now() - t0;
    console.log(`SIGKILLed node left the registry after ${goneMs} ms`);
    expect(goneMs).toBeLessThan(10_000);
    nodes = nodes.filter((n) => n !== victim);
    const listed = (await apiCall(nodes[0].url, 'GET', '/v1/recordings')).body.recordings.find((x: { id: string }) => x.id === rec);
    expect(listed).toMatchObject({ node: victim.id, nodeGone: true, interrupted: true, state: 'done' });
    expect((await apiCall(nodes[1].url, 'GET', `/v1/recordings/${rec}`)).body).toMatchObject({ nodeGone: true, interrupted: true });
    const file = await authFetch(`${nodes[1].url}/v1/recordings/${rec}/file`);
    expect(file.status).toBe(503);
    // The next join of one of its rooms places it on a live node.
    const again = await joinThrough(nodes[0].url, room, 'again', { audio: 'recvonly', video: 'recvonly' });
    peers.push(again);
    expect(['n2', 'n3']).toContain(again.node);
  });

  it('SIGTERM drains: no new rooms there, the running room goes on until it empties, then the node leaves the registry and exits', async () => {
    const drainee = await joinThrough(nodes[0].url, 'drain-room', 'drainee', { audio: 'recvonly', video: 'recvonly' });
    peers.push(drainee);
    const target = byId(drainee.node);
    // Everyone on that node, so that it can empty.
    const mine = peers.filter((p) => p.node === target.id);
    const other = nodes.find((n) => n !== target)!;
    const exited = new Promise<number | null>((r) => target.proc.once('exit', (code) => r(code)));
    target.proc.kill('SIGTERM');
    await until(() => nodesSeenBy(other), (b) => b.nodes.find((n) => n.id === target.id)?.draining === true, 5000, 'draining in the registry');
    // A new room asked of the draining node goes to the other.
    const fresh = await clusterCall(target.url, 'POST', '/v1/rooms', { id: 'during-drain' });
    expect(fresh.status).toBe(201);
    expect(fresh.node).toBe(other.id);
    // Its running rooms go on.
    const before = mine.map((p) => p.received.video);
    await until(async () => mine.map((p) => p.received.video), (v) => v.every((x, i) => x > before[i] + 30), 5000, 'media while draining');
    const room = mine[0].location.split('/')[3];
    expect((await apiCall(target.url, 'GET', `/v1/rooms/${room}`)).status).toBe(200);
    // Once its people leave, it closes and leaves the registry at once (not by TTL).
    const t0 = Date.now();
    // The last to leave may find the node closing already (the others may have been removed before).
    const left = [];
    for (const p of mine) left.push(await p.leave().catch((e) => String(e.cause?.code ?? e)));
    console.log(`leaves on the draining node: ${left.join(', ')}`);
    expect(left[0]).toBe(204);
    expect(await within(exited, 15_000, 'the drained node to exit')).toBe(0);
    const exitMs = Date.now() - t0;
    const after = await nodesSeenBy(other);
    console.log(`drained node exited ${exitMs} ms after its last participant left; registry then: ${after.nodes.map((n) => n.id).join(',')}`);
    expect(after.nodes.some((n) => n.id === target.id)).toBe(false);
    nodes = nodes.filter((n) => n !== target);
    // Its room is placed again on the next join.
    const again = await joinThrough(other.url, room, 'after-drain', { audio: 'recvonly', video: 'recvonly' });
    peers.push(again);
    expect(again.node).toBe(other.id);
  });

  it('a Kubernetes preStop drains with `webrtc-mcu drain`: /readyz turns 503, the command returns when the node is empty, and SIGTERM then closes it at once', async () => {
    const n = await startNode('n8', '127.0.0.8', redis.url, 4);
    extra.push(n);
    await until(() => nodesSeenBy(nodes[0]), (b) => b.nodes.some((x) => x.id === 'n8'), 5000, 'n8 registered');
    expect((await fetch(`${n.url}/readyz`)).status).toBe(200);
    const p = await joinThrough(nodes[0].url, 'prestop', 'prestop', { audio: 'recvonly', video: 'recvonly' });
    expect(p.node).toBe('n8');
    const cli = spawn(path.join(ROOT, 'bin', 'mcu'), ['drain', '--url', n.url, '--timeout', '30'], {
      env: { ...process.env, NODE: process.execPath, MCU_API_KEY: TEST_API_KEY, MCU_API_SECRET: TEST_API_SECRET },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    cli.stderr!.on('data', (d) => (err += d));
    const done = new Promise<number | null>((r) => cli.once('exit', (code) => r(code)));
    await until(() => fetch(`${n.url}/readyz`).then((r) => r.status), (s) => s === 503, 15_000, 'not ready while draining');
    expect((await fetch(`${n.url}/healthz`)).status).toBe(200);
    await until(() => nodesSeenBy(nodes[0]), (b) => b.nodes.find((x) => x.id === 'n8')?.draining === true, 5000, 'draining in the registry');
    // Still running: the command waits for the room to empty.
    await new Promise((r) => setTimeout(r, 500));
    expect(cli.exitCode).toBeNull();
    expect(await p.leave()).toBe(204);
    expect(await within(done, 10_000, 'the drain command to return')).toBe(0);
    expect(err).toMatch(/no room left/);
    const exited = new Promise<number | null>((r) => n.proc.once('exit', (code) => r(code)));
    const t0 = Date.now();
    n.proc.kill('SIGTERM');
    expect(await within(exited, 10_000, 'n8 to exit')).toBe(0);
    console.log(`after the preStop drain, SIGTERM closed the node in ${Date.now() - t0} ms`);
  });

  it('MCU_DRAIN_SECONDS bounds a drain: a room that does not empty is closed when it passes', async () => {
    const n = await startNode('n9', '127.0.0.9', redis.url, 3, { MCU_DRAIN_SECONDS: '2' });
    extra.push(n);
    await until(() => nodesSeenBy(nodes[0]), (b) => b.nodes.some((x) => x.id === 'n9'), 5000, 'n9 registered');
    // The fresh node holds no room: the next new room is placed there.
    const p = await joinThrough(nodes[0].url, 'stays', 'stays', { audio: 'recvonly', video: 'recvonly' });
    peers.push(p);
    expect(p.node).toBe('n9');
    const exited = new Promise<number | null>((r) => n.proc.once('exit', (code) => r(code)));
    const t0 = Date.now();
    n.proc.kill('SIGTERM');
    expect(await within(exited, 15_000, 'n9 to exit')).toBe(0);
    const ms = Date.now() - t0;
    console.log(`drain with a room that stayed: exited after ${ms} ms (MCU_DRAIN_SECONDS=2)`);
    expect(ms).toBeGreaterThanOrEqual(2000);
    expect(ms).toBeLessThan(12_000);
  });
});
