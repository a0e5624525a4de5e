import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeOffer, joinWerift, type WeriftPeer } from '../helpers/weriftPeer.js';
import { apiCall, authFetch, joinToken, ROOT, startServerProcess, TEST_API_KEY, TEST_API_SECRET, type ServerProcess } from '../helpers/server.js';

// Who may do what (README, Security): the API key or an admin token for the operator's routes, a
// join token for its room's join, and the token a participant joined with for its own resource.

let server: ServerProcess;
const peers: WeriftPeer[] = [];
const join = async (room: string, name: string, opts: Parameters<typeof joinWerift>[3] = { audio: 'recvonly', video: 'recvonly' }) => {
  const p = await joinWerift(server.url, room, name, opts);
  peers.push(p);
  return p;
};

beforeAll(async () => {
  server = await startServerProcess();
});
afterAll(async () => {
  for (const p of peers) await p.close();
  expect(await server.stop()).toBe(0);
});

/** Every route but the join page, the OpenAPI document and preflight: all need a credential. */
const ROUTES: Array<[string, string]> = [
  ['POST', '/v1/rooms/r1/participants'],
  ['GET', '/v1/rooms'],
  ['POST', '/v1/rooms'],
  ['GET', '/v1/rooms/r1'],
  ['GET', '/v1/rooms/r1/participants/abc'],
  ['DELETE', '/v1/rooms/r1/participants/abc'],
  ['GET', '/v1/rooms/r1/participants/abc/view'],
  ['PUT', '/v1/rooms/r1/participants/abc/layout'],
  ['DELETE', '/v1/rooms/r1/participants/abc/layout'],
  ['PUT', '/v1/rooms/r1/participants/abc/pin'],
  ['PUT', '/v1/rooms/r1/layout'],
  ['PUT', '/v1/rooms/r1/pin'],
  ['DELETE', '/v1/rooms/r1/pin'],
  ['POST', '/v1/rooms/r1/recordings'],
  ['POST', '/v1/rooms/r1/recordings/x/stop'],
  ['GET', '/v1/recordings'],
  ['GET', '/v1/recordings/x'],
  ['GET', '/v1/recordings/x/file'],
  ['DELETE', '/v1/recordings/x'],
  ['GET', '/v1/layouts'],
  ['GET', '/v1/layouts/grid'],
  ['PUT', '/v1/layouts/mine'],
  ['DELETE', '/v1/layouts/mine'],
  ['POST', '/v1/tokens'],
  ['GET', '/metrics'],
];

async function expect401(res: Response) {
  expect(res.status).toBe(401);
  expect(res.headers.get('www-authenticate')).toMatch(/^Bearer\b/);
  return (await res.json()) as { error: { code: string; message: string } };
}

describe('credentials', () => {
  it('every route answers 401 with WWW-Authenticate: Bearer without a valid credential, and the same body whatever was wrong', async () => {
    const forged = await joinToken('r1', { secret: 'another-secret-another-secret-another-secret' });
    const expired = await joinToken('r1', { ttlSeconds: -120 });
    const otherIssuer = await joinToken('r1', { issuer: 'someone-else' });
    const [h, p] = (await joinToken('r1')).split('.');
    const unsigned = `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${p}.`;
    const tampered = `${h}.${Buffer.from(JSON.stringify({ video: { room: '*', roomAdmin: true }, role: 'admin', iss: 'webrtc-mcu', iat: 1, exp: 9e9 })).toString('base64url')}.${(await joinToken('r1')).split('.')[2]}`;
    const bad: Array<Record<string, string>> = [
      {},
      { Authorization: 'Bearer' },
      { Authorization: 'Bearer wrong-key-wrong-key' },
      { Authorization: `Basic ${Buffer.from(`admin:${TEST_API_KEY}`).toString('base64')}` },
      { Authorization: `Bearer ${TEST_API_KEY}x` },
      { Authorization: `Bearer ${forged}` },
      { Authorization: `Bearer ${expired}` },
      { Authorization: `Bearer ${otherIssuer}` },
      { Authorization: `Bearer ${unsigned}` },
      { Authorization: `Bearer ${tampered}` },
      { Authorization: `Bearer ${TEST_API_SECRET}` },
    ];
    const bodies = new Set<string>();
    for (const [method, route] of ROUTES) {
      for (const headers of bad) {
        const body = await expect401(await fetch(server.url + route, { method, headers }));
        bodies.add(JSON.stringify(body));
      }
    }
    expect(bodies.size).toBe(1);
    expect(JSON.parse([...bodies][0]).error.code).toBe('unauthorized');
    // The join page and the API description stay public.
    expect((await fetch(server.url + '/')).status).toBe(200);
    expect((await fetch(server.url + '/v1/openapi.json')).status).toBe(200);
  });

  it('a participant token joins its own room only, and reaches its own resource but no one else’s and no operator route', async () => {
    const token = await joinToken('auth-a', { name: 'Ann' });
    const ann = await join('auth-a', 'ignored', { audio: 'recvonly', video: 'recvonly', token });
    // The token names the participant: that name wins over ?name=.
    const bob = await join('auth-a', 'Bob');
    const rooms = await apiCall(server.url, 'GET', '/v1/rooms/auth-a');
    expect(rooms.body.participants.map((p: { name: string }) => p.name).sort()).toEqual(['Ann', 'Bob']);

    // Another room: 403, not 401 (the token is valid, only not for that).
    const offer = await makeOffer({ audio: 'recvonly' });
    const other = await authFetch(`${server.url}/v1/rooms/auth-b/participants`, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: offer.sdp }, token);
    await offer.pc.close();
    expect(other.status).toBe(403);
    expect((await other.json()).error.code).toBe('forbidden');

    const own = `/v1/rooms/auth-a/participants/${ann.id}`;
    expect((await apiCall(server.url, 'GET', own, undefined, token)).status).toBe(200);
    expect((await apiCall(server.url, 'GET', own + '/view', undefined, token)).status).toBe(200);
    expect((await apiCall(server.url, 'PUT', own + '/layout', { layout: 'speaker' }, token)).status).toBe(200);
    expect((await apiCall(server.url, 'DELETE', own + '/layout', undefined, token)).status).toBe(204);
    expect((await apiCall(server.url, 'GET', '/v1/layouts', undefined, token)).status).toBe(200);

    const bobs = `/v1/rooms/auth-a/participants/${bob.id}`;
    for (const [method, route, body] of [
      ['GET', bobs],
      ['GET', bobs + '/view'],
      ['PUT', bobs + '/layout', { layout: 'speaker' }],
      ['DELETE', bobs],
      ['GET', '/v1/rooms'],
      ['GET', '/v1/rooms/auth-a'],
      ['PUT', '/v1/rooms/auth-a/layout', { layout: 'grid' }],
      ['POST', '/v1/rooms/auth-a/recordings', {}],
      ['GET', '/v1/recordings'],
      ['PUT', '/v1/layouts/mine', { name: 'x', regions: [{ x: 0, y: 0, width: 1, height: 1 }] }],
      ['POST', '/v1/tokens', { room: 'auth-a', role: 'moderator' }],
      ['GET', '/metrics'],
    ] as Array<[string, string, unknown?]>) {
      const r = await apiCall(server.url, method, route, body, token).catch(() => ({ status: -1 }));
      expect(r.status, `${method} ${route}`).toBe(403);
    }
    // Its own WHIP resource: it may leave.
    expect(await ann.leave()).toBe(204);
    expect(await bob.leave()).toBe(204);
  });

  it('a viewer token joins to watch: the answer takes none of its media', async () => {
    const token = await joinToken('auth-v', { role: 'viewer' });
    const o = await makeOffer({ audio: 'sendrecv', video: 'sendrecv' });
    const res = await authFetch(`${server.url}/v1/rooms/auth-v/participants?name=Vee`, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: o.sdp }, token);
    expect(res.status).toBe(201);
    const answer = await res.text();
    // Both m-lines answered sendonly: the server sends the composite and the mix, and receives nothing.
    expect(answer.match(/^a=(sendrecv|sendonly|recvonly|inactive)$/gm)).toEqual(['a=sendonly', 'a=sendonly']);
    await o.pc.close();
    const room = await apiCall(server.url, 'GET', '/v1/rooms/auth-v');
    expect(room.body.participants[0].role).toBe('viewer');
  });

  it('a moderator token runs its room (and joins it), but no other room and nothing node-wide', async () => {
    const mod = await joinToken('auth-m', { role: 'moderator', name: 'Mod' });
    const guest = await join('auth-m', 'Guest');
    expect((await apiCall(server.url, 'GET', '/v1/rooms/auth-m', undefined, mod)).status).toBe(200);
    expect((await apiCall(server.url, 'PUT', '/v1/rooms/auth-m/layout', { layout: 'speaker' }, mod)).status).toBe(200);
    expect((await apiCall(server.url, 'GET', `/v1/rooms/auth-m/participants/${guest.id}/view`, undefined, mod)).status).toBe(200);
    const rec = await apiCall(server.url, 'POST', '/v1/rooms/auth-m/recordings', { width: 320, height: 180 }, mod);
    expect(rec.status).toBe(201);
    // It sees its room's recordings, and only those.
    const list = await apiCall(server.url, 'GET', '/v1/recordings', undefined, mod);
    expect(list.status).toBe(200);
    expect(list.body.recordings.every((r: { room: string }) => r.room === 'auth-m')).toBe(true);
    expect((await apiCall(server.url, 'POST', `/v1/rooms/auth-m/recordings/${rec.body.id}/stop`, undefined, mod)).status).toBe(200);
    expect((await apiCall(server.url, 'GET', `/v1/recordings/${rec.body.id}`, undefined, mod)).status).toBe(200);
    expect((await apiCall(server.url, 'DELETE', `/v1/rooms/auth-m/participants/${guest.id}`, undefined, mod)).status).toBe(204);
    for (const [method, route] of [
      ['GET', '/v1/rooms'],
      ['GET', '/v1/rooms/auth-a'],
      ['PUT', '/v1/rooms/auth-a/layout'],
      ['GET', '/metrics'],
      ['POST', '/v1/tokens'],
    ]) {
      expect((await apiCall(server.url, method, route, method === 'GET' ? undefined : { layout: 'grid' }, mod)).status, `${method} ${route}`).toBe(403);
    }
    // An admin token over every room ("*") is as good as the key.
    const admin = await joinToken('*', { role: 'admin' });
    expect((await apiCall(server.url, 'GET', '/v1/rooms', undefined, admin)).status).toBe(200);
    expect((await authFetch(`${server.url}/metrics`, {}, admin)).status).toBe(200);
  });

  it('POST /v1/tokens makes a join token that works, with its name, role and expiry', async () => {
    const made = await apiCall(server.url, 'POST', '/v1/tokens', { room: 'auth-t', name: 'Tess', role: 'participant', ttlSeconds: 600 });
    expect(made.status).toBe(201);
    const expires = Date.parse(made.body.expiresAt);
    expect(expires - Date.now()).toBeGreaterThan(590_000);
    expect(expires - Date.now()).toBeLessThan(610_000);
    const tess = await join('auth-t', 'x', { audio: 'recvonly', token: made.body.token });
    expect((await apiCall(server.url, 'GET', `/v1/rooms/auth-t/participants/${tess.id}`, undefined, made.body.token)).body.name).toBe('Tess');
    expect(await tess.leave()).toBe(204);
    for (const bad of [{}, { room: 'a b' }, { room: 'x', role: 'god' }, { room: 'x', ttlSeconds: 0 }, { room: 'x', ttlSeconds: 1e9 }, { room: 'x', extra: 1 }]) {
      expect((await apiCall(server.url, 'POST', '/v1/tokens', bad)).status, JSON.stringify(bad)).toBe(400);
    }
  });

  it('`webrtc-mcu token` prints a token signed with the server’s secret, and a join link', async () => {
    const { stdout, stderr } = await promisify(execFile)(path.join(ROOT, 'bin', 'mcu'), ['token', '--room', 'auth-cli', '--name', 'Cleo', '--role', 'viewer'], {
      env: { ...process.env, NODE: process.execPath, MCU_API_KEY: TEST_API_KEY, MCU_API_SECRET: TEST_API_SECRET },
    });
    const token = stdout.trim();
    expect(token.split('.')).toHaveLength(3);
    expect(stderr).toContain(`?room=auth-cli#token=${token}`);
    const cleo = await join('auth-cli', 'x', { audio: 'recvonly', token });
    const me = await apiCall(server.url, 'GET', `/v1/rooms/auth-cli/participants/${cleo.id}`, undefined, token);
    expect(me.body).toMatchObject({ name: 'Cleo', role: 'viewer' });
    const usage = await promisify(execFile)(path.join(ROOT, 'bin', 'mcu'), ['token'], { env: { ...process.env, NODE: process.execPath } }).catch((e) => e);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/usage: webrtc-mcu token --room ROOM/);
  });

  it('CORS answers the allow-listed origins only; MCU_METRICS_PUBLIC opens /metrics and nothing else', async () => {
    const s = await startServerProcess({ MCU_CORS_ORIGINS: 'https://app.example,https://other.example', MCU_METRICS_PUBLIC: '1' });
    try {
      expect((await fetch(`${s.url}/metrics`)).status).toBe(200);
      expect((await fetch(`${s.url}/v1/rooms`)).status).toBe(401);
      const preflight = await fetch(`${s.url}/v1/rooms/x/participants`, {
        method: 'OPTIONS',
        headers: { Origin: 'https://app.example', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization,content-type' },
      });
      expect(preflight.status).toBe(204);
      expect(preflight.headers.get('access-control-allow-origin')).toBe('https://app.example');
      expect(preflight.headers.get('access-control-allow-headers')).toMatch(/Authorization/i);
      const post = await fetch(`${s.url}/v1/layouts`, { headers: { Origin: 'https://app.example', Authorization: `Bearer ${TEST_API_KEY}` } });
      expect(post.headers.get('access-control-expose-headers')).toMatch(/Location/);
      const stranger = await fetch(`${s.url}/v1/layouts`, { headers: { Origin: 'https://evil.example', Authorization: `Bearer ${TEST_API_KEY}` } });
      expect(stranger.headers.get('access-control-allow-origin')).toBeNull();
    } finally {
      await s.stop();
    }
    // Without an allow-list: no CORS headers at all.
    const none = await fetch(`${server.url}/v1/layouts`, { headers: { Origin: 'https://app.example', Authorization: `Bearer ${TEST_API_KEY}` } });
    expect(none.headers.get('access-control-allow-origin')).toBeNull();
  });
});

/** The server's output once it matches `re` (what it prints after "listening on"). */
async function printed(s: ServerProcess, re: RegExp): Promise<string> {
  const deadline = Date.now() + 5000;
  while (!re.test(s.output())) {
    if (Date.now() > deadline) throw new Error(`not printed: ${re}\n${s.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return s.output();
}

describe('out of the box', () => {
  it('with no key configured, the first start generates one into a file only its owner can read, prints it once, and prints a join link that works', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcu-secrets-'));
    const file = path.join(dir, 'state', 'secrets.json');
    const env = { MCU_API_KEY: '', MCU_API_SECRET: '', MCU_SECRETS_FILE: file };
    const first = await startServerProcess(env);
    let key: string;
    try {
      const out = await printed(first, /#token=\S+[\s\S]*Admin API key/);
      key = /Admin API key \(shown this once[^\n]*\n\s+(\S+)/.exec(out)![1];
      const link = /(http:\/\/\S+\?room=demo#token=\S+)/.exec(out)![1];
      expect(fs.statSync(file).mode & 0o777).toBe(0o600);
      expect(fs.statSync(path.dirname(file)).mode & 0o077).toBe(0);
      expect(JSON.parse(fs.readFileSync(file, 'utf8')).apiKey).toBe(key);
      expect((await apiCall(first.url, 'GET', '/v1/rooms', undefined, key)).status).toBe(200);
      expect((await apiCall(first.url, 'GET', '/v1/rooms', undefined, TEST_API_KEY)).status).toBe(401);
      // The link's token joins room "demo".
      const token = new URL(link).hash.replace('#token=', '');
      const p = await joinWerift(first.url, 'demo', 'Linda', { audio: 'recvonly', token });
      await p.close();
      expect((await apiCall(first.url, 'GET', '/v1/rooms/demo', undefined, key)).body.participants).toHaveLength(1);
    } finally {
      expect(await first.stop()).toBe(0);
    }
    // A restart keeps the key, and does not print it again.
    const second = await startServerProcess(env);
    try {
      await printed(second, /Admin API key: in/);
      expect(second.output()).not.toContain(key);
      expect(second.output()).toContain(`Admin API key: in ${file}`);
      expect((await apiCall(second.url, 'GET', '/v1/rooms', undefined, key)).status).toBe(200);
    } finally {
      expect(await second.stop()).toBe(0);
    }
  });
});
