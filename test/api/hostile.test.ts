import fc from 'fast-check';
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateBody } from '../../src/http/openapi.js';
import { authFetch, joinToken, startServerProcess, TEST_API_KEY, type ServerProcess } from '../helpers/server.js';
import { joinWerift, makeOffer, type WeriftPeer } from '../helpers/weriftPeer.js';

/**
 * Hostile input against the real server, property-based (fast-check): malformed and adversarial
 * SDP offers, JSON bodies for every JSON route, names and query strings, path tricks in ids, and
 * forged credentials. Every response is a 2xx/4xx (an error with a JSON body), none takes over 1 s,
 * and the server is alive and has logged no 500 at the end. The counts and latencies are printed.
 */

let server: ServerProcess;
const ROOM = 'fz';
let viewer: WeriftPeer;
let recordingId: string;
/** A werift offer (audio and video, sendrecv) and a Chromium-like one, to mutate. */
let weriftOffer: string;
let publisherOffer: string;

const stats = { cases: 0, requests: 0, joins: 0, latencies: [] as number[], statuses: new Map<number, number>(), slowest: { ms: 0, what: '' } };
const perProperty: Array<[string, number]> = [];

/** The fuzz reproducible: FC_SEED=<n> replays a run (the seed is printed on a failure). */
const seed = process.env.FC_SEED ? Number(process.env.FC_SEED) : undefined;
const runs = async <T extends [unknown, ...unknown[]]>(name: string, numRuns: number, prop: fc.IAsyncPropertyWithHooks<T>, examples: T[] = []) => {
  await fc.assert(prop, { numRuns, seed, examples });
  perProperty.push([name, numRuns]);
  stats.cases += numRuns;
};

interface Sent {
  status: number;
  text: string;
  headers: Headers;
}

/**
 * One request, timed: asserts a 2xx/3xx/4xx (never 5xx), a JSON error body on a 4xx, and under 1 s.
 * `token` null sends no Authorization; `auth` sends that header value as it is.
 */
async function send(
  method: string,
  path: string,
  opts: { body?: string | Uint8Array; type?: string; token?: string | null; auth?: string } = {},
): Promise<Sent> {
  const headers: Record<string, string> = {};
  if (opts.auth !== undefined) headers.Authorization = opts.auth;
  else if (opts.token !== null) headers.Authorization = `Bearer ${opts.token ?? TEST_API_KEY}`;
  if (opts.type !== undefined) headers['Content-Type'] = opts.type;
  const t0 = performance.now();
  const res = await fetch(server.url + path, { method, headers, body: opts.body as BodyInit | undefined, redirect: 'manual' });
  const text = await res.text();
  const ms = performance.now() - t0;
  stats.requests++;
  stats.latencies.push(ms);
  stats.statuses.set(res.status, (stats.statuses.get(res.status) ?? 0) + 1);
  const what = `${method} ${path.slice(0, 200)} -> ${res.status}`;
  if (ms > stats.slowest.ms) stats.slowest = { ms, what };
  expect(res.status, `${what}: ${text.slice(0, 300)}`).toBeLessThan(500);
  // Outside the API (/v1, /metrics) the static files answer, and their 404 is express's HTML page.
  if (res.status >= 400 && /^\/(v1|metrics)\b/.test(path)) {
    expect(res.headers.get('content-type'), what).toMatch(/^application\/json/);
    const body = JSON.parse(text) as { error: { code: unknown; message: unknown } };
    expect(typeof body.error.code, what).toBe('string');
    expect(typeof body.error.message, what).toBe('string');
  }
  expect(ms, `${what} took ${Math.round(ms)} ms`).toBeLessThan(1000);
  return { status: res.status, text, headers: res.headers };
}

/** Percent-encodes every byte of the UTF-8 form that is not unreserved (lone surrogates become U+FFFD). */
const pct = (s: string) => [...Buffer.from(s, 'utf8')].map((b) => (/[A-Za-z0-9_.~-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`)).join('');

/** Characters that mean something to GStreamer's launch syntax, HTTP, XML, terminals and text layout. */
const NASTY = [
  '!', '"', "'", '\\', ' ', '\t', '\n', '\r', '=', '&', '%', '#', '?', '/', '.', ',', ';', '(', ')', '{', '}', '<', '>', '+', '$', '`', '*',
  '\u0000', '\u0001', '\u001b', '\u007f', '\u0085', '\u00a0', '\u200b', '\u200d', '\u2028', '\u202e', '\u2066', '\ufeff', '\ufffe', '\uffff',
  '\ud800', '\udfff', '😀', '👩‍👩‍👧', '🏳️‍🌈', 'é', 'ß', 'İ', 'ﷺ', '\u0301',
];
const SNIPPETS = [
  '! fakesink', ' ! fakesink ', 'name=x', ' name=x', 'location=/tmp/x', '" ! filesink location="/tmp/pwn', '\\"', '\\', '( fakesrc )', 'a. ! b.',
  'sink_0::xpos=1', 'mux.', '..', '../..', '%2F', '%2e%2e', '%00', '%', '%zz', '%ED%A0%80', '%EF%BF%BE', '%C0%AE', 'name=', '&name=x', '__proto__', 'constructor', 'prototype',
];
/** A hostile text: random, made of the characters above, GStreamer and path syntax, or very long. */
const hostile = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: fc.constantFrom(...NASTY), maxLength: 20 }),
  fc.array(fc.oneof(fc.constantFrom(...SNIPPETS, ...NASTY), fc.string({ maxLength: 5 })), { maxLength: 8 }).map((a) => a.join('')),
  fc.string({ unit: 'grapheme', maxLength: 30 }),
  fc.constantFrom('', 'x'.repeat(65), 'é'.repeat(65), 'x'.repeat(5000), '\u202egnp.exe', 'a\u200bb', 'Robert"); DROP TABLE--'),
);
/** An id in a URL path: percent-encoded hostile text, or a raw trick the URL parser and router see as it is. */
const pathId = fc.oneof(
  { weight: 3, arbitrary: hostile.filter((s) => s.length > 0).map(pct) },
  { weight: 2, arbitrary: fc.constantFrom('..', '.', '%2e%2e', '%2F', '..%2F..%2Fetc%2Fpasswd', '%00', 'a%00b', '%', '%zz', '%ED%A0%80', '%C0%AE%C0%AE', '%252F', 'x'.repeat(300), '%E2%80%AE', '__proto__', 'constructor', 'hasOwnProperty', 'toString', 'grid', 'fz-none', 'speaker;x', 'a b'.replace(' ', '%20')) },
  { weight: 1, arbitrary: fc.stringMatching(/^[A-Za-z0-9_-]{1,70}$/) },
);

/** JSON values of every shape: random ones, prototype keys, deep nesting, huge strings, near-valid fields. */
const protoKeys = fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'valueOf', 'hasOwnProperty', '__defineGetter__');
const deep = fc.integer({ min: 20, max: 200 }).map((n) => JSON.parse('['.repeat(n) + ']'.repeat(n)) as unknown);
/** Nesting deeper than anyone's stack likes, as raw text (a value this deep overflows the test's own stack). */
const deepText = fc.tuple(fc.integer({ min: 1000, max: 100_000 }), fc.constantFrom('[', '{"a":')).map(([n, open]) => open.repeat(n) + '1' + (open === '[' ? ']' : '}').repeat(n));
const jsonish: fc.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue(),
  fc.anything({ withNullPrototype: true, withObjectString: true }),
  fc.dictionary(fc.oneof(protoKeys, hostile), fc.oneof(fc.jsonValue(), fc.dictionary(protoKeys, fc.jsonValue()))),
  fc.record({ __proto__: fc.record({ isAdmin: fc.constant(true), layout: fc.constant('grid') }) }, { requiredKeys: [] }),
  deep,
  fc.constantFrom('x'.repeat(70_000), 'é'.repeat(10_000)),
);
/** A value for a field: the right type, near it, or anything. */
const field = fc.oneof(
  hostile,
  fc.constantFrom('grid', 'speaker', 'webm', 'mp4', 'participant', 'viewer', 'moderator', 'admin', '*', null, true, false, 0, -1, 1.5, 1e308, 2 ** 53, 160, 1920, 1080, 30, 61),
  fc.integer(),
  fc.double(),
  fc.jsonValue({ maxDepth: 2 }),
  fc.record({ toString: fc.constant(1) }),
);
/** An object built from a route's own field names, plus stray and prototype keys. */
const shaped = (keys: string[]) =>
  fc
    .tuple(fc.dictionary(fc.constantFrom(...keys), field, { maxKeys: keys.length }), fc.dictionary(fc.oneof(protoKeys, hostile), field, { maxKeys: 2 }), fc.boolean())
    .map(([a, b, extra]) => (extra ? { ...a, ...b } : a));

/** A body as sent: JSON of a value, or raw text that is not JSON at all. */
const rawJson = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 100 }),
  deepText,
  fc.constantFrom('', '{', '}', '{"a":', '{"a":1,}', "{'a':1}", '[1,2', 'null', 'true', '1', '"str"', 'NaN', '{"__proto__":{"x":1}}', '\ufeff{}', '{"a":1}{"b":2}', '{"a":"\\ud800"}', '{"a":"\\u0000"}', '{"a":1e999999}'),
  fc.tuple(jsonish, fc.double({ min: 0, max: 1, noNaN: true })).map(([v, f]) => {
    const s = JSON.stringify(v) ?? 'undefined';
    return s.slice(0, Math.floor(f * s.length));
  }),
);
const body = (value: fc.Arbitrary<unknown>) =>
  fc.oneof({ weight: 4, arbitrary: value.map((v) => ({ raw: JSON.stringify(v) ?? 'null', type: 'application/json' })) }, { weight: 1, arbitrary: fc.record({ raw: rawJson, type: fc.constantFrom('application/json', 'application/json; charset=utf-16', 'text/plain', 'application/x-www-form-urlencoded', 'application/sdp', 'application/json; charset=latin1') }) });

beforeAll(async () => {
  server = await startServerProcess({ MCU_MAX_ROOMS: '100000' });
  const w = await makeOffer({ audio: 'sendrecv', video: 'sendrecv' });
  weriftOffer = w.sdp;
  await w.pc.close();
  const p = await makeOffer({ audio: 'sendonly', video: 'sendonly' });
  publisherOffer = p.sdp;
  await p.pc.close();
  // A room with a real viewer (its composite draws everyone's name plate) and a running recording,
  // so that the routes that need one reach their handlers.
  viewer = await joinWerift(server.url, ROOM, 'Viewer', { audio: 'recvonly', video: 'recvonly' });
  // (Set-up, not a case: it is not timed.)
  const rec = await authFetch(`${server.url}/v1/rooms/${ROOM}/recordings`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ width: 320, height: 180, fps: 10 }) });
  expect(rec.status).toBe(201);
  recordingId = ((await rec.json()) as { id: string }).id;
}, 60_000);

afterAll(async () => {
  if (recordingId) await authFetch(`${server.url}/v1/rooms/${ROOM}/recordings/${recordingId}/stop`, { method: 'POST' });
  if (viewer) {
    await viewer.leave();
    await viewer.close();
  }
  const sorted = [...stats.latencies].sort((a, b) => a - b);
  const p = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
  console.log(
    `hostile input: ${stats.cases} cases, ${stats.requests} requests, ${stats.joins} real joins; latency median ${p(0.5).toFixed(1)} ms, ` +
      `p99 ${p(0.99).toFixed(1)} ms, max ${(sorted.at(-1) ?? 0).toFixed(1)} ms (${stats.slowest.what}); statuses ${JSON.stringify(Object.fromEntries([...stats.statuses].sort((a, b) => a[0] - b[0])))}\n` +
      perProperty.map(([n, c]) => `  ${c}\t${n}`).join('\n'),
  );
  if (server) {
    // The server is alive and answers, and logged no 500.
    expect(server.proc.exitCode).toBeNull();
    expect((await fetch(`${server.url}/v1/openapi.json`)).status).toBe(200);
    expect(server.output()).not.toMatch(/\[http\].* failed: |-> 5\d\d|died|uncaught|unhandled/i);
    const exited = new Promise<string>((res) => server.proc.once('exit', (code, signal) => res(`${code} ${signal}`)));
    await server.stop();
    expect(await exited).toBe('0 null');
  }
}, 60_000);

/** An SDP offer, mutated: each mutation turns lines into other lines. */
type Mutation = (lines: string[]) => string[];
const lineIndex = (n: number) => fc.nat({ max: Math.max(0, n - 1) });
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  // Truncated anywhere (the rest of the line too).
  fc.double({ min: 0, max: 1, noNaN: true }).map((f) => (ls: string[]) => ls.join('\n').slice(0, Math.floor(f * ls.join('\n').length)).split('\n')),
  // An m-section duplicated, up to many times.
  fc.integer({ min: 1, max: 40 }).map((k) => (ls: string[]) => {
    const start = ls.findIndex((l) => l.startsWith('m='));
    return start < 0 ? ls : [...ls, ...Array.from({ length: k }, () => ls.slice(start)).flat()];
  }),
  // A line removed by its kind.
  fc.constantFrom('a=ice-ufrag', 'a=ice-pwd', 'a=fingerprint', 'a=rtpmap', 'a=mid', 'a=group', 'v=', 'o=', 'm=audio', 'm=video', 'c=', 'a=setup', 'a=fmtp', 's=', 't=').map((p) => (ls: string[]) => ls.filter((l) => !l.startsWith(p))),
  // Fingerprints: wrong hash, wrong length, garbage.
  fc.oneof(hostile, fc.constantFrom('sha-256 00', 'md5 AB:CD', 'sha-512', '', 'sha-256 ' + 'ZZ:'.repeat(32), 'sha-256 ' + 'AB:'.repeat(5000))).map((v) => (ls: string[]) => ls.map((l) => (l.startsWith('a=fingerprint:') ? `a=fingerprint:${v}` : l))),
  // ICE credentials that are empty, spaced, huge or odd.
  fc.tuple(fc.constantFrom('a=ice-ufrag:', 'a=ice-pwd:'), fc.oneof(hostile, fc.constantFrom('', ' ', 'x'.repeat(10_000)))).map(([k, v]) => (ls: string[]) => ls.map((l) => (l.startsWith(k) ? k + v : l))),
  // Odd codecs: names, clock rates, payload types and fmtp of every kind.
  fc.tuple(fc.oneof(hostile, fc.constantFrom('AV1', 'VP9', 'H265', 'H264', 'opus', 'PCMU', 'red', 'rtx', 'VP8', '')), fc.oneof(fc.integer({ min: -1000, max: 1_000_000 }).map(String), hostile)).map(([name, pt]) => (ls: string[]) => ls.map((l) => (l.startsWith('a=rtpmap:') ? `a=rtpmap:${pt} ${name}/${pt}` : l))),
  fc.oneof(hostile, fc.constantFrom('packetization-mode=1;profile-level-id=42e01f', 'profile-level-id=zz', 'apt=', ';;;;', 'x'.repeat(3000))).map((v) => (ls: string[]) => ls.map((l) => l.replace(/^a=fmtp:(\S+) .*$/, `a=fmtp:$1 ${v}`))),
  // The m-line itself: ports, protocols, format lists.
  fc.tuple(fc.constantFrom('audio', 'video', 'application', 'text', ''), fc.oneof(fc.constantFrom('0', '9', '65536', '-1', 'x', '99999999999'), hostile), fc.constantFrom('UDP/TLS/RTP/SAVPF', 'RTP/AVP', 'UDP/DTLS/SCTP', 'x', ''), fc.oneof(fc.constantFrom('', '96', '111 96 97', 'x y z', Array.from({ length: 500 }, (_, i) => i).join(' ')), hostile)).map(([k, port, proto, fmts]) => (ls: string[]) => {
    const i = ls.findIndex((l) => l.startsWith('m='));
    return i < 0 ? ls : ls.map((l, j) => (j === i ? `m=${k} ${port} ${proto} ${fmts}` : l));
  }),
  // Garbage lines anywhere.
  fc.tuple(fc.nat(), fc.array(fc.oneof(hostile, fc.constantFrom('a=', '=', 'x=y', 'a=sendrecv', 'a=inactive', 'a=recvonly', 'a=rtcp-mux', 'a=extmap:999 x', 'a=ssrc:99999999999 cname:x', 'a=ssrc-group:FID 1', 'a=msid:- -', 'a=setup:bogus', 'a=rtcp-fb:* *', 'a=candidate:', 'b=AS:-1', 'm=', 'v=1', 'a=group:BUNDLE 0 1 2 3 4 5')), { minLength: 1, maxLength: 10 })).map(([at, extra]) => (ls: string[]) => [...ls.slice(0, at % (ls.length + 1)), ...extra, ...ls.slice(at % (ls.length + 1))]),
  // Many candidates, some broken.
  fc.tuple(fc.integer({ min: 1, max: 1500 }), fc.oneof(fc.constant('a=candidate:1 1 udp 2130706431 127.0.0.1 {p} typ host'), fc.constant('a=candidate:1 1 udp x 999.1.1.1 {p} typ relay raddr'), fc.constant('a=candidate:{p} 1 tcp 1 host.local 9 typ host tcptype active'), hostile.map((h) => `a=candidate:${h}`))).map(([n, tpl]) => (ls: string[]) => [...ls, ...Array.from({ length: n }, (_, i) => tpl.replace('{p}', String(1024 + i)))]),
  // One line of any length replaced by hostile text.
  fc.tuple(fc.nat(), hostile).map(([i, h]) => (ls: string[]) => ls.map((l, j) => (j === i % Math.max(1, ls.length) ? h : l))),
  // Directions and mids that repeat or clash.
  fc.constantFrom('a=mid:0', 'a=mid:', 'a=sendonly', 'a=recvonly', 'a=inactive', 'a=mid:' + 'x'.repeat(300)).map((v) => (ls: string[]) => ls.map((l) => (l.startsWith(v.slice(0, 5)) ? v : l))),
);
function capLines(ls: string[], maxLines = 5000, maxChars = 1 << 20): string[] {
  const out: string[] = [];
  let chars = 0;
  for (const l of ls.slice(0, maxLines)) {
    if (chars + l.length > maxChars) {
      out.push(l.slice(0, maxChars - chars));
      break;
    }
    out.push(l);
    chars += l.length + 1;
  }
  return out;
}
/** An offer to send: mutated lines joined by CRLF, LF, CR or a mix, maybe with a BOM or binary bytes, maybe huge. */
const sdpBody = fc.oneof(
  {
    weight: 8,
    arbitrary: fc
      .tuple(fc.constantFrom('chromium', 'werift', 'plain'), fc.array(mutation, { minLength: 1, maxLength: 4 }), fc.constantFrom('\r\n', '\n', '\r', 'mixed', '\r\r\n', '\n\r'), fc.infiniteStream(fc.constantFrom('\r\n', '\n')), fc.constantFrom('', '', '', '\ufeff', ' ', '\n'))
      .map(([base, muts, eol, mixed, prefix]) => {
        let ls = (base === 'chromium' ? CHROMIUM_OFFER : base === 'plain' ? PLAIN_OFFER : weriftOffer).split(/\r\n/).filter((l) => l);
        // Mutations compound (an m-section copied 40 times, twice, then each ice-pwd made 10 KB long),
        // so each result is cut to what can still be sent: 5,000 lines and 1 MB, far beyond the
        // server's body limit.
        for (const m of muts) ls = capLines(m(ls));
        const text = eol === 'mixed' ? ls.map((l) => l + mixed.next().value).join('') : ls.join(eol) + eol;
        return prefix + text;
      }),
  },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 2000 }) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 4000 }) },
  { weight: 1, arbitrary: fc.constantFrom(() => 'v=0\r\n' + 'a=x\r\n'.repeat(20_000), () => 'v=0\r\n' + 'x'.repeat(70_000), () => '\u0000'.repeat(1000), () => ' \r\n\t ').map((f) => f()) },
);

describe('hostile input to the real server', () => {
  it('SDP offers: mutated werift and Chromium offers, random text and bytes, huge ones', async () => {
    let joined = 0;
    await runs(
      'SDP offers: POST /v1/rooms/{room}/participants',
      1500,
      fc.asyncProperty(sdpBody, fc.constantFrom('application/sdp', 'application/sdp', 'application/sdp', 'application/SDP; charset=utf-8', 'text/plain', 'application/json'), async (offer, type) => {
        const r = await send('POST', `/v1/rooms/fz-sdp/participants?name=x`, { body: offer, type });
        if (r.status === 201) {
          // It was still an offer werift takes: a real participant, removed at once.
          joined++;
          stats.joins++;
          expect(r.text).toMatch(/^v=0\r\n/);
          const left = await send('DELETE', r.headers.get('location')!);
          expect(left.status).toBe(204);
        } else expect([400, 413, 415]).toContain(r.status);
      }),
    );
    console.log(`SDP: ${joined} of 1500 mutated offers were still accepted (real joins, each removed)`);
  });

  it('names in ?name=: refused or cleaned, never a 5xx (the offer is broken, so no one joins)', async () => {
    await runs(
      'names and query strings: POST /v1/rooms/{room}/participants?name=…',
      2000,
      fc.asyncProperty(
        fc.oneof(
          hostile.map((n) => `name=${pct(n)}`),
          fc.constantFrom('name=', 'name', 'name=a&name=b', 'name[]=a', 'name[x]=1', 'name=%', 'name=%zz', 'name=%ED%A0%80', 'name=%00', 'name=%0D%0ALocation:%20x', '&&&', '=', '%3D', 'name=' + 'A'.repeat(10_000), 'screenshare=%00', 'screenshare[]=1'),
          fc.array(fc.tuple(hostile, hostile), { maxLength: 5 }).map((kv) => kv.map(([k, v]) => `${pct(k)}=${pct(v)}`).join('&')),
        ),
        async (query) => {
          const r = await send('POST', `/v1/rooms/fz-names/participants?${query}`, { body: 'v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\nm=audio 9 x 0\r\n', type: 'application/sdp' });
          // 431: a query over Node's 16 KB header limit (the server still answers in JSON).
          expect([400, 415, 431]).toContain(r.status);
        },
      ),
      [['name=' + 'x'.repeat(20_000)], [Array.from({ length: 5 }, (_, i) => `k${i}=${'x'.repeat(5000)}`).join('&')]],
    );
  });

  it('names that join for real are drawn on the viewer\'s name plates, and the viewer\'s composite keeps running', async () => {
    await runs(
      'names that join: a plate in the viewer’s composite',
      12,
      fc.asyncProperty(hostile.filter((n) => [...Buffer.from(n, 'utf8').toString('utf8').replace(/[\u0000-\u001f\u007f]/g, '').trim()].length <= 64), async (name) => {
        const r = await send('POST', `/v1/rooms/${ROOM}/participants?name=${pct(name)}`, { body: publisherOffer, type: 'application/sdp' });
        expect(r.status).toBe(201);
        stats.joins++;
        const id = r.headers.get('location')!.split('/').pop()!;
        // The viewer's composite is rebuilt with this tile and its plate.
        let view: { tiles: Array<{ participantId: string; name: string }> } = { tiles: [] };
        for (let i = 0; i < 100 && !view.tiles.some((t) => t.participantId === id); i++) {
          if (i > 0) await new Promise((res) => setTimeout(res, 50));
          view = JSON.parse((await send('GET', `/v1/rooms/${ROOM}/participants/${viewer.id}/view`)).text);
        }
        const tile = view.tiles.find((t) => t.participantId === id);
        // As the server decodes ?name= (a lone surrogate went as the bytes of U+FFFD) and cleans it.
        const expected = Buffer.from(name, 'utf8').toString('utf8').replace(/[\u0000-\u001f\u007f]/g, '').trim();
        expect(tile?.name).toBe(expected || tile?.name);
        await new Promise((res) => setTimeout(res, 300));
        expect((await send('DELETE', r.headers.get('location')!)).status).toBe(204);
      }),
      // Always these: characters XML forbids (librsvg refused the whole plate), markup, launch syntax.
      [['\ufffe'], ['a\uffffb'], ['<image href="file:///etc/passwd"/>'], ['" ! fakesink name="x'], ['\u202eevil\u200b😀']],
    );
    expect(server.output()).not.toMatch(/composite failed|XML parse error|corrupt header/);
  });

  const jsonRoutes: Array<{ name: string; method: string; path: () => fc.Arbitrary<string>; keys: string[]; schema: Parameters<typeof validateBody>[0]; costly?: boolean }> = [
    { name: 'PUT /v1/layouts/{id}', method: 'PUT', path: () => fc.oneof(fc.stringMatching(/^fz-[a-z0-9]{1,4}$/), pathId).map((id) => `/v1/layouts/${id}`), keys: ['id', 'name', 'regions', 'maxTiles', 'overflow', 'gap', 'description'], schema: 'Layout' },
    { name: 'POST /v1/rooms', method: 'POST', path: () => fc.constant('/v1/rooms'), keys: ['id', 'layout', 'autoRecord'], schema: 'CreateRoomRequest', costly: true },
    { name: 'PUT /v1/rooms/{room}/layout', method: 'PUT', path: () => fc.oneof(fc.constant(ROOM), pathId).map((r) => `/v1/rooms/${r}/layout`), keys: ['layout', 'selfView'], schema: 'RoomLayoutRequest', costly: true },
    { name: 'PUT /v1/rooms/{room}/pin', method: 'PUT', path: () => fc.oneof(fc.constant(ROOM), pathId).map((r) => `/v1/rooms/${r}/pin`), keys: ['participantId'], schema: 'PinRequest', costly: true },
    { name: 'PUT /v1/rooms/{room}/participants/{id}/layout', method: 'PUT', path: () => fc.tuple(fc.oneof(fc.constant(ROOM), pathId), fc.oneof(fc.constant('VIEWER'), pathId)).map(([r, p]) => `/v1/rooms/${r}/participants/${p}/layout`), keys: ['layout', 'selfView', 'pin'], schema: 'ViewerLayoutRequest', costly: true },
    { name: 'PUT /v1/rooms/{room}/participants/{id}/pin', method: 'PUT', path: () => fc.tuple(fc.oneof(fc.constant(ROOM), pathId), fc.oneof(fc.constant('VIEWER'), pathId)).map(([r, p]) => `/v1/rooms/${r}/participants/${p}/pin`), keys: ['participantId'], schema: 'PinRequest', costly: true },
    { name: 'POST /v1/rooms/{room}/recordings', method: 'POST', path: () => fc.oneof(fc.constant(ROOM), pathId).map((r) => `/v1/rooms/${r}/recordings`), keys: ['layout', 'format', 'width', 'height', 'fps'], schema: 'RecordingRequest', costly: true },
    { name: 'PUT /v1/rooms/{room}/recordings/{rec}/layout', method: 'PUT', path: () => fc.tuple(fc.oneof(fc.constant(ROOM), pathId), fc.oneof(fc.constant('REC'), pathId)).map(([r, id]) => `/v1/rooms/${r}/recordings/${id}/layout`), keys: ['layout', 'pin'], schema: 'RecordingLayoutRequest', costly: true },
    { name: 'POST /v1/tokens', method: 'POST', path: () => fc.constant('/v1/tokens'), keys: ['room', 'name', 'role', 'ttlSeconds'], schema: 'TokenRequest' },
  ];

  for (const route of jsonRoutes) {
    it(`JSON bodies: ${route.name}`, async () => {
      await runs(
        `JSON bodies: ${route.name}`,
        route.name === 'PUT /v1/layouts/{id}' || route.name === 'POST /v1/tokens' ? 700 : 500,
        fc.asyncProperty(route.path(), body(fc.oneof(shaped(route.keys), jsonish)), async (p, b) => {
          let path = p.replace('VIEWER', viewer.id).replace('REC', recordingId);
          let parsed: unknown;
          try {
            parsed = JSON.parse(b.raw);
          } catch {
            /* not JSON */
          }
          // A valid body on a route that would build pipelines (a recording, a recomposition)
          // goes to a room that does not exist: real pipelines stay rare. Its validation is what is fuzzed.
          let valid = false;
          try {
            validateBody(route.schema, parsed);
            valid = true;
          } catch {
            /* invalid */
          }
          // (A body that is not JSON gets 415.)
          // Only a body the server surely parses and refuses reaches the real room: an empty body or one
          // with a BOM (body-parser strips it) is read as {} on POST …/recordings, which is valid.
          const refused = !valid && parsed !== undefined && b.type === 'application/json' && !b.raw.startsWith('\ufeff');
          if (route.costly && !refused) path = path.replace(`/v1/rooms/${ROOM}/`, '/v1/rooms/fz-none/');
          if (route.name === 'POST /v1/rooms' && valid && (parsed as { autoRecord?: unknown }).autoRecord) b = { ...b, raw: JSON.stringify({ ...(parsed as object), id: 'not a room!' }) };
          const r = await send(route.method, path, { body: b.raw, type: b.type });
          if (r.status < 300 && route.name === 'PUT /v1/layouts/{id}') {
            const id = (JSON.parse(r.text) as { id: string }).id;
            expect((await send('DELETE', `/v1/layouts/${pct(id)}`)).status).toBe(204);
          }
        }),
      );
    });
  }

  it('ids in paths: GET, DELETE and POST on every route with path tricks, odd bytes and long ids', async () => {
    const routes: Array<[string, (a: string, b: string) => string]> = [
      ['GET', (a) => `/v1/rooms/${a}`],
      ['GET', (a, b) => `/v1/rooms/${a}/participants/${b}`],
      ['DELETE', (a, b) => `/v1/rooms/${a}/participants/${b}`],
      ['PATCH', (a, b) => `/v1/rooms/${a}/participants/${b}`],
      ['GET', (a, b) => `/v1/rooms/${a}/participants/${b}/view`],
      ['DELETE', (a, b) => `/v1/rooms/${a}/participants/${b}/layout`],
      ['DELETE', (a, b) => `/v1/rooms/${a}/participants/${b}/pin`],
      ['DELETE', (a) => `/v1/rooms/${a}/pin`],
      ['POST', (a, b) => `/v1/rooms/${a}/recordings/${b}/stop`],
      ['GET', (a) => `/v1/recordings/${a}`],
      ['GET', (a) => `/v1/recordings/${a}/file`],
      ['DELETE', (a) => `/v1/recordings/${a}`],
      ['GET', (a) => `/v1/layouts/${a}`],
      ['DELETE', (a) => `/v1/layouts/${a}`],
      ['GET', (a) => `/v1/${a}`],
      ['GET', (a) => `/${a}`],
      ['GET', (a, b) => `/v1/rooms?${a}=${b}`],
    ];
    await runs(
      'ids in paths: every route',
      1500,
      fc.asyncProperty(fc.constantFrom(...routes), pathId, pathId, async ([method, route], a, b) => {
        const path = route(a, b);
        // The viewer and the running recording must not be removed by a lucky guess (they cannot be: ids are UUIDs).
        const r = await send(method, path);
        if (method === 'DELETE' && path.startsWith('/v1/layouts/')) expect([404, 409, 400]).toContain(r.status);
      }),
    );
  });

  it('credentials: random and truncated Bearer values and JWTs with altered payloads get 401', async () => {
    const token = await joinToken('*', { role: 'admin' });
    const [h, p, s] = token.split('.');
    const payload = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
    const b64 = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
    const forged = fc.oneof(
      // The payload changed (grants, room, expiry, role), the signature kept.
      fc.dictionary(fc.constantFrom('video', 'room', 'exp', 'iat', 'nbf', 'role', 'iss', 'name', '__proto__', 'constructor'), fc.oneof(field, fc.record({ room: fc.constantFrom('*', 'fz'), roomAdmin: fc.constant(true), roomJoin: fc.constant(true) })), { minKeys: 1 }).map((d) => `${h}.${b64({ ...payload, ...d })}.${s}`),
      // alg none, or another algorithm, with or without the signature.
      fc.tuple(fc.constantFrom({ alg: 'none' }, { alg: 'none', typ: 'JWT' }, { alg: 'HS512' }, { alg: 'RS256' }, { alg: 'HS256', crit: ['x'] }, { alg: 'HS256', b64: false }), fc.constantFrom('', s)).map(([hd, sig]) => `${b64(hd)}.${p}.${sig}`),
      // Truncated or with a character changed.
      fc.nat({ max: token.length - 1 }).map((n) => token.slice(0, n)),
      fc.tuple(fc.nat({ max: token.length - 1 }), fc.constantFrom(...'ABCxyz019-_.=+/')).map(([i, c]) => token.slice(0, i) + c + token.slice(i + 1)).filter((t) => t !== token),
      // Signed with another secret, or by the right one but expired.
      fc.constantFrom(0).chain(() => fc.constant('SIGNED_ELSEWHERE')),
      // Any printable text, and the API key with a change.
      fc.string({ unit: fc.constantFrom(...' !"#$%&\'()*+,-./09:;<=>?@AZ[\\]^_`az{|}~'.split('')), maxLength: 300 }),
      fc.string({ minLength: 1, maxLength: 2000 }).map((x) => x.replace(/[^\x21-\x7e]/g, 'x')),
      fc.nat({ max: TEST_API_KEY.length - 1 }).map((n) => TEST_API_KEY.slice(0, n) + TEST_API_KEY.slice(n + 1)),
      fc.constant(TEST_API_KEY + 'x'),
    );
    const elsewhere = await joinToken('*', { role: 'admin', secret: 'another-secret-0123456789-0123456789-abcdef' });
    const expired = await joinToken('*', { role: 'admin', ttlSeconds: -120 });
    await runs(
      'credentials: forged and garbled Bearer values',
      1000,
      fc.asyncProperty(
        forged.map((f) => (f === 'SIGNED_ELSEWHERE' ? elsewhere : f)),
        fc.constantFrom('Bearer ', 'bearer ', 'Bearer  ', 'Basic ', '', 'Bearer\t', 'Token '),
        fc.constantFrom<[string, string]>(['GET', '/v1/rooms'], ['GET', `/v1/rooms/${ROOM}`], ['POST', '/v1/tokens'], ['GET', '/v1/recordings'], ['GET', '/metrics'], ['POST', '/v1/rooms/fz-auth/participants']),
        fc.boolean(),
        async (cred, scheme, [method, path], useExpired) => {
          const value = useExpired ? expired : cred;
          fc.pre(value !== token && value !== TEST_API_KEY);
          const r = await send(method, path, { auth: scheme + value, body: method === 'POST' ? '{}' : undefined, type: method === 'POST' ? 'application/json' : undefined });
          expect(r.status).toBe(401);
          expect(r.headers.get('www-authenticate')).toMatch(/^Bearer/);
        },
      ),
    );
  });
});

/** An offer as Chromium sends it (captured shape: BUNDLE, rtcp-mux, extmaps, rtx, red, many codecs, one host candidate). */
/** A room system's plain RTP offer (RTP/AVP, no ICE or DTLS): the admin key may make legs of these. */
const PLAIN_OFFER = [
  'v=0',
  'o=- 1 1 IN IP4 127.0.0.1',
  's=-',
  'c=IN IP4 127.0.0.1',
  't=0 0',
  'm=audio 4000 RTP/AVP 9 0 8 101',
  'a=rtpmap:101 telephone-event/8000',
  'a=fmtp:101 0-15',
  'a=ptime:20',
  'a=rtcp:4001 IN IP4 127.0.0.1',
  'a=sendrecv',
  'm=video 4002 RTP/AVP 97',
  'a=rtpmap:97 H264/90000',
  'a=fmtp:97 profile-level-id=42e01e;packetization-mode=0',
  'a=rtcp-fb:97 ccm fir',
  'a=rtcp-mux',
  'a=sendrecv',
  '',
].join('\r\n');

const CHROMIUM_OFFER = [
  'v=0',
  'o=- 4611731400430051336 2 IN IP4 127.0.0.1',
  's=-',
  't=0 0',
  'a=group:BUNDLE 0 1',
  'a=extmap-allow-mixed',
  'a=msid-semantic: WMS stream',
  'm=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126',
  'c=IN IP4 0.0.0.0',
  'a=rtcp:9 IN IP4 0.0.0.0',
  'a=candidate:1 1 udp 2113937151 127.0.0.1 50000 typ host generation 0 network-cost 999',
  'a=ice-ufrag:ZnVa',
  'a=ice-pwd:mR7ZfnR0y2yXfBvJxN9w0a1Q',
  'a=ice-options:trickle',
  'a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08',
  'a=setup:actpass',
  'a=mid:0',
  'a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level',
  'a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time',
  'a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01',
  'a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid',
  'a=sendrecv',
  'a=msid:stream audio0',
  'a=rtcp-mux',
  'a=rtpmap:111 opus/48000/2',
  'a=rtcp-fb:111 transport-cc',
  'a=fmtp:111 minptime=10;useinbandfec=1',
  'a=rtpmap:63 red/48000/2',
  'a=fmtp:63 111/111',
  'a=rtpmap:9 G722/8000',
  'a=rtpmap:0 PCMU/8000',
  'a=rtpmap:8 PCMA/8000',
  'a=rtpmap:13 CN/8000',
  'a=rtpmap:110 telephone-event/48000',
  'a=rtpmap:126 telephone-event/8000',
  'a=ssrc:1001 cname:abcdEFGH',
  'a=ssrc:1001 msid:stream audio0',
  'm=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 45 46 98 99',
  'c=IN IP4 0.0.0.0',
  'a=rtcp:9 IN IP4 0.0.0.0',
  'a=ice-ufrag:ZnVa',
  'a=ice-pwd:mR7ZfnR0y2yXfBvJxN9w0a1Q',
  'a=ice-options:trickle',
  'a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08',
  'a=setup:actpass',
  'a=mid:1',
  'a=extmap:14 urn:ietf:params:rtp-hdrext:toffset',
  'a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time',
  'a=extmap:13 urn:3gpp:video-orientation',
  'a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid',
  'a=sendrecv',
  'a=msid:stream video0',
  'a=rtcp-mux',
  'a=rtcp-rsize',
  'a=rtpmap:96 VP8/90000',
  'a=rtcp-fb:96 goog-remb',
  'a=rtcp-fb:96 transport-cc',
  'a=rtcp-fb:96 ccm fir',
  'a=rtcp-fb:96 nack',
  'a=rtcp-fb:96 nack pli',
  'a=rtpmap:97 rtx/90000',
  'a=fmtp:97 apt=96',
  'a=rtpmap:102 H264/90000',
  'a=rtcp-fb:102 nack pli',
  'a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f',
  'a=rtpmap:103 rtx/90000',
  'a=fmtp:103 apt=102',
  'a=rtpmap:45 AV1/90000',
  'a=rtpmap:46 rtx/90000',
  'a=fmtp:46 apt=45',
  'a=rtpmap:98 VP9/90000',
  'a=fmtp:98 profile-id=0',
  'a=rtpmap:99 rtx/90000',
  'a=fmtp:99 apt=98',
  'a=ssrc-group:FID 2001 2002',
  'a=ssrc:2001 cname:abcdEFGH',
  'a=ssrc:2002 cname:abcdEFGH',
  '',
].join('\r\n');
