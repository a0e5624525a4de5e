import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import sharp from 'sharp';

/**
 * Plain-RTP endpoints for tests (issue #12): a SIP phone (G.711 / G.722) and a room system (H.264
 * constrained baseline, packetization-mode 0 or 1, optional audio) that speak RTP/AVP with no ICE and
 * no DTLS. The media is made and consumed by `gst-launch-1.0`, so the codecs, payloaders, jitter
 * buffer and RTCP (an `rtpsession` per m-line: SR/RR, and PLI/FIR turned into keyframes) are
 * GStreamer's, not ours.
 *
 * Each m-line's public address is a pair of Node sockets (RTP on an even port, RTCP on port+1) that
 * act as the endpoint's NAT: what gst-launch sends (udpsink to a private Node socket) leaves from
 * the public socket, so the server's symmetric RTP answers to it; what arrives there is counted,
 * inspected (payload types, H.264 NAL types, RTCP packet types) and handed to the udpsrc of the same
 * gst-launch. The helper also writes packets of its own into the stream: RFC 4733 telephone-events
 * and RTCP PLI/FIR. To keep one sequence-number space per stream it renumbers every RTP packet it
 * sends (gst-launch's and its own); the SSRC is gst-launch's, so its RTCP matches.
 *
 * Decoded media comes back on the child's fd 3: 16 kHz mono S16LE for audio (for `levels()`), PNG
 * frames at 4 fps for video (self-delimiting, so a resolution change needs no out-of-band caps; decoded
 * with sharp for `sample()`).
 */

export type AudioCodec = 'pcmu' | 'pcma' | 'g722';

/** Where one m-line sends. `rtcpPort` defaults to port+1, or to port when RTCP is multiplexed. */
export interface RtpTarget {
  host: string;
  port: number;
  rtcpPort?: number;
  rtcpMux?: boolean;
}

/** What reached an m-line's public sockets from the far end. */
export interface ReceivedStats {
  rtp: number;
  rtpBytes: number;
  /** Largest RTP packet (header included), bytes. */
  maxRtpBytes: number;
  rtcp: number;
  /** RTCP packets by packet type (each packet of a compound counts): 200 SR, 201 RR, 202 SDES, 203 BYE, 205 RTPFB, 206 PSFB. */
  rtcpTypes: Record<number, number>;
  /** Feedback messages: PSFB PLI (FMT 1) and FIR (FMT 4), RTPFB generic NACK (FMT 1). */
  feedback: { pli: number; fir: number; nack: number };
  /** RTP packets by payload type. */
  payloadTypes: Record<number, number>;
  /** SSRCs of the RTP received. */
  ssrcs: Set<number>;
  /** Every H.264 NAL unit type seen as the first payload byte of a video packet (24 STAP-A, 28 FU-A). */
  nalTypes: Set<number>;
  /** Video: frames (distinct RTP timestamps) that carried an IDR slice, whole or in a STAP-A/FU-A; and when the last came. */
  keyframes: number;
  lastKeyframeAt: number;
  /** Where the last RTP packet came from. */
  from?: { address: string; port: number };
  /** performance.now() of the last RTP packet. */
  lastRtpAt: number;
}

export interface SentStats {
  rtp: number;
  rtcp: number;
  /** RTP that gst-launch produced before connect(), or during a DTMF event, and that was not sent. */
  dropped: number;
  dtmf: number;
}

const CODECS: Record<AudioCodec, { pt: number; name: string; enc: string; pay: string; depay: string; dec: string; rate: number }> = {
  pcmu: { pt: 0, name: 'PCMU', enc: 'mulawenc', pay: 'rtppcmupay', depay: 'rtppcmudepay', dec: 'mulawdec', rate: 8000 },
  pcma: { pt: 8, name: 'PCMA', enc: 'alawenc', pay: 'rtppcmapay', depay: 'rtppcmadepay', dec: 'alawdec', rate: 8000 },
  // RTP clock 8000 (RFC 3551's historical error), audio 16 kHz.
  g722: { pt: 9, name: 'G722', enc: 'avenc_g722', pay: 'rtpg722pay', depay: 'rtpg722depay', dec: 'avdec_g722', rate: 16000 },
};

const DTMF_PT = 101;
const H264_PT = 97;
/** Sample rate of the decoded audio handed to levels(). */
const PCM_RATE = 16000;

// ---------------------------------------------------------------------------------------------
// Child processes: every gst-launch is killed on stop, and on exit of the test process.

const children = new Set<ChildProcess>();
const HAVE_SETPRIV = fs.existsSync('/usr/bin/setpriv');
let exitHook = false;
function track(p: ChildProcess) {
  children.add(p);
  p.once('exit', () => children.delete(p));
  if (!exitHook) {
    exitHook = true;
    process.once('exit', () => {
      for (const c of children) c.kill('SIGKILL');
    });
  }
}

function bindUdp(host: string, port = 0): Promise<dgram.Socket | undefined> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    s.once('error', () => {
      s.close();
      resolve(undefined);
    });
    s.bind(port, host, () => {
      s.removeAllListeners('error');
      s.on('error', () => {});
      resolve(s);
    });
  });
}

/** An even port and the one after it (RTP and RTCP), as RFC 3550 asks. */
async function bindPair(host: string): Promise<[dgram.Socket, dgram.Socket]> {
  for (let i = 0; i < 100; i++) {
    const a = await bindUdp(host);
    if (!a) continue;
    const p = a.address().port;
    if (p % 2 === 0 && p < 65535) {
      const b = await bindUdp(host, p + 1);
      if (b) return [a, b];
    }
    a.close();
  }
  throw new Error(`no free even/odd UDP port pair on ${host}`);
}

/** A UDP port that was free a moment ago, for a gst-launch udpsrc (which cannot be handed a socket). */
async function freeUdpPort(host: string): Promise<number> {
  const s = await bindUdp(host);
  if (!s) throw new Error(`cannot bind UDP on ${host}`);
  const p = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}

function rtpHeaderLength(b: Buffer): number {
  let n = 12 + 4 * (b[0] & 0x0f);
  if (b[0] & 0x10 && b.length >= n + 4) n += 4 + 4 * b.readUInt16BE(n + 2);
  return n;
}

/** An H.264 RTP payload that holds an IDR slice: a single NAL, a STAP-A's NALs, or an FU-A's start. */
function carriesIdr(p: Buffer): boolean {
  const t = p[0] & 0x1f;
  if (t === 5) return true;
  if (t === 28) return p.length > 1 && (p[1] & 0x80) !== 0 && (p[1] & 0x1f) === 5;
  if (t === 24) {
    for (let o = 1; o + 2 < p.length; ) {
      const n = p.readUInt16BE(o);
      if ((p[o + 2] & 0x1f) === 5) return true;
      o += 2 + n;
    }
  }
  return false;
}

/** RTCP or RTP on one port (RFC 5761: RTCP packet types 192-223 are not RTP payload types 64-95 with the marker). */
const isRtcp = (b: Buffer) => b.length >= 8 && (b[0] & 0xc0) === 0x80 && b[1] >= 192 && b[1] <= 223;

// ---------------------------------------------------------------------------------------------
// One m-line: public sockets, the gst-launch that sends and receives it, and the forwarding.

interface LegSpec {
  kind: 'audio' | 'video';
  host: string;
  rtcpMux: boolean;
  /** Payload type of what we send and of what gst-launch's udpsrc expects. */
  pt: number;
  encodingName: string;
  clockRate: number;
  /** Sending chain, ending in a payloader (gst-launch syntax, no spaces inside a token). */
  send: string;
  /** Receiving chain from the jitter buffer's output to `fdsink fd=3`. */
  recv: string;
  /** Extra fields for the udpsrc caps (e.g. rtcp-fb). */
  extraCaps?: string;
  latencyMs: number;
  onOutput(chunk: Buffer): void;
}

class Leg {
  readonly received: ReceivedStats = {
    rtp: 0,
    rtpBytes: 0,
    maxRtpBytes: 0,
    rtcp: 0,
    rtcpTypes: {},
    feedback: { pli: 0, fir: 0, nack: 0 },
    payloadTypes: {},
    ssrcs: new Set(),
    nalTypes: new Set(),
    keyframes: 0,
    lastKeyframeAt: 0,
    lastRtpAt: 0,
  };
  #lastIdrTs = -1;
  readonly sent: SentStats = { rtp: 0, rtcp: 0, dropped: 0, dtmf: 0 };
  target?: Required<RtpTarget>;
  /** Payload type the far end uses for our codec (from its answer); rewritten to spec.pt for gst-launch. */
  recvPt: number;
  /** Our SSRC: gst-launch's, learnt from its first packet. */
  ssrc = 0;
  /** SSRC of the far end's stream, learnt from its packets. */
  remoteSsrc = 0;
  /** Last timestamp sent, and when (for a DTMF event's timestamp). */
  lastTs = 0;
  lastTsAt = 0;
  /** While a DTMF event plays, gst-launch's audio is held back, as a phone does. */
  muted = false;
  #seq = Math.floor(Math.random() * 0x8000);
  #firSeq = 0;
  #proc?: ChildProcess;
  #log = '';
  #stopping = false;
  #exitError?: string;
  #pub!: dgram.Socket;
  #pubRtcp!: dgram.Socket;
  #natRtp!: dgram.Socket;
  #natRtcp!: dgram.Socket;
  #rxPort = 0;
  #rxRtcpPort = 0;
  #firstPacket?: () => void;

  constructor(readonly spec: LegSpec) {
    this.recvPt = spec.pt;
  }

  get port() {
    return this.#pub.address().port;
  }
  get rtcpPort() {
    return this.spec.rtcpMux ? this.port : this.#pubRtcp.address().port;
  }
  log() {
    return this.#log;
  }

  async start() {
    const host = this.spec.host;
    [this.#pub, this.#pubRtcp] = await bindPair(host);
    this.#natRtp = (await bindUdp('127.0.0.1'))!;
    this.#natRtcp = (await bindUdp('127.0.0.1'))!;
    this.#pub.on('message', (m, from) => this.#fromFar(m, from));
    this.#pubRtcp.on('message', (m) => this.#rtcpFromFar(m));
    this.#natRtp.on('message', (m) => this.#fromGst(m));
    this.#natRtcp.on('message', (m) => this.#rtcpFromGst(m));
    // udpsrc cannot be given a socket: take free ports and try again if one was taken meanwhile.
    for (let attempt = 1; ; attempt++) {
      this.#rxPort = await freeUdpPort('127.0.0.1');
      this.#rxRtcpPort = await freeUdpPort('127.0.0.1');
      try {
        await this.#spawn();
        return;
      } catch (e) {
        if (attempt >= 3 || !/bind|resource|address/i.test(String(e))) {
          await this.stop();
          throw e;
        }
      }
    }
  }

  #pipeline(): string[] {
    const s = this.spec;
    const caps =
      `application/x-rtp,media=${s.kind},clock-rate=${s.clockRate},encoding-name=${s.encodingName},payload=${s.pt}` +
      (s.extraCaps ? `,${s.extraCaps}` : '');
    const desc = [
      'rtpsession name=s',
      `${s.send} ! s.send_rtp_sink`,
      `s.send_rtp_src ! udpsink host=127.0.0.1 port=${this.#natRtp.address().port} sync=false async=false`,
      `s.send_rtcp_src ! udpsink host=127.0.0.1 port=${this.#natRtcp.address().port} sync=false async=false`,
      `udpsrc address=127.0.0.1 port=${this.#rxPort} reuse=false caps=${caps} ! s.recv_rtp_sink`,
      `s.recv_rtp_src ! rtpjitterbuffer latency=${s.latencyMs} do-lost=true ! ${s.recv} ! fdsink fd=3 sync=false`,
      `udpsrc address=127.0.0.1 port=${this.#rxRtcpPort} reuse=false caps=application/x-rtcp ! s.recv_rtcp_sink`,
    ].join(' ');
    return desc.split(/\s+/).filter(Boolean);
  }

  #spawn(): Promise<void> {
    this.#log = '';
    this.#exitError = undefined;
    const args = this.#pipeline();
    // setpriv --pdeathsig: gone with the test process even when that is SIGKILLed (no exit hook then).
    const p = HAVE_SETPRIV
      ? spawn('setpriv', ['--pdeathsig', 'KILL', 'gst-launch-1.0', ...args], { stdio: ['ignore', 'pipe', 'pipe', 'pipe'] })
      : spawn('gst-launch-1.0', args, { stdio: ['ignore', 'pipe', 'pipe', 'pipe'] });
    this.#proc = p;
    track(p);
    const keep = (d: Buffer) => {
      this.#log += d.toString();
      if (this.#log.length > 20000) this.#log = this.#log.slice(-10000);
    };
    p.stdout!.on('data', keep);
    p.stderr!.on('data', keep);
    (p.stdio[3] as NodeJS.ReadableStream).on('data', (d: Buffer) => this.spec.onOutput(d));
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#firstPacket = undefined;
        reject(new Error(`gst-launch (${this.spec.kind}) sent nothing in 10 s:\n${this.#log}\npipeline: ${args.join(' ')}`));
      }, 10_000);
      this.#firstPacket = () => {
        clearTimeout(timer);
        this.#firstPacket = undefined;
        resolve();
      };
      p.once('exit', (code, signal) => {
        if (this.#stopping) return;
        this.#exitError = `gst-launch (${this.spec.kind}) exited (${code ?? signal}):\n${this.#log}`;
        if (this.#firstPacket) {
          clearTimeout(timer);
          this.#firstPacket = undefined;
          reject(new Error(`${this.#exitError}\npipeline: ${args.join(' ')}`));
        }
      });
    });
  }

  /** Throws with gst-launch's output when the pipeline died. */
  check() {
    if (this.#exitError) throw new Error(this.#exitError);
  }

  connect(t: RtpTarget) {
    const mux = t.rtcpMux ?? this.spec.rtcpMux;
    this.target = { host: t.host, port: t.port, rtcpMux: mux, rtcpPort: t.rtcpPort ?? (mux ? t.port : t.port + 1) };
  }

  /** Sends one RTP packet on this stream: renumbered into our one sequence space. */
  sendRtp(pkt: Buffer) {
    if (!this.target) return;
    pkt.writeUInt16BE(this.#seq, 2);
    this.#seq = (this.#seq + 1) & 0xffff;
    this.sent.rtp++;
    this.#pub.send(pkt, this.target.port, this.target.host);
  }

  sendRtcp(pkt: Buffer) {
    if (!this.target) return;
    this.sent.rtcp++;
    (this.target.rtcpMux ? this.#pub : this.#pubRtcp).send(pkt, this.target.rtcpPort, this.target.host);
  }

  #fromGst(m: Buffer) {
    if (m.length < 12) return;
    this.#firstPacket?.();
    this.ssrc = m.readUInt32BE(8);
    if (!this.target || this.muted) {
      this.sent.dropped++;
      return;
    }
    this.lastTs = m.readUInt32BE(4);
    this.lastTsAt = performance.now();
    this.sendRtp(m);
  }

  #rtcpFromGst(m: Buffer) {
    this.sendRtcp(m);
  }

  #fromFar(m: Buffer, from: dgram.RemoteInfo) {
    if (isRtcp(m)) return this.#rtcpFromFar(m);
    if (m.length < 12 || (m[0] & 0xc0) !== 0x80) return;
    const r = this.received;
    r.rtp++;
    r.rtpBytes += m.length;
    r.maxRtpBytes = Math.max(r.maxRtpBytes, m.length);
    r.lastRtpAt = performance.now();
    r.from = { address: from.address, port: from.port };
    const pt = m[1] & 0x7f;
    r.payloadTypes[pt] = (r.payloadTypes[pt] ?? 0) + 1;
    const ssrc = m.readUInt32BE(8);
    r.ssrcs.add(ssrc);
    if (pt !== this.recvPt) return;
    this.remoteSsrc = ssrc;
    const h = rtpHeaderLength(m);
    if (this.spec.kind === 'video' && m.length > h) {
      r.nalTypes.add(m[h] & 0x1f);
      const ts = m.readUInt32BE(4);
      if (carriesIdr(m.subarray(h)) && ts !== this.#lastIdrTs) {
        this.#lastIdrTs = ts;
        r.keyframes++;
        r.lastKeyframeAt = performance.now();
      }
    }
    if (this.recvPt !== this.spec.pt) {
      m = Buffer.from(m);
      m[1] = (m[1] & 0x80) | this.spec.pt;
    }
    this.#natRtp.send(m, this.#rxPort, '127.0.0.1');
  }

  #rtcpFromFar(m: Buffer) {
    const r = this.received;
    for (let off = 0; off + 4 <= m.length; ) {
      const pt = m[off + 1];
      const fmt = m[off] & 0x1f;
      r.rtcp++;
      r.rtcpTypes[pt] = (r.rtcpTypes[pt] ?? 0) + 1;
      if (pt === 206 && fmt === 1) r.feedback.pli++;
      if (pt === 206 && fmt === 4) r.feedback.fir++;
      if (pt === 205 && fmt === 1) r.feedback.nack++;
      off += (m.readUInt16BE(off + 2) + 1) * 4;
    }
    this.#natRtcp.send(m, this.#rxRtcpPort, '127.0.0.1');
  }

  /** RTCP PSFB (PLI, or FIR with its sequence number) after an empty RR, as a compound packet. */
  sendKeyframeRequest(kind: 'pli' | 'fir') {
    const sender = this.ssrc || 1;
    const rr = Buffer.alloc(8);
    rr[0] = 0x80;
    rr[1] = 201;
    rr.writeUInt16BE(1, 2);
    rr.writeUInt32BE(sender, 4);
    let fb: Buffer;
    if (kind === 'pli') {
      fb = Buffer.alloc(12);
      fb[0] = 0x80 | 1;
      fb[1] = 206;
      fb.writeUInt16BE(2, 2);
      fb.writeUInt32BE(sender, 4);
      fb.writeUInt32BE(this.remoteSsrc, 8);
    } else {
      fb = Buffer.alloc(20);
      fb[0] = 0x80 | 4;
      fb[1] = 206;
      fb.writeUInt16BE(4, 2);
      fb.writeUInt32BE(sender, 4);
      fb.writeUInt32BE(0, 8); // media source: unused for FIR (RFC 5104 4.3.1.2)
      fb.writeUInt32BE(this.remoteSsrc, 12);
      fb[16] = this.#firSeq = (this.#firSeq + 1) & 0xff;
    }
    this.sendRtcp(Buffer.concat([rr, fb]));
  }

  async stop() {
    this.#stopping = true;
    const p = this.#proc;
    if (p && p.exitCode === null && p.signalCode === null) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => p.kill('SIGKILL'), 2000);
        p.once('exit', () => {
          clearTimeout(t);
          resolve();
        });
        p.kill('SIGTERM');
      });
    }
    for (const s of [this.#pub, this.#pubRtcp, this.#natRtp, this.#natRtcp]) {
      try {
        s?.close();
      } catch {
        /* already closed */
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Audio: a tone out, decoded PCM in, Goertzel levels.

class PcmBuffer {
  #chunks: Array<{ at: number; s: Int16Array }> = [];
  #odd?: number;
  push(d: Buffer) {
    let b = d;
    if (this.#odd !== undefined) b = Buffer.concat([Buffer.from([this.#odd]), d]);
    this.#odd = b.length % 2 ? b[b.length - 1] : undefined;
    const n = b.length >> 1;
    const s = new Int16Array(n);
    for (let i = 0; i < n; i++) s[i] = b.readInt16LE(2 * i);
    const now = performance.now();
    this.#chunks.push({ at: now, s });
    while (this.#chunks.length && this.#chunks[0].at < now - 2500) this.#chunks.shift();
  }
  /** The audio that arrived in the last `ms`, zero-filled to `ms` where nothing came (silence). */
  recent(ms: number): Float64Array {
    const n = Math.round((PCM_RATE * ms) / 1000);
    const out = new Float64Array(n);
    const since = performance.now() - ms;
    let k = n;
    for (let c = this.#chunks.length - 1; c >= 0 && k > 0; c--) {
      const ch = this.#chunks[c];
      if (ch.at < since) break;
      for (let i = ch.s.length - 1; i >= 0 && k > 0; i--) out[--k] = ch.s[i] / 32768;
    }
    return out;
  }
}

/** dBFS of a sine at each frequency in `x` (Hann-windowed Goertzel); -150 for nothing. */
export function goertzelLevels(x: Float64Array, rate: number, freqs: number[]): number[] {
  const n = x.length;
  const w = new Float64Array(n);
  let wsum = 0;
  for (let i = 0; i < n; i++) {
    w[i] = 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / (n - 1));
    wsum += w[i];
  }
  return freqs.map((f) => {
    const k = (2 * Math.PI * f) / rate;
    const coeff = 2 * Math.cos(k);
    let s1 = 0;
    let s2 = 0;
    for (let i = 0; i < n; i++) {
      const s0 = x[i] * w[i] + coeff * s1 - s2;
      s2 = s1;
      s1 = s0;
    }
    const re = s1 - s2 * Math.cos(k);
    const im = s2 * Math.sin(k);
    const amp = (2 * Math.sqrt(re * re + im * im)) / wsum;
    return Math.max(-150, 20 * Math.log10(amp || 1e-12));
  });
}

interface AudioOpts {
  codec: AudioCodec;
  freq?: number;
  volume?: number;
  host: string;
  rtcpMux: boolean;
}

function audioLeg(o: AudioOpts, pcm: PcmBuffer): Leg {
  const c = CODECS[o.codec];
  const src = o.freq
    ? `audiotestsrc is-live=true freq=${o.freq} wave=sine volume=${o.volume ?? 0.3}`
    : 'audiotestsrc is-live=true wave=silence';
  return new Leg({
    kind: 'audio',
    host: o.host,
    rtcpMux: o.rtcpMux,
    pt: c.pt,
    encodingName: c.name,
    clockRate: 8000,
    send:
      `${src} samplesperbuffer=${c.rate / 50} ! audioconvert ! audioresample ! audio/x-raw,format=S16LE,rate=${c.rate},channels=1 ! ` +
      `${c.enc} ! ${c.pay} pt=${c.pt} min-ptime=20000000 max-ptime=20000000`,
    recv: `${c.depay} ! ${c.dec} ! audioconvert ! audioresample ! audio/x-raw,format=S16LE,rate=${PCM_RATE},channels=1`,
    latencyMs: 60,
    onOutput: (d) => pcm.push(d),
  });
}

const audioMedia = (leg: Leg, codec: AudioCodec) => {
  const c = CODECS[codec];
  return [
    `m=audio ${leg.port} RTP/AVP ${c.pt} ${DTMF_PT}`,
    ...(leg.spec.rtcpMux ? [] : [`a=rtcp:${leg.rtcpPort}`]),
    `a=rtpmap:${c.pt} ${c.name}/8000`,
    `a=rtpmap:${DTMF_PT} telephone-event/8000`,
    `a=fmtp:${DTMF_PT} 0-15`,
    'a=ptime:20',
    'a=sendrecv',
    ...(leg.spec.rtcpMux ? ['a=rtcp-mux'] : []),
  ];
};

const sessionHeader = (host: string, name: string) => [
  'v=0',
  `o=- ${Date.now()} 1 IN IP4 ${host}`,
  `s=${name}`,
  `c=IN IP4 ${host}`,
  't=0 0',
];

const DTMF_EVENTS = '0123456789*#ABCD';

/** RFC 4733 events on an audio leg, every 20 ms; gst-launch's audio held back meanwhile. */
async function sendDtmf(leg: Leg, digit: string, durationMs: number) {
  const event = DTMF_EVENTS.indexOf(digit.toUpperCase());
  if (event < 0 || digit.length !== 1) throw new Error(`not a DTMF digit: ${digit}`);
  if (!leg.target) throw new Error('sendDtmf before connect()');
  leg.muted = true;
  try {
    const ts = (leg.lastTs + Math.round(((performance.now() - leg.lastTsAt) * 8000) / 1000)) >>> 0;
    const packet = (duration: number, first: boolean, end: boolean) => {
      const b = Buffer.alloc(16);
      b[0] = 0x80;
      b[1] = (first ? 0x80 : 0) | DTMF_PT;
      b.writeUInt32BE(ts, 4);
      b.writeUInt32BE(leg.ssrc, 8);
      b[12] = event;
      b[13] = (end ? 0x80 : 0) | 10; // volume -10 dBm0
      b.writeUInt16BE(Math.min(0xffff, duration), 14);
      leg.sent.dtmf++;
      leg.sendRtp(b);
    };
    const step = 20;
    const total = Math.max(step, Math.round(durationMs / step) * step);
    const start = performance.now();
    for (let t = step; t < total; t += step) {
      packet(t * 8, t === step, false);
      await new Promise((r) => setTimeout(r, Math.max(0, start + t - performance.now())));
    }
    for (let i = 0; i < 3; i++) packet(total * 8, total === step && i === 0, true);
  } finally {
    leg.muted = false;
  }
}

// ---------------------------------------------------------------------------------------------
// SDP answers.

export interface AnsweredMedia {
  media: string;
  port: number;
  target: RtpTarget;
  /** Payload type the answer gives each encoding name (upper case). */
  pts: Record<string, number>;
}

/** The m-lines of an SDP answer: where to send each (c=, port, a=rtcp, a=rtcp-mux). Port 0 (rejected) is left out. */
export function parseAnswer(sdp: string): AnsweredMedia[] {
  const lines = sdp.split(/\r?\n/);
  let sessionHost = '';
  const out: AnsweredMedia[] = [];
  let cur: AnsweredMedia | undefined;
  for (const l of lines) {
    let m: RegExpMatchArray | null;
    if ((m = l.match(/^m=(\w+) (\d+)/))) {
      cur = { media: m[1], port: Number(m[2]), target: { host: sessionHost, port: Number(m[2]) }, pts: {} };
      if (cur.port !== 0) out.push(cur);
    } else if ((m = l.match(/^c=IN IP4 (\S+)/))) {
      if (cur) cur.target.host = m[1];
      else sessionHost = m[1];
    } else if (cur && (m = l.match(/^a=rtcp:(\d+)/))) cur.target.rtcpPort = Number(m[1]);
    else if (cur && /^a=rtcp-mux/.test(l)) cur.target.rtcpMux = true;
    else if (cur && (m = l.match(/^a=rtpmap:(\d+) ([^/]+)\//))) cur.pts[m[2].toUpperCase()] = Number(m[1]);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The phone.

export interface PhoneOptions {
  codec: AudioCodec;
  /** Tone sent, Hz; none (or 0): silence. */
  freq?: number;
  /** audiotestsrc volume, 0-1. Default 0.3. */
  volume?: number;
  /** Address of its sockets (and in its SDP). Default 127.0.0.1. */
  host?: string;
  /** Offer and use RTCP on the RTP port. Default false (RTCP on port+1). */
  rtcpMux?: boolean;
}

export interface Phone {
  readonly codec: AudioCodec;
  readonly host: string;
  /** Its RTP port (even); RTCP on port+1 unless rtcp-mux. */
  readonly port: number;
  readonly rtcpPort: number;
  readonly payloadType: number;
  /** RTP/AVP SDP offer. */
  offer(): string;
  /** Connects to what an SDP answer says. */
  answer(sdp: string): void;
  /** Where to send RTP (RTCP to rtcpPort, default port+1). */
  connect(host: string, port: number, rtcpPort?: number): void;
  /** dBFS at each frequency in the last ~1 s of audio received and decoded (silence where none came); throws if gst-launch died. */
  levels(freqs: number[]): number[];
  readonly received: ReceivedStats;
  readonly sent: SentStats;
  /** RFC 4733 event (PT 101) for `digit`, lasting `durationMs`, ending with three E-bit packets; resolves when sent. */
  sendDtmf(digit: string, durationMs?: number): Promise<void>;
  /** gst-launch's output so far. */
  log(): string;
  /** Throws (with gst-launch's output) when its pipeline died. */
  check(): void;
  stop(): Promise<void>;
}

export async function startPhone(o: PhoneOptions): Promise<Phone> {
  const host = o.host ?? '127.0.0.1';
  const pcm = new PcmBuffer();
  const leg = audioLeg({ codec: o.codec, freq: o.freq, volume: o.volume, host, rtcpMux: !!o.rtcpMux }, pcm);
  await leg.start();
  const c = CODECS[o.codec];
  return {
    codec: o.codec,
    host,
    port: leg.port,
    rtcpPort: leg.rtcpPort,
    payloadType: c.pt,
    offer: () => [...sessionHeader(host, 'phone'), ...audioMedia(leg, o.codec), ''].join('\r\n'),
    answer(sdp) {
      const a = parseAnswer(sdp).find((m) => m.media === 'audio');
      if (!a) throw new Error(`answer has no audio m-line:\n${sdp}`);
      leg.recvPt = a.pts[c.name] ?? c.pt;
      leg.connect(a.target);
    },
    connect: (h, port, rtcpPort) => leg.connect({ host: h, port, rtcpPort }),
    levels(freqs) {
      leg.check();
      return goertzelLevels(pcm.recent(1000), PCM_RATE, freqs);
    },
    received: leg.received,
    sent: leg.sent,
    sendDtmf: (digit, ms = 200) => sendDtmf(leg, digit, ms),
    log: () => leg.log(),
    check: () => leg.check(),
    stop: () => leg.stop(),
  };
}

// ---------------------------------------------------------------------------------------------
// The room system.

export interface RoomSystemOptions {
  /** Colour it sends (videotestsrc foreground-color: the whole frame for solid-color, the ball for ball). */
  color: [number, number, number];
  /** videotestsrc pattern. Default solid-color; smpte or ball give frames large enough to need slicing (pm=0) or FU-A (pm=1). */
  pattern?: string;
  /** With a tone: an audio m-line too. */
  freq?: number;
  /** Audio codec when freq is given: pcmu (default) or g722. */
  audioCodec?: 'pcmu' | 'g722';
  /** 0: single NAL units only (x264 slices kept under the MTU, no STAP-A/FU-A); 1: STAP-A and FU-A allowed. */
  packetizationMode: 0 | 1;
  /** Offered in fmtp. Default 42e01e (constrained baseline, level 3.0). */
  profileLevelId?: string;
  host?: string;
  width?: number;
  height?: number;
  fps?: number;
  /** Frames between IDRs when nobody asks for one. Default 2 s worth. */
  keyIntMax?: number;
  rtcpMux?: boolean;
}

export interface MediaLine {
  readonly port: number;
  readonly rtcpPort: number;
  readonly received: ReceivedStats;
  readonly sent: SentStats;
}

export interface RoomSystem {
  readonly host: string;
  readonly audio?: MediaLine;
  readonly video: MediaLine;
  /** Audio (if any) then video m-line, RTP/AVP. */
  offer(): string;
  answer(sdp: string): void;
  connect(t: { audio?: RtpTarget; video?: RtpTarget }): void;
  /** Mean RGB of the 9x9 block around (x, y) of the latest decoded frame it received; null before the first. */
  sample(x: number, y: number): [number, number, number] | null;
  frameSize(): { width: number; height: number } | null;
  /** Frames decoded so far (at most 4 a second are kept), and when the last was (performance.now()). */
  readonly frames: { count: number; lastAt: number };
  /** NAL types seen in the video it received (payload[0] & 0x1f). */
  readonly nalTypes: Set<number>;
  levels(freqs: number[]): number[];
  sendPli(): void;
  sendFir(): void;
  sendDtmf(digit: string, durationMs?: number): Promise<void>;
  log(): string;
  check(): void;
  stop(): Promise<void>;
}

/** Splits a byte stream of PNG images (signature, chunks, IEND) into whole images. */
class PngSplitter {
  #buf: Buffer = Buffer.alloc(0);
  constructor(private readonly onImage: (png: Buffer) => void) {}
  push(d: Buffer) {
    this.#buf = this.#buf.length ? Buffer.concat([this.#buf, d]) : d;
    for (;;) {
      let off = 8;
      let done = false;
      while (off + 12 <= this.#buf.length) {
        const len = this.#buf.readUInt32BE(off);
        const type = this.#buf.toString('latin1', off + 4, off + 8);
        if (off + 12 + len > this.#buf.length) break;
        off += 12 + len;
        if (type === 'IEND') {
          done = true;
          break;
        }
      }
      if (!done) return;
      this.onImage(this.#buf.subarray(0, off));
      this.#buf = this.#buf.subarray(off);
    }
  }
}

export async function startRoomSystem(o: RoomSystemOptions): Promise<RoomSystem> {
  const host = o.host ?? '127.0.0.1';
  const { width = 640, height = 360, fps = 15 } = o;
  const plid = o.profileLevelId ?? '42e01e';
  const pm = o.packetizationMode;
  const hex = (n: number) => Math.max(0, Math.min(255, n)).toString(16).padStart(2, '0');
  const argb = `0xFF${o.color.map(hex).join('')}`;

  let frame: { width: number; height: number; data: Buffer; channels: number } | null = null;
  const frames = { count: 0, lastAt: 0 };
  let decoding = false;
  let pending: Buffer | undefined;
  const decode = async (png: Buffer) => {
    if (decoding) {
      pending = png;
      return;
    }
    decoding = true;
    try {
      for (let p: Buffer | undefined = png; p; p = pending, pending = undefined) {
        try {
          const { data, info } = await sharp(p).raw().toBuffer({ resolveWithObject: true });
          frame = { width: info.width, height: info.height, data, channels: info.channels };
          frames.count++;
          frames.lastAt = performance.now();
        } catch {
          /* a torn image: the next one will do */
        }
      }
    } finally {
      decoding = false;
    }
  };
  const pngs = new PngSplitter((p) => void decode(p));

  const video = new Leg({
    kind: 'video',
    host,
    rtcpMux: !!o.rtcpMux,
    pt: H264_PT,
    encodingName: 'H264',
    clockRate: 90000,
    send:
      `videotestsrc is-live=true pattern=${o.pattern ?? 'solid-color'} foreground-color=${argb} ! video/x-raw,width=${width},height=${height},framerate=${fps}/1 ! ` +
      `videoconvert ! x264enc speed-preset=ultrafast tune=zerolatency key-int-max=${o.keyIntMax ?? fps * 2} bitrate=600 threads=1 ` +
      (pm === 0 ? 'option-string=slice-max-size=1000 ' : '') +
      `! video/x-h264,profile=constrained-baseline,stream-format=byte-stream ! ` +
      `rtph264pay pt=${H264_PT} mtu=1200 config-interval=-1 aggregate-mode=${pm === 0 ? 'none' : 'zero-latency'}`,
    recv:
      'rtph264depay request-keyframe=true wait-for-keyframe=true ! avdec_h264 max-threads=1 ! videoconvert ! videorate drop-only=true ! ' +
      'video/x-raw,format=RGB,framerate=4/1 ! pngenc compression-level=1 snapshot=false',
    extraCaps: 'rtcp-fb-nack-pli=(boolean)true,rtcp-fb-ccm-fir=(boolean)true',
    latencyMs: 100,
    onOutput: (d) => pngs.push(d),
  });
  const pcm = new PcmBuffer();
  const audioCodec = o.audioCodec ?? 'pcmu';
  const audio = o.freq ? audioLeg({ codec: audioCodec, freq: o.freq, host, rtcpMux: !!o.rtcpMux }, pcm) : undefined;
  try {
    await Promise.all([video.start(), audio?.start()]);
  } catch (e) {
    await Promise.all([video.stop(), audio?.stop()]);
    throw e;
  }
  const line = (l: Leg): MediaLine => ({ port: l.port, rtcpPort: l.rtcpPort, received: l.received, sent: l.sent });
  return {
    host,
    audio: audio && line(audio),
    video: line(video),
    offer: () =>
      [
        ...sessionHeader(host, 'room system'),
        ...(audio ? audioMedia(audio, audioCodec) : []),
        `m=video ${video.port} RTP/AVP ${H264_PT}`,
        ...(o.rtcpMux ? [] : [`a=rtcp:${video.rtcpPort}`]),
        `a=rtpmap:${H264_PT} H264/90000`,
        `a=fmtp:${H264_PT} profile-level-id=${plid};packetization-mode=${pm}`,
        `a=rtcp-fb:${H264_PT} ccm fir`,
        `a=rtcp-fb:${H264_PT} nack pli`,
        'a=sendrecv',
        ...(o.rtcpMux ? ['a=rtcp-mux'] : []),
        '',
      ].join('\r\n'),
    answer(sdp) {
      const ms = parseAnswer(sdp);
      const v = ms.find((m) => m.media === 'video');
      if (!v) throw new Error(`answer has no video m-line:\n${sdp}`);
      video.recvPt = v.pts.H264 ?? H264_PT;
      video.connect(v.target);
      const a = ms.find((m) => m.media === 'audio');
      if (audio && a) {
        audio.recvPt = a.pts[CODECS[audioCodec].name] ?? CODECS[audioCodec].pt;
        audio.connect(a.target);
      }
    },
    connect(t) {
      if (t.video) video.connect(t.video);
      if (t.audio && audio) audio.connect(t.audio);
    },
    sample(x, y) {
      video.check();
      const f = frame;
      if (!f) return null;
      const sum = [0, 0, 0];
      let n = 0;
      for (let yy = Math.max(0, y - 4); yy <= Math.min(f.height - 1, y + 4); yy++)
        for (let xx = Math.max(0, x - 4); xx <= Math.min(f.width - 1, x + 4); xx++) {
          const i = (yy * f.width + xx) * f.channels;
          for (let c = 0; c < 3; c++) sum[c] += f.data[i + c];
          n++;
        }
      return sum.map((v) => Math.round(v / Math.max(1, n))) as [number, number, number];
    },
    frameSize: () => (frame ? { width: frame.width, height: frame.height } : null),
    frames,
    nalTypes: video.received.nalTypes,
    levels(freqs) {
      audio?.check();
      return goertzelLevels(pcm.recent(1000), PCM_RATE, freqs);
    },
    sendPli: () => video.sendKeyframeRequest('pli'),
    sendFir: () => video.sendKeyframeRequest('fir'),
    sendDtmf: (digit, ms = 200) => {
      if (!audio) throw new Error('room system has no audio m-line');
      return sendDtmf(audio, digit, ms);
    },
    log: () => video.log() + (audio ? audio.log() : ''),
    check() {
      video.check();
      audio?.check();
    },
    stop: async () => {
      await Promise.all([video.stop(), audio?.stop()]);
    },
  };
}

/**
 * Waits until `phone` hears `theirs` well above its own tone and above a frequency beside it; then,
 * once the second of audio it measures is all there, checks it hears it at about the level it was
 * sent (the test endpoints' and browsers' tones are about -11 dBFS): the codec round trip kept it.
 */
export async function expectPhoneHears(phone: { levels(f: number[]): number[]; log(): string }, theirs: number, own: number, what: string, timeoutMs = 20_000): Promise<void> {
  const ok = ([t, o, b]: number[]) => t > -35 && t > o + 20 && t > b + 20;
  const deadline = Date.now() + timeoutMs;
  while (!ok(phone.levels([theirs, own, theirs * 1.3]))) {
    if (Date.now() > deadline) {
      console.log(phone.log().slice(-2000));
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; levels ${phone.levels([theirs, own, theirs * 1.3]).map((x) => x.toFixed(1))}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  await new Promise((r) => setTimeout(r, 1200));
  const [t, o, beside] = phone.levels([theirs, own, theirs * 1.3]);
  console.log(`${what}: ${t.toFixed(1)} dBFS at ${theirs} Hz, own ${own} Hz ${o.toFixed(1)}, ${Math.round(theirs * 1.3)} Hz ${beside.toFixed(1)}`);
  if (!ok([t, o, beside]) || t <= -20) throw new Error(`${what}: ${t.toFixed(1)} dBFS at ${theirs} Hz, own ${o.toFixed(1)}, beside ${beside.toFixed(1)}`);
}
