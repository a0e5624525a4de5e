import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SignJWT } from 'jose';

/** The test servers' credentials: tests use them as a client's backend would. */
export const TEST_API_KEY = 'test-admin-key-0123456789';
export const TEST_API_SECRET = 'test-api-secret-0123456789-0123456789-abcdef';

export type TestRole = 'participant' | 'viewer' | 'moderator' | 'admin';
const ROLE_GRANTS: Record<TestRole, Record<string, boolean>> = {
  participant: { roomJoin: true, canPublish: true, canSubscribe: true, roomRecord: false, roomAdmin: false },
  viewer: { roomJoin: true, canPublish: false, canSubscribe: true, roomRecord: false, roomAdmin: false },
  moderator: { roomJoin: true, canPublish: true, canSubscribe: true, roomRecord: true, roomAdmin: true },
  admin: { roomJoin: false, canPublish: false, canSubscribe: false, roomRecord: true, roomAdmin: true },
};

/**
 * A join token signed with the test servers' secret, as an operator's backend signs them (LiveKit
 * style: the grants in the `video` claim). `grants` overrides the role's, `ttlSeconds` may be negative
 * (an expired token), `secret` another key (a forged one).
 */
export async function joinToken(
  room: string,
  opts: { name?: string; role?: TestRole; ttlSeconds?: number; grants?: Record<string, boolean>; secret?: string; issuer?: string } = {},
): Promise<string> {
  const role = opts.role ?? 'participant';
  const now = Math.floor(Date.now() / 1000);
  const ttl = opts.ttlSeconds ?? 3600;
  const jwt = new SignJWT({ video: { room, ...ROLE_GRANTS[role], ...opts.grants }, role, ...(opts.name ? { name: opts.name } : {}) })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuer(opts.issuer ?? 'webrtc-mcu')
    .setIssuedAt(Math.min(now, now + ttl - 60))
    .setExpirationTime(now + ttl);
  return jwt.sign(new TextEncoder().encode(opts.secret ?? TEST_API_SECRET));
}

/** `Authorization: Bearer` with the admin key, or the given token. */
export const authHeaders = (token: string = TEST_API_KEY): Record<string, string> => ({ Authorization: `Bearer ${token}` });

/** fetch with the admin key (or `token`), for the tests' raw requests. */
export function authFetch(url: string, init: RequestInit = {}, token?: string): Promise<Response> {
  return fetch(url, { ...init, headers: { ...authHeaders(token), ...(init.headers as Record<string, string> | undefined) } });
}

export const ROOT = path.resolve(import.meta.dirname, '..', '..');

export interface ServerProcess {
  url: string;
  proc: ChildProcess;
  output: () => string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts the real server (bin/mcu, built dist/) on a free port, ICE on 127.0.0.1 only. */
export async function startServerProcess(env: Record<string, string> = {}, opts: { pinCpu?: boolean } = {}): Promise<ServerProcess> {
  const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'mcu-test-'));
  // MCU_TEST_NODE_ARGS passes extra flags to the server's node (e.g. --cpu-prof) when investigating.
  const nodeArgs = (process.env.MCU_TEST_NODE_ARGS ?? '').split(' ').filter(Boolean);
  // With browsers in the test, the server gets CPU 0 and the browsers the last CPU
  // (test/helpers/chromium.sh), so on this 2-core machine neither starves the other, as a server
  // and its remote users would not.
  const pin = opts.pinCpu && os.cpus().length > 1 ? ['taskset', '-c', '0'] : [];
  const [cmd, ...args] = [...pin, path.join(ROOT, 'bin', 'mcu')];
  const proc = spawn(cmd, args, {
    cwd: ROOT,
    env: {
      ...process.env,
      HOST: '127.0.0.1',
      PORT: '0',
      MCU_ICE_ADDRESSES: '127.0.0.1',
      MCU_RTC_PORTS: '42000-42999',
      MCU_CACHE_DIR: path.join(cache, 'cache'),
      MCU_RECORDINGS_DIR: path.join(cache, 'recordings'),
      MCU_SECRETS_FILE: path.join(cache, 'secrets.json'),
      MCU_API_KEY: TEST_API_KEY,
      MCU_API_SECRET: TEST_API_SECRET,
      // Tests join many peers from one address in a burst; the join-rate limit has its own test.
      MCU_JOINS_PER_SECOND: '1000',
      // Admission by CPU has its own test: elsewhere the browsers and load generators that share
      // this 2-core machine with the server would make it refuse joins at random.
      MCU_CPU_BUDGET: '0',
      LOG_LEVEL: 'info',
      NODE: process.execPath,
      MCU_NODE_ARGS: nodeArgs.join(' '),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  // MCU_TEST_SERVER_LOG=file keeps the whole server log for debugging; `out` keeps the tail.
  const logFile = process.env.MCU_TEST_SERVER_LOG ? fs.createWriteStream(process.env.MCU_TEST_SERVER_LOG) : undefined;
  const collect = (d: Buffer) => {
    logFile?.write(d);
    out = (out + d).slice(-200_000);
  };
  proc.stdout!.on('data', collect);
  proc.stderr!.on('data', collect);
  const url = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`server did not start:\n${out}`)), 40_000);
    const check = () => {
      const m = /listening on (http:\/\/[^\s]+)/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(m[1].replace(/\/$/, ''));
      }
    };
    proc.stdout!.on('data', check);
    proc.once('exit', (code) => reject(new Error(`server exited with ${code}:\n${out}`)));
  });
  return {
    url,
    proc,
    output: () => out,
    stop: (signal = 'SIGTERM') =>
      new Promise((resolve) => {
        if (proc.exitCode !== null) return resolve(proc.exitCode);
        proc.once('exit', (code) => resolve(code));
        proc.kill(signal);
        setTimeout(() => proc.kill('SIGKILL'), 12_000).unref();
      }),
  };
}

/**
 * One JSON API call with the admin key (or `token`; null sends none): a string body goes as it is
 * (to send malformed JSON), anything else as JSON. Returns the status, the parsed body (undefined when empty) and the headers.
 */
export async function apiCall(base: string, method: string, p: string, body?: unknown, token: string | null = TEST_API_KEY) {
  const res = await fetch(base + p, {
    method,
    headers: { ...(token === null ? {} : authHeaders(token)), ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined, headers: res.headers };
}
