import dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { parseAnswer, startPhone, startRoomSystem, type AudioCodec, type Phone, type RoomSystem } from '../helpers/legacyEndpoint.js';

// The gst-launch phones and room systems that stand in for SIP endpoints (issue #12), checked
// against each other before tests lean on them: each chain (encode, payload, send from its public
// socket; receive, depayload, decode) works, pm=0 really is single NAL units, DTMF is RFC 4733.

const open: Array<{ stop(): Promise<void> }> = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((e) => e.stop()));
});

const until = async (ok: () => boolean, ms: number, what: string, info: () => string = () => '') => {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}\n${info()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
};

describe('legacy endpoints (gst-launch)', () => {
  it('phones of each codec hear each other, with RTCP from GStreamer on port+1 (or rtcp-mux)', async () => {
    const codecs: AudioCodec[] = ['pcmu', 'pcma', 'g722'];
    const pairs: Array<[Phone, Phone]> = [];
    for (const codec of codecs) {
      const rtcpMux = codec === 'pcma'; // one pair multiplexes RTCP on the RTP port
      const a = await startPhone({ codec, freq: 440, host: '127.0.0.1', rtcpMux });
      open.push(a);
      const b = await startPhone({ codec, freq: 660, host: '127.0.0.1', rtcpMux });
      open.push(b);
      a.connect('127.0.0.1', b.port);
      b.connect('127.0.0.1', a.port);
      pairs.push([a, b]);
    }
    const offer = pairs[2][0].offer();
    expect(offer).toContain(`m=audio ${pairs[2][0].port} RTP/AVP 9 101`);
    expect(offer).toContain('a=rtpmap:9 G722/8000');
    expect(offer).toContain('a=fmtp:101 0-15');
    expect(offer).toContain(`a=rtcp:${pairs[2][0].port + 1}`);
    expect(pairs[1][0].offer()).toContain('a=rtcp-mux');
    // 1 s of audio from the other, plus the jitter buffer.
    await new Promise((r) => setTimeout(r, 1500));
    for (const [a, b] of pairs) {
      const [a440, a660] = a.levels([440, 660]);
      const [b440, b660] = b.levels([440, 660]);
      console.log(`${a.codec}: A hears 660 at ${a660.toFixed(1)} dB (440: ${a440.toFixed(1)}); B hears 440 at ${b440.toFixed(1)} dB (660: ${b660.toFixed(1)}); rtcp types at A ${JSON.stringify(a.received.rtcpTypes)}`);
      expect(a660, `${a.codec}: A hears B`).toBeGreaterThan(a440 + 20);
      expect(b440, `${a.codec}: B hears A`).toBeGreaterThan(b660 + 20);
      expect(a660).toBeGreaterThan(-20);
      expect(b.received.payloadTypes[a.payloadType]).toBeGreaterThan(40);
    }
    // GStreamer's rtpsession reports (SR) on port+1 every few seconds, the first soon after start.
    await until(() => pairs.every(([a, b]) => (a.received.rtcpTypes[200] ?? 0) > 0 && (b.received.rtcpTypes[200] ?? 0) > 0), 6000, 'SRs');
  });

  it('pm=0 room systems decode each other and send only single NAL units under the MTU; a PLI brings an IDR', async () => {
    // A: solid red, small. B: SMPTE bars at 640x360, whose IDR (~20 kB) must be cut into slices for pm=0;
    // no IDR of its own accord for 20 s, so the one after the PLI answers it.
    const a = await startRoomSystem({ color: [255, 0, 0], packetizationMode: 0, width: 320, height: 180, host: '127.0.0.1' });
    open.push(a);
    const b = await startRoomSystem({ color: [0, 0, 255], pattern: 'smpte', packetizationMode: 0, keyIntMax: 300, host: '127.0.0.1' });
    open.push(b);
    expect(a.offer()).toContain('a=fmtp:97 profile-level-id=42e01e;packetization-mode=0');
    expect(a.offer()).toContain('a=rtcp-fb:97 nack pli');
    // Through the SDP path: each takes the other's offer as if it were the server's answer.
    a.answer(b.offer());
    b.answer(a.offer());
    const info = () => `a: ${JSON.stringify(a.video.received, (_k, v) => (v instanceof Set ? [...v] : v))}\n${a.log()}`;
    await until(() => a.frames.count > 0 && b.frames.count > 0, 8000, 'decoded frames', info);
    await new Promise((r) => setTimeout(r, 300));
    const white = a.sample(40, 90)!; // SMPTE's first bar
    const blue = a.sample(600, 90)!; // and its last
    const red = b.sample(160, 90)!;
    const v = a.video.received;
    console.log(`A sees ${white} / ${blue} at ${JSON.stringify(a.frameSize())}, B sees ${red} at ${JSON.stringify(b.frameSize())}; NAL types at A: ${[...a.nalTypes]}, largest packet ${v.maxRtpBytes} B, ${v.rtp} packets`);
    expect(a.frameSize()).toEqual({ width: 640, height: 360 });
    expect(b.frameSize()).toEqual({ width: 320, height: 180 });
    expect(Math.min(...white)).toBeGreaterThan(180);
    expect(blue[2]).toBeGreaterThan(180);
    expect(blue[0]).toBeLessThan(60);
    expect(red[0]).toBeGreaterThan(200);
    expect(red[2]).toBeLessThan(50);
    for (const t of [...a.nalTypes, ...b.nalTypes]) expect(t >= 1 && t <= 23, `NAL type ${t}`).toBe(true);
    expect([5, 7, 8].every((t) => a.nalTypes.has(t))).toBe(true);
    expect(v.maxRtpBytes).toBeLessThanOrEqual(1200);
    expect(v.maxRtpBytes).toBeGreaterThan(600); // slices are full-size: the frames really were cut
    // A asks for a keyframe: B's rtpsession turns the PLI into one from x264. First a quiet spell, so
    // that the IDR is not one that A's own depayloader asked for while the stream was starting.
    await until(() => performance.now() - v.lastKeyframeAt > 800, 5000, 'no IDR for 800 ms');
    const before = v.keyframes;
    const asked = performance.now();
    a.sendPli();
    await until(() => v.keyframes > before, 2000, 'an IDR after the PLI');
    console.log(`IDR ${Math.round(v.lastKeyframeAt - asked)} ms after the PLI`);
    a.sendFir();
    await until(() => b.video.received.feedback.pli >= 1 && b.video.received.feedback.fir >= 1, 2000, 'PLI and FIR at B');
    expect(b.video.received.rtcpTypes[201]).toBeGreaterThanOrEqual(2); // each request is a compound led by an RR
  });

  it('a pm=1 room system does use STAP-A and FU-A (so the pm=0 check above can fail)', async () => {
    const sink = dgram.createSocket('udp4');
    open.push({ stop: async () => void sink.close() });
    await new Promise<void>((r) => sink.bind(0, '127.0.0.1', () => r()));
    const types = new Set<number>();
    sink.on('message', (m) => {
      if (m[1] < 192 || m[1] > 223) types.add(m[12] & 0x1f);
    });
    const c = await startRoomSystem({ color: [0, 255, 0], pattern: 'smpte', packetizationMode: 1, host: '127.0.0.1' });
    open.push(c);
    expect(c.offer()).toContain('packetization-mode=1');
    c.connect({ video: { host: '127.0.0.1', port: sink.address().port } });
    await until(() => types.has(24) && types.has(28), 4000, 'STAP-A and FU-A', () => `${[...types]}`);
  });

  it('sendDtmf: RFC 4733 event packets with PT 101, the E bit on the last three, one sequence space with the audio', async () => {
    const sink = dgram.createSocket('udp4');
    open.push({ stop: async () => void sink.close() });
    await new Promise<void>((r) => sink.bind(0, '127.0.0.1', () => r()));
    const got: Buffer[] = [];
    sink.on('message', (m) => {
      if (m[1] < 192 || m[1] > 223) got.push(m);
    });
    const phone = await startPhone({ codec: 'pcmu', freq: 440 });
    open.push(phone);
    phone.connect('127.0.0.1', sink.address().port);
    await until(() => got.length >= 5, 3000, 'audio');
    await phone.sendDtmf('5', 200);
    await new Promise((r) => setTimeout(r, 100));
    const ev = got.filter((m) => (m[1] & 0x7f) === 101);
    expect(ev.length).toBeGreaterThanOrEqual(10);
    expect(ev.every((m) => m[12] === 5)).toBe(true);
    const ends = ev.map((m) => (m[13] & 0x80) !== 0);
    expect(ends.slice(-3)).toEqual([true, true, true]);
    expect(ends.slice(0, -3).every((e) => !e)).toBe(true);
    expect(ev[0][1] & 0x80).toBe(0x80); // marker on the first
    expect(new Set(ev.map((m) => m.readUInt32BE(4))).size).toBe(1); // one timestamp for the event
    expect(ev.at(-1)!.readUInt16BE(14)).toBe(1600); // 200 ms at 8 kHz
    expect(ev[0].readUInt32BE(8)).toBe(got[0].readUInt32BE(8)); // the audio's SSRC
    // No gaps and no repeats in the sequence numbers across audio and events.
    for (let i = 1; i < got.length; i++) expect(got[i].readUInt16BE(2)).toBe((got[i - 1].readUInt16BE(2) + 1) & 0xffff);
  });

  it('parseAnswer reads c=, ports, a=rtcp and a=rtcp-mux per m-line', () => {
    const a = parseAnswer(
      'v=0\r\nc=IN IP4 127.0.0.2\r\nm=audio 5000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\nm=video 6000 RTP/AVP 96\r\nc=IN IP4 127.0.0.3\r\na=rtcp:6010\r\na=rtpmap:96 H264/90000\r\nm=video 0 RTP/AVP 96\r\nm=audio 7000 RTP/AVP 8\r\na=rtcp-mux\r\n',
    );
    expect(a).toEqual([
      { media: 'audio', port: 5000, target: { host: '127.0.0.2', port: 5000 }, pts: { PCMU: 0 } },
      { media: 'video', port: 6000, target: { host: '127.0.0.3', port: 6000, rtcpPort: 6010 }, pts: { H264: 96 } },
      { media: 'audio', port: 7000, target: { host: '127.0.0.2', port: 7000, rtcpMux: true }, pts: {} },
    ]);
  });
});
