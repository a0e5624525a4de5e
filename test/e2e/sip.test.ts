import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/browser.js';
import { expectPhoneHears, startPhone, type Phone } from '../helpers/legacyEndpoint.js';
import { apiCall, authFetch, ROOT, startServerProcess, TEST_API_KEY, type ServerProcess } from '../helpers/server.js';

// Issue #12: a SIP server bridged into a room by `webrtc-mcu sip-bridge` (src/sip/bridge.ts). The
// SIP user agent is SIPp 3.6 (Debian's sip-tester) playing the scenarios in test/helpers/sipp/; its
// INVITE carries the SDP offer of a gst-launch phone (test/helpers/legacyEndpoint.ts), which is the
// call's media: SIPp does signalling only. The "other person" in the room is a G.722 SDP-less leg.

const SCENARIOS = path.join(ROOT, 'test', 'helpers', 'sipp');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mcu-sip-'));
let server: ServerProcess;
let bridge: ChildProcess;
let bridgePort: number;
let bridgeOut = '';
const stops: Array<() => Promise<unknown>> = [];

async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  const p = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}

beforeAll(async () => {
  // Two people a room at most, so that a room is easily full.
  server = await startServerProcess({ MCU_MAX_PARTICIPANTS: '2' });
  bridgePort = await freeUdpPort();
  // The CLI as an operator runs it; the key comes from MCU_API_KEY (the environment the helper passes on).
  bridge = spawn(path.join(ROOT, 'bin', 'mcu'), ['sip-bridge', '--listen', `127.0.0.1:${bridgePort}`, '--mcu', server.url, '--poll-ms', '500'], {
    cwd: ROOT,
    env: { ...process.env, MCU_API_KEY: TEST_API_KEY, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const collect = (d: Buffer) => (bridgeOut += d);
  bridge.stdout!.on('data', collect);
  bridge.stderr!.on('data', collect);
  await waitFor(async () => bridgeOut, (o) => /SIP bridge listening/.test(o), 20_000, 'the SIP bridge to listen');
}, 60_000);

afterAll(async () => {
  for (const s of stops.splice(0)) await s().catch(() => undefined);
  // The last test stops the bridge; if it did not get there, stop it here.
  if (bridge && bridge.exitCode === null && bridge.signalCode === null) {
    const exited = new Promise<number | null>((r) => bridge.once('exit', r));
    bridge.kill('SIGTERM');
    await exited;
  }
  console.log(`bridge log:\n${bridgeOut}`);
  expect(await server?.stop()).toBe(0);
});

interface Sipp {
  /** SIP messages SIPp sent and received so far (its -trace_msg file). */
  messages(): string;
  /** SIPp's exit code (0: the scenario ran to its end) and its output. */
  done: Promise<{ code: number | null; out: string }>;
}

/** SIPp as the UAC of `scenario`, calling sip:ROOM@bridge as "caller", its SDP offer pointing at `phone`. */
async function sipp(scenario: string, room: string, caller: string, phone: Phone | undefined, extra: string[] = []): Promise<Sipp> {
  const port = await freeUdpPort();
  const file = path.join(tmp, `${scenario}-${port}.msg`);
  const args = [
    `127.0.0.1:${bridgePort}`,
    ...['-sf', path.join(SCENARIOS, `${scenario}.xml`), '-s', room, '-m', '1', '-i', '127.0.0.1', '-p', String(port)],
    ...['-key', 'caller', caller, '-key', 'phone_ip', '127.0.0.1'],
    ...['-key', 'phone_port', String(phone?.port ?? 9), '-key', 'phone_rtcp_port', String(phone?.rtcpPort ?? 10)],
    ...['-nostdin', '-trace_msg', '-message_file', file, '-timeout', '45s', '-timeout_error'],
    ...extra,
  ];
  const proc = spawn('sipp', args, { cwd: tmp, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.on('data', (d) => (out += d));
  proc.stderr.on('data', (d) => (out += d));
  stops.push(async () => proc.exitCode === null && proc.kill('SIGKILL'));
  const messages = () => (fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '');
  const done = new Promise<{ code: number | null; out: string }>((resolve) => proc.once('exit', (code) => resolve({ code, out })));
  return { messages, done };
}

/** The SIP messages in a -trace_msg file, each as start line, headers and body. */
function parseTrace(text: string) {
  return text
    .split(/^-{20,}.*$/m)
    .map((block) => {
      const m = /^(UDP|TCP) message (sent|received)[^\n]*\n\n([\s\S]*)$/m.exec(block.trim());
      if (!m) return undefined;
      const raw = m[3].replace(/\r/g, '');
      const [head, ...rest] = raw.split('\n\n');
      const [start, ...headers] = head.split('\n');
      return { dir: m[2], start, headers, body: rest.join('\n\n').trim() };
    })
    .filter((x) => x !== undefined);
}

const roomDump = async (id: string) =>
  (await apiCall(server.url, 'GET', `/v1/rooms/${id}`)).body as { participants: Array<{ id: string; name: string; transport: string; media: { audio: { codec: string } | null } }> };

/** Waits for the 200 OK to the INVITE in SIPp's trace and returns it. */
async function okToInvite(s: Sipp) {
  return waitFor(
    async () => parseTrace(s.messages()).find((m) => m.dir === 'received' && /^SIP\/2.0 200/.test(m.start) && m.headers.some((h) => /^CSeq: 1 INVITE/i.test(h))),
    (m) => !!m,
    20_000,
    'the 200 OK to the INVITE in SIPp’s trace',
  ).then((m) => m!);
}

describe('SIP bridge with SIPp as the caller', () => {
  it('SIPp calls sip:ROOM@bridge with a PCMU phone’s offer, gets the MCU’s answer; the phone and a G.722 leg in the room hear each other; SIPp’s BYE removes the leg', { timeout: 45_000 }, async () => {
    const ROOM = 'sip-call';
    const other = await startPhone({ codec: 'g722', freq: 880 });
    stops.push(() => other.stop());
    const leg = await apiCall(server.url, 'POST', `/v1/rooms/${ROOM}/rtp-legs`, { name: 'Other', codec: 'g722' });
    expect(leg.status).toBe(201);
    other.connect(leg.body.host, leg.body.port);

    const desk = await startPhone({ codec: 'pcmu', freq: 660 });
    stops.push(() => desk.stop());
    // The scenario's offer is the phone's own (test/helpers/sipp/call.xml mirrors legacyEndpoint's).
    expect(desk.offer()).toContain(`m=audio ${desk.port} RTP/AVP 0 101\r\na=rtcp:${desk.rtcpPort}\r\n`);
    // After a re-INVITE the call lasts 16 s (-d), then SIPp hangs up.
    const call = await sipp('call', ROOM, 'Desk Phone', desk, ['-d', '16000']);
    const ok = await okToInvite(call);
    expect(ok.headers.join('\n')).toMatch(/^To: .*;tag=\w+/m);
    expect(ok.headers.join('\n')).toMatch(new RegExp(`^Contact: .*<sip:${ROOM}@127\\.0\\.0\\.1:${bridgePort}>`, 'm'));
    expect(ok.headers.join('\n')).toMatch(/^Content-Type: application\/sdp/im);
    expect(ok.body).toMatch(/^m=audio \d+ RTP\/AVP 0 101$/m);
    expect(ok.body).not.toMatch(/a=ice-ufrag|a=fingerprint/);
    desk.answer(ok.body);

    const dump = await roomDump(ROOM);
    const p = dump.participants.find((x) => x.name === 'Desk Phone');
    expect(p).toMatchObject({ transport: 'rtp', media: { audio: { codec: 'pcmu' } } });

    await expectPhoneHears(desk, 880, 660, 'the SIP caller hears the other person');
    await expectPhoneHears(other, 660, 880, 'the other person hears the SIP caller');

    const { code, out } = await call.done;
    if (code !== 0) console.log(out, call.messages());
    expect(code).toBe(0);
    // SIPp's BYE got its 200 OK after the leg was deleted.
    const trace = parseTrace(call.messages());
    expect(trace.some((m) => m.dir === 'sent' && m.start.startsWith('BYE '))).toBe(true);
    expect(trace.some((m) => m.dir === 'received' && /^SIP\/2.0 200/.test(m.start) && m.headers.some((h) => /^CSeq: 3 BYE/i.test(h)))).toBe(true);
    // The re-INVITE (session refresh) got the same answer.
    const reOk = trace.find((m) => m.dir === 'received' && /^SIP\/2.0 200/.test(m.start) && m.headers.some((h) => /^CSeq: 2 INVITE/i.test(h)));
    expect(reOk?.body).toBe(ok.body);
    expect((await roomDump(ROOM)).participants.map((x) => x.name)).toEqual(['Other']);
    expect(bridgeOut).toMatch(/ACK: call up/);
    expect(bridgeOut).toMatch(/re-INVITE: the same answer/);
    expect(bridgeOut).toMatch(new RegExp(`leg ${p!.id} deleted at the MCU \\(BYE from the caller\\): HTTP 204`));
    expect((await authFetch(`${server.url}/v1/rooms/${ROOM}/participants/${leg.body.id}`, { method: 'DELETE' })).status).toBe(204);
  });

  it('a full room answers 486 Busy Here; an INVITE without SDP gets 488', { timeout: 20_000 }, async () => {
    const ROOM = 'sip-full';
    for (const name of ['A', 'B']) expect((await apiCall(server.url, 'POST', `/v1/rooms/${ROOM}/rtp-legs`, { name, codec: 'pcmu' })).status).toBe(201);
    const busy = await sipp('busy', ROOM, 'Late Comer', undefined);
    const r = await busy.done;
    if (r.code !== 0) console.log(r.out, busy.messages());
    expect(r.code).toBe(0);
    expect(parseTrace(busy.messages()).find((m) => m.dir === 'received' && /^SIP\/2.0 486/.test(m.start))!.headers.join('\n')).toMatch(/^Warning: 399 .*MCU 409/m);
    expect((await roomDump(ROOM)).participants.map((x) => x.name).sort()).toEqual(['A', 'B']);

    // Over TCP this time (SIPp -t t1): the bridge listens on both.
    const late = await sipp('late-offer', 'sip-late', 'No SDP', undefined, ['-t', 't1']);
    const l = await late.done;
    if (l.code !== 0) console.log(l.out, late.messages());
    expect(l.code).toBe(0);
    expect(bridgeOut).toMatch(/"No SDP" refused: 488 Not Acceptable Here \(an SDP offer is needed/);
    expect(late.messages()).toMatch(/^TCP message received[\s\S]*SIP\/2.0 488/m);
  });

  it('the MCU removing the leg (an admin’s DELETE) makes the bridge send BYE, which SIPp answers', { timeout: 30_000 }, async () => {
    const ROOM = 'sip-kicked';
    const kiosk = await startPhone({ codec: 'pcmu', freq: 660 });
    stops.push(() => kiosk.stop());
    const call = await sipp('hungup-by-mcu', ROOM, 'Kiosk', kiosk);
    kiosk.answer((await okToInvite(call)).body);
    const p = await waitFor(
      async () => (await roomDump(ROOM)).participants.find((x) => x.name === 'Kiosk'),
      (x) => !!x,
      10_000,
      'the SIP leg in the room',
    );
    expect((await authFetch(`${server.url}/v1/rooms/${ROOM}/participants/${p!.id}`, { method: 'DELETE' })).status).toBe(204);
    const t0 = Date.now();
    const { code, out } = await call.done;
    if (code !== 0) console.log(out, call.messages());
    expect(code).toBe(0);
    console.log(`SIPp got the bridge's BYE ${Date.now() - t0} ms after the DELETE`);
    const bye = parseTrace(call.messages()).find((m) => m.dir === 'received' && m.start.startsWith('BYE '))!;
    expect(bye.start).toMatch(/^BYE sip:caller@127\.0\.0\.1:\d+ SIP\/2\.0$/);
    // The bridge logs the BYE's answer once it reads it, which can be after SIPp has exited.
    await waitFor(async () => bridgeOut, (o) => /BYE sent \(leg removed by the MCU\): 200 from the caller/.test(o), 5000, "the bridge's log of the caller's 200 to its BYE");
  });

  it('stopping the bridge (SIGTERM) hangs up its calls: BYE to the caller, the leg deleted, exit 0', { timeout: 30_000 }, async () => {
    const ROOM = 'sip-shutdown';
    const lobby = await startPhone({ codec: 'pcmu', freq: 660 });
    stops.push(() => lobby.stop());
    const call = await sipp('hungup-by-mcu', ROOM, 'Lobby', lobby);
    lobby.answer((await okToInvite(call)).body);
    await waitFor(async () => (await roomDump(ROOM)).participants.length, (n) => n === 1, 10_000, 'the SIP leg in the room');
    const exited = new Promise<number | null>((r) => bridge.once('exit', r));
    bridge.kill('SIGTERM');
    expect(await exited).toBe(0);
    const { code, out } = await call.done;
    if (code !== 0) console.log(out, call.messages());
    expect(code).toBe(0);
    expect((await roomDump(ROOM)).participants).toEqual([]);
    expect(bridgeOut).toMatch(/deleted at the MCU \(the bridge is shutting down\): HTTP 204/);
    expect(bridgeOut).toMatch(/BYE sent \(the bridge is shutting down\): 200 from the caller/);
  });
});
