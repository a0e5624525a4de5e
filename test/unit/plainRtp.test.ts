import dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { PlainRtpSession, type PlainOptions } from '../../src/rtc/plain.js';
import { isPlainRtpOffer, parsePlainOffer, plainAnswer } from '../../src/rtc/plainSdp.js';

const phone = (formats: string, extra: string[] = [], dir = 'sendrecv') =>
  ['v=0', 'o=- 1 1 IN IP4 127.0.0.1', 's=-', 'c=IN IP4 127.0.0.1', 't=0 0', `m=audio 4000 RTP/AVP ${formats}`, ...extra, `a=${dir}`, ''].join('\r\n');

const roomSystem = (fmtp: string, rtcpFb: string[] = ['a=rtcp-fb:97 ccm fir']) =>
  [
    'v=0',
    'o=- 1 1 IN IP4 127.0.0.1',
    's=-',
    'c=IN IP4 127.0.0.1',
    't=0 0',
    'm=audio 4000 RTP/AVP 9 0 101',
    'a=rtpmap:101 telephone-event/8000',
    'a=fmtp:101 0-15',
    'm=video 4002 RTP/AVP 97',
    'a=rtpmap:97 H264/90000',
    `a=fmtp:97 ${fmtp}`,
    ...rtcpFb,
    'a=sendrecv',
    '',
  ].join('\r\n');

describe('plain RTP offers', () => {
  it('tells an RTP/AVP offer from a WebRTC or SRTP one', () => {
    expect(isPlainRtpOffer(phone('0'))).toBe(true);
    expect(isPlainRtpOffer(phone('0').replace('RTP/AVP', 'UDP/TLS/RTP/SAVPF'))).toBe(false);
    expect(isPlainRtpOffer(phone('0').replace('RTP/AVP', 'RTP/SAVP'))).toBe(false);
    expect(isPlainRtpOffer('v=0\r\n')).toBe(false);
  });

  it('takes the first codec it speaks, in the offer’s order, with static payload types that have no rtpmap', () => {
    expect(parsePlainOffer(phone('18 8 0')).media[0].choice).toEqual({ codec: 'pcma', payloadType: 8, clockRate: 8000 });
    expect(parsePlainOffer(phone('9 0')).media[0].choice).toMatchObject({ codec: 'g722', payloadType: 9, clockRate: 8000 });
    expect(parsePlainOffer(phone('96 0', ['a=rtpmap:96 opus/48000/2'])).media[0].choice).toMatchObject({ codec: 'opus', payloadType: 96, clockRate: 48000 });
    // G.722 on a 16000 clock is the classic interop bug: RFC 3551 says 8000; we do not take it.
    expect(parsePlainOffer(phone('98 0', ['a=rtpmap:98 G722/16000'])).media[0].choice?.codec).toBe('pcmu');
  });

  it('finds telephone-event at the chosen codec’s clock, RTCP on port + 1 or a=rtcp, and rtcp-mux', () => {
    const o = parsePlainOffer(phone('0 101', ['a=rtpmap:101 telephone-event/8000', 'a=rtcp:5001 IN IP4 127.0.0.5'])).media[0];
    expect(o).toMatchObject({ address: '127.0.0.1', port: 4000, rtcpAddress: '127.0.0.5', rtcpPort: 5001, rtcpMux: false, dtmfPayloadType: 101 });
    expect(parsePlainOffer(phone('0')).media[0]).toMatchObject({ rtcpPort: 4001 });
    expect(parsePlainOffer(phone('0')).media[0].dtmfPayloadType).toBeUndefined();
    expect(parsePlainOffer(phone('0', ['a=rtcp-mux'])).media[0]).toMatchObject({ rtcpPort: 4000, rtcpMux: true });
  });

  it('takes H.264 constrained baseline in either packetization mode, and not High profile', () => {
    const v = (fmtp: string) => parsePlainOffer(roomSystem(fmtp)).media[1].choice;
    expect(v('profile-level-id=42e01e;packetization-mode=0')).toMatchObject({ codec: 'h264', packetizationMode: 0 });
    expect(v('profile-level-id=42e01e')).toMatchObject({ codec: 'h264', packetizationMode: 0 });
    expect(v('profile-level-id=42801f;packetization-mode=1')).toMatchObject({ codec: 'h264', packetizationMode: 1 });
    expect(v('profile-level-id=4de01f;packetization-mode=1')).toMatchObject({ codec: 'h264' });
    expect(v('profile-level-id=640028;packetization-mode=1')).toBeUndefined();
    expect(v('profile-level-id=42e01e;packetization-mode=2')).toBeUndefined();
  });

  it('answers every offered line in order, rejects what it cannot take with port 0, and echoes the level and mode', () => {
    const offer = parsePlainOffer(roomSystem('profile-level-id=42e00c;packetization-mode=0'));
    const answer = plainAnswer(
      offer,
      '127.0.0.1',
      new Map([
        [0, { port: 40000, direction: 'sendrecv' as const }],
        [1, { port: 40002, direction: 'sendrecv' as const }],
      ]),
      '7',
    );
    expect(answer).toBe(
      [
        'v=0',
        'o=webrtc-mcu 7 1 IN IP4 127.0.0.1',
        's=webrtc-mcu',
        'c=IN IP4 127.0.0.1',
        't=0 0',
        'm=audio 40000 RTP/AVP 9 101',
        'a=rtpmap:9 G722/8000',
        'a=rtpmap:101 telephone-event/8000',
        'a=fmtp:101 0-16',
        'a=ptime:20',
        'a=rtcp:40001',
        'a=sendrecv',
        'm=video 40002 RTP/AVP 97',
        'a=rtpmap:97 H264/90000',
        'a=fmtp:97 profile-level-id=42e00c;packetization-mode=0',
        'a=rtcp-fb:97 ccm fir',
        'a=rtcp-fb:97 nack pli',
        'a=rtcp:40003',
        'a=sendrecv',
        '',
      ].join('\r\n'),
    );
    const rejected = plainAnswer(parsePlainOffer(phone('0') + 'm=video 4002 RTP/AVP 34\r\n'), '127.0.0.1', new Map([[0, { port: 40000, direction: 'sendrecv' as const }]]), '7');
    expect(rejected).toContain('m=video 0 RTP/AVP 34');
  });

  it('refuses offers it cannot use with a 4xx that says why', () => {
    expect(() => parsePlainOffer(phone('3 4'))).toThrow(/no common codec/);
    expect(() => parsePlainOffer(phone('0').replace('c=IN IP4 127.0.0.1\r\n', ''))).toThrow(/connection address/);
    expect(() => parsePlainOffer(phone('0').replace('c=IN IP4 127.0.0.1', 'c=IN IP6 ::1'))).toThrow(/IPv4/);
    expect(() => parsePlainOffer('hello')).toThrow(/not an SDP offer/);
    // a=rtcp names a port 1-65535 and at most an IPv4 address, never a name to resolve.
    expect(() => parsePlainOffer(phone('0', ['a=rtcp:99999']))).toThrow(/bad a=rtcp/);
    expect(() => parsePlainOffer(phone('0', ['a=rtcp:5001 IN IP4 evil.example.com']))).toThrow(/bad a=rtcp/);
  });
});

// ---------------------------------------------------------------------------------------------
// The session, against a UDP socket that plays the endpoint.

const opts: PlainOptions = { address: '127.0.0.1', bindAddress: '127.0.0.1', portRange: [46000, 46999] };
const open: Array<{ close(): unknown }> = [];
afterEach(async () => {
  for (const o of open.splice(0)) await o.close();
});

async function endpoint() {
  const rtp = dgram.createSocket('udp4');
  const rtcp = dgram.createSocket('udp4');
  await new Promise<void>((r) => rtp.bind(0, '127.0.0.1', () => r()));
  // RTCP on port + 1: retry until a pair is free.
  const port = rtp.address().port;
  await new Promise<void>((r, j) => {
    rtcp.once('error', j);
    rtcp.bind(port + 1, '127.0.0.1', () => r());
  });
  const got = { rtp: [] as Buffer[], rtcp: [] as Buffer[] };
  rtp.on('message', (m) => got.rtp.push(m));
  rtcp.on('message', (m) => got.rtcp.push(m));
  const e = { rtp, rtcp, port, got, close: () => (rtp.close(), rtcp.close()) };
  open.push(e);
  return e;
}

const rtpPacket = (pt: number, seq: number, ts: number, ssrc: number, payload: Buffer, marker = false) => {
  const b = Buffer.alloc(12 + payload.length);
  b[0] = 0x80;
  b[1] = (marker ? 0x80 : 0) | pt;
  b.writeUInt16BE(seq, 2);
  b.writeUInt32BE(ts, 4);
  b.writeUInt32BE(ssrc, 8);
  payload.copy(b, 12);
  return b;
};

const until = async (cond: () => boolean, ms = 3000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
};

describe('a plain RTP session', () => {
  it('latches onto where packets come from (symmetric RTP), reports DTMF once per digit, and sends reports', async () => {
    const ep = await endpoint().catch(() => endpoint());
    // The offer names a port no one listens on: the leg's NAT moved it.
    const s = await PlainRtpSession.answer(phone('0 101', ['a=rtpmap:101 telephone-event/8000']).replace('4000', '9'), opts);
    open.push(s);
    expect(s.tracks.audio).toMatchObject({ codec: 'pcmu', payloadType: 0, recv: true, send: true, clockRate: 8000 });
    const ourPort = Number(/m=audio (\d+)/.exec(s.answerSdp)![1]);
    expect(ourPort % 2).toBe(0);
    const heard: Buffer[] = [];
    const digits: string[] = [];
    s.onRtp('audio', (p) => heard.push(p));
    s.onDtmf((e) => digits.push(`${e.digit}:${e.durationMs}`));
    for (let i = 0; i < 5; i++) ep.rtp.send(rtpPacket(0, 100 + i, 160 * i, 0xabc, Buffer.alloc(160, 0xff)), ourPort, '127.0.0.1');
    await until(() => heard.length === 5);
    // Ours go back to the endpoint's real port, with our SSRC and its payload type.
    s.sendRtp('audio', rtpPacket(111, 1, 0, 1, Buffer.alloc(160)));
    await until(() => ep.got.rtp.length === 1);
    expect(ep.got.rtp[0][1] & 0x7f).toBe(0);
    // DTMF "5" for 800 units (100 ms at 8 kHz): updates, then the end packet three times.
    const ev = (end: boolean, dur: number) => Buffer.from([5, end ? 0x8a : 0x0a, dur >> 8, dur & 0xff]);
    let seq = 200;
    for (const [end, dur] of [[false, 160], [false, 320], [true, 800], [true, 800], [true, 800]] as const) {
      ep.rtp.send(rtpPacket(101, seq++, 8000, 0xabc, ev(end, dur)), ourPort, '127.0.0.1');
    }
    await until(() => digits.length === 1);
    await new Promise((r) => setTimeout(r, 100));
    expect(digits).toEqual(['5:100']);
    // A sender report with a report block on its RTCP port (+1), within a few seconds.
    await until(() => ep.got.rtcp.some((p) => p[1] === 200), 5000);
    const sr = ep.got.rtcp.find((p) => p[1] === 200)!;
    expect(sr[0] & 0x1f).toBe(1);
    expect(sr.readUInt32BE(28)).toBe(0xabc);
  });

  it('turns the endpoint’s PLI or FIR into a keyframe request, asks with FIR where only FIR was offered, and takes BYE as hanging up', async () => {
    const ep = await endpoint().catch(() => endpoint());
    const s = await PlainRtpSession.answer(
      roomSystem('profile-level-id=42e01e;packetization-mode=0').replace('m=video 4002', `m=video ${ep.port}`).replace('m=audio 4000', 'm=audio 0'),
      opts,
    );
    open.push(s);
    expect(s.tracks.audio).toBeUndefined();
    expect(s.tracks.video).toMatchObject({ codec: 'h264', packetizationMode: 0 });
    const ourPort = Number(/m=video (\d+)/.exec(s.answerSdp)![1]);
    let keyframes = 0;
    const states: string[] = [];
    s.onKeyframeRequest(() => keyframes++);
    s.onStateChange((st) => states.push(st));
    ep.rtp.send(rtpPacket(97, 1, 0, 0x1234, Buffer.from([0x65, 0])), ourPort, '127.0.0.1');
    await until(() => states.includes('connected'));
    // FIR from the endpoint (PSFB FMT 4) to our RTCP port.
    const fir = Buffer.alloc(20);
    fir[0] = 0x84;
    fir[1] = 206;
    fir.writeUInt16BE(4, 2);
    ep.rtcp.send(fir, ourPort + 1, '127.0.0.1');
    await until(() => keyframes === 1);
    // We ask it for a keyframe: it offered only "ccm fir", so FIR it is, naming its SSRC.
    s.requestKeyframe();
    await until(() => ep.got.rtcp.some((p) => hasPsfb(p, 4)));
    const bye = Buffer.from([0x81, 203, 0, 1, 0, 0, 0x12, 0x34]);
    ep.rtcp.send(bye, ourPort + 1, '127.0.0.1');
    await until(() => states.includes('closed'));
  });
});

function hasPsfb(buf: Buffer, fmt: number): boolean {
  for (let off = 0; off + 4 <= buf.length; off += (buf.readUInt16BE(off + 2) + 1) * 4) {
    if (buf[off + 1] === 206 && (buf[off] & 0x1f) === fmt) return true;
  }
  return false;
}
