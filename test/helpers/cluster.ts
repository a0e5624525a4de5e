import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { authHeaders, joinToken, startServerProcess, TEST_API_KEY, type ServerProcess } from './server.js';
import { completeJoin, makeOffer, type PeerOptions, type WeriftPeer } from './weriftPeer.js';

/** A free TCP port on `host` (closed again before it is returned). */
export function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

export interface RedisProcess {
  url: string;
  proc: ChildProcess;
  /** Stops it (SIGTERM unless told) and waits for it to exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Starts it again on the same address and port, empty (no persistence). */
  restart(): Promise<void>;
}

/** Debian's redis-server on a loopback address and a free port, in a temp dir, without persistence. */
export async function startRedis(host = '127.0.0.1'): Promise<RedisProcess> {
  const port = await freePort(host);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcu-redis-'));
  const r: RedisProcess = {
    url: `redis://${host}:${port}`,
    proc: undefined as unknown as ChildProcess,
    async stop(signal = 'SIGTERM') {
      const p = r.proc;
      if (p.exitCode !== null || p.signalCode !== null) return;
      await new Promise<void>((resolve) => {
        p.once('exit', () => resolve());
        p.kill(signal);
      });
    },
    async restart() {
      r.proc = await spawnRedis(host, port, dir);
    },
  };
  r.proc = await spawnRedis(host, port, dir);
  return r;
}

async function spawnRedis(host: string, port: number, dir: string): Promise<ChildProcess> {
  const proc = spawn('redis-server', ['--bind', host, '--port', String(port), '--dir', dir, '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--loglevel', 'warning'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  // Ready once it accepts a connection.
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`redis-server exited: ${out}`);
    const ok = await new Promise<boolean>((resolve) => {
      const c = net.connect(port, host, () => {
        c.end();
        resolve(true);
      });
      c.once('error', () => resolve(false));
    });
    if (ok) return proc;
    if (Date.now() > deadline) throw new Error(`redis-server did not start: ${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface ClusterNodeProcess extends ServerProcess {
  id: string;
  host: string;
}

/** One MCU node of a test cluster: HTTP and ICE on its own loopback address, its own RTC port range. */
export async function startNode(id: string, host: string, redisUrl: string, index: number, env: Record<string, string> = {}): Promise<ClusterNodeProcess> {
  const base = 43000 + index * 300;
  const s = await startServerProcess({
    HOST: host,
    MCU_ICE_ADDRESSES: host,
    MCU_RTC_PORTS: `${base}-${base + 299}`,
    MCU_REDIS_URL: redisUrl,
    MCU_NODE_ID: id,
    ...env,
  });
  return Object.assign(s, { id, host });
}

export interface Hop {
  url: string;
  status: number;
  ms: number;
}

/**
 * fetch that follows 307/308 itself, sending the same method, body and Authorization to the new
 * node, as a WHIP client that trusts the cluster does (fetch drops Authorization when a redirect
 * crosses origins, and nodes are different origins). Returns the last response and every hop.
 */
export async function clusterFetch(url: string, init: RequestInit = {}, maxHops = 3): Promise<{ res: Response; hops: Hop[] }> {
  const hops: Hop[] = [];
  let at = url;
  for (;;) {
    const t0 = performance.now();
    const res = await fetch(at, { ...init, redirect: 'manual' });
    hops.push({ url: at, status: res.status, ms: performance.now() - t0 });
    if ((res.status === 307 || res.status === 308) && hops.length <= maxHops) {
      await res.body?.cancel();
      at = new URL(res.headers.get('location')!, at).toString();
      continue;
    }
    return { res, hops };
  }
}

/** A JSON API call through the cluster (admin key, or `token`), following redirects with the credential. */
export async function clusterCall(base: string, method: string, p: string, body?: unknown, token: string = TEST_API_KEY) {
  const { res, hops } = await clusterFetch(base + p, {
    method,
    headers: { ...authHeaders(token), ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = text;
  }
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  return { status: res.status, body: parsed as any, headers: res.headers, node: res.headers.get('x-mcu-node'), hops };
}

export interface ClusterPeer extends WeriftPeer {
  /** The node that answered the join, and its base URL. */
  node: string;
  nodeUrl: string;
  hops: Hop[];
}

/** Joins by WHIP through `baseUrl`, following a redirect to the room's node with the same offer and token. */
export async function joinThrough(baseUrl: string, room: string, name: string, opts: PeerOptions & { token?: string }): Promise<ClusterPeer> {
  const token = opts.token ?? (await joinToken(room));
  const o = await makeOffer(opts);
  const { res, hops } = await clusterFetch(`${baseUrl}/v1/rooms/${room}/participants?name=${encodeURIComponent(name)}`, {
    method: 'POST',
    headers: { ...authHeaders(token), 'Content-Type': 'application/sdp' },
    body: o.sdp,
  });
  const nodeUrl = new URL(hops[hops.length - 1].url).origin;
  const peer = await completeJoin(o, res, nodeUrl, token);
  return Object.assign(peer, { node: res.headers.get('x-mcu-node')!, nodeUrl, hops });
}

/** Polls `fn` until `ok` holds, or throws with the last value after `ms`. */
export async function until<T>(fn: () => Promise<T>, ok: (v: T) => boolean, ms: number, what: string, everyMs = 100): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms: ${what}: ${JSON.stringify(v)?.slice(0, 2000)}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
