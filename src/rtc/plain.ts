/**
 * A plain RTP leg: RTP/AVP without ICE, DTLS or SRTP, as SIP gateways, PBXs and room systems
 * speak it. One UDP port pair per m-line (RTCP on port + 1, or on the RTP port with rtcp-mux),
 * symmetric RTP (we send to where the leg's packets come from, which is what gets through a NAT),
 * RTCP sender and receiver reports, PLI/FIR both ways, and RFC 4733 DTMF in.
 */
import crypto from 'node:crypto';
import dgram from 'node:dgram';
import { BadRequestError } from '../core/errors.js';
import type { LinkReport, MediaKind, TrackInfo } from './native.js';
import { parsePlainOffer, plainAnswer, type PlainAnswerMedia, type PlainAudioCodec, type PlainCodecChoice, type PlainMediaOffer, type PlainOffer } from './plainSdp.js';
import { answerDirection } from './sdp.js';
import { DTMF_DIGITS, SessionHandlers, type DtmfEvent, type MediaSession, type RtpHandler } from './session.js';

export interface PlainOptions {
  /** The address we announce in answers (the node's public address for RTP). */
  address: string;
  /** Where the sockets bind: the announced address when it is this machine's, else 0.0.0.0. */
  bindAddress: string;
  portRange: [number, number];
  canPublish?: boolean;
  canSubscribe?: boolean;
}

/** An SDP-less leg (Asterisk's externalMedia): one audio codec, RTP to `remote` or to whoever sends first. */
export interface PlainLegSpec {
  codec: PlainAudioCodec;
  payloadType?: number;
  /** RFC 4733 telephone-event's payload type (default 101, the common choice), at the codec's clock. */
  dtmfPayloadType?: number;
  remote?: { host: string; port: number };
}

const STATIC_PT: Record<PlainAudioCodec, number> = { pcmu: 0, pcma: 8, g722: 9, opus: 111 };
const NTP_EPOCH_OFFSET = 2_208_988_800;
/** A new source takes over a latched leg only after the old one was silent this long (no hijack by a stray packet). */
const RELATCH_MS = 1000;

interface Endpoint {
  address: string;
  port: number;
}

/** One m-line's sockets and counters. */
class Line {
  rtp!: dgram.Socket;
  rtcp?: dgram.Socket;
  port = 0;
  remote?: Endpoint;
  remoteRtcp?: Endpoint;
  lastFromRemote = 0;
  readonly ssrc = crypto.randomBytes(4).readUInt32BE(0);
  remoteSsrc?: number;
  // Sent, for sender reports.
  packetsSent = 0;
  octetsSent = 0;
  lastRtpTs = 0;
  lastRtpAt = 0;
  // Received, for receiver reports (RFC 3550 A.1, A.3, A.8).
  received = 0;
  baseSeq = -1;
  maxSeq = 0;
  cycles = 0;
  expectedPrior = 0;
  receivedPrior = 0;
  jitter = 0;
  transit?: number;
  lastSr?: { middle: number; at: number };
  remoteFractionLost = 0;
  firSeq = 0;

  constructor(
    readonly kind: MediaKind,
    readonly choice: PlainCodecChoice,
    readonly offer: PlainMediaOffer,
  ) {
    if (offer.port !== 0 && offer.address !== '0.0.0.0') {
      this.remote = { address: offer.address, port: offer.port };
      this.remoteRtcp = { address: offer.rtcpAddress, port: offer.rtcpPort };
    }
  }

  get mux(): boolean {
    return this.offer.rtcpMux;
  }
}

export class PlainRtpSession implements MediaSession {
  readonly tracks: Partial<Record<MediaKind, TrackInfo>> = {};
  readonly #lines = new Map<MediaKind, Line>();
  #answer = '';
  #closed = false;
  #connected = false;
  #lastHeard = performance.now();
  readonly #on = new SessionHandlers();
  #lastDtmf?: number;
  #rtcpTimer?: NodeJS.Timeout;
  readonly #cname = `mcu-${crypto.randomBytes(6).toString('hex')}`;

  private constructor(readonly opts: PlainOptions) {}

  /** Answers a plain RTP offer. */
  static async answer(offerSdp: string, opts: PlainOptions): Promise<PlainRtpSession> {
    return PlainRtpSession.#build(parsePlainOffer(offerSdp), opts);
  }

  /** An SDP-less leg: the answer is just our address and port. */
  static async open(spec: PlainLegSpec, opts: PlainOptions): Promise<PlainRtpSession> {
    const clock = spec.codec === 'opus' ? 48000 : 8000;
    const pt = spec.payloadType ?? STATIC_PT[spec.codec];
    const remote = spec.remote;
    const offer: PlainOffer = {
      media: [
        {
          kind: 'audio',
          index: 0,
          proto: 'RTP/AVP',
          formats: String(pt),
          address: remote?.host ?? '0.0.0.0',
          port: remote?.port ?? 0,
          rtcpAddress: remote?.host ?? '0.0.0.0',
          rtcpPort: remote ? remote.port + 1 : 0,
          rtcpMux: false,
          direction: 'sendrecv',
          choice: { codec: spec.codec, payloadType: pt, clockRate: clock, channels: spec.codec === 'opus' ? 2 : undefined },
          dtmfPayloadType: (spec.dtmfPayloadType ?? 101) === pt ? undefined : (spec.dtmfPayloadType ?? 101),
          fir: false,
          pli: false,
        },
      ],
    };
    return PlainRtpSession.#build(offer, opts);
  }

  static async #build(offer: PlainOffer, opts: PlainOptions): Promise<PlainRtpSession> {
    const s = new PlainRtpSession(opts);
    try {
      const ports = new Map<number, PlainAnswerMedia>();
      for (const m of offer.media) {
        if (!m.choice) continue;
        const direction = answerDirection(m.direction, opts);
        const line = new Line(m.kind, m.choice, m);
        await s.#bind(line);
        s.#lines.set(m.kind, line);
        ports.set(m.index, { port: line.port, direction });
        s.tracks[m.kind] = {
          codec: m.choice.codec,
          payloadType: m.choice.payloadType,
          recv: direction === 'sendrecv' || direction === 'recvonly',
          send: direction === 'sendrecv' || direction === 'sendonly',
          ...(m.choice.packetizationMode !== undefined ? { packetizationMode: m.choice.packetizationMode } : {}),
          clockRate: m.choice.clockRate,
        };
      }
      s.#answer = plainAnswer(offer, opts.address, ports, String(Date.now()));
    } catch (err) {
      await s.close();
      throw err;
    }
    // With the endpoint's address known from its offer, we can send at once; otherwise at its first packet.
    if ([...s.#lines.values()].some((l) => l.remote)) setImmediate(() => s.#setConnected());
    s.#rtcpTimer = setInterval(() => s.#sendReports(), 2500 + Math.random() * 1000);
    s.#rtcpTimer.unref();
    return s;
  }

  /** An even port for RTP and the odd one after it for RTCP, both free, from the range. */
  async #bind(line: Line): Promise<void> {
    const [lo, hi] = this.opts.portRange;
    const evens = Math.floor((hi - lo) / 2);
    if (evens < 1) throw new BadRequestError('the RTP port range has no room for an RTP/RTCP pair', 'bad_config');
    for (let attempt = 0; attempt < 64; attempt++) {
      const port = lo + (lo % 2) + 2 * Math.floor(Math.random() * evens);
      if (port + 1 > hi) continue;
      const rtp = await this.#socket(port);
      if (!rtp) continue;
      const rtcp = line.mux ? undefined : await this.#socket(port + 1);
      if (!line.mux && !rtcp) {
        rtp.close();
        continue;
      }
      line.rtp = rtp;
      line.rtcp = rtcp;
      line.port = port;
      rtp.on('message', (msg, from) => this.#onPacket(line, msg, from, false));
      rtcp?.on('message', (msg, from) => this.#onPacket(line, msg, from, true));
      return;
    }
    throw new Error('no free RTP port pair in the range');
  }

  #socket(port: number): Promise<dgram.Socket | undefined> {
    return new Promise((resolve) => {
      const sock = dgram.createSocket({ type: 'udp4', recvBufferSize: 1 << 20 });
      sock.once('error', () => {
        sock.close();
        resolve(undefined);
      });
      sock.bind(port, this.opts.bindAddress, () => {
        sock.removeAllListeners('error');
        sock.on('error', () => undefined);
        resolve(sock);
      });
    });
  }

  #setConnected(): void {
    if (this.#connected || this.#closed) return;
    this.#connected = true;
    this.#on.state.forEach((h) => h('connected'));
  }

  #onPacket(line: Line, msg: Buffer, from: dgram.RemoteInfo, onRtcpPort: boolean): void {
    if (this.#closed || msg.length < 8 || msg[0] >> 6 !== 2) return;
    // RFC 5761: with rtcp-mux, payload types 64-95 (RTCP packet types 192-223) are RTCP.
    const pt = msg[1] & 0x7f;
    const rtcp = onRtcpPort || (line.mux && pt >= 64 && pt <= 95);
    const now = performance.now();
    const source = { address: from.address, port: from.port };
    if (rtcp) {
      if (!line.remoteRtcp || line.remoteRtcp.address !== source.address || line.remoteRtcp.port !== source.port) line.remoteRtcp = source;
      this.#lastHeard = now;
      this.#onRtcp(line, msg);
      return;
    }
    if (msg.length < 12) return;
    const ssrc = msg.readUInt32BE(8);
    if (pt !== line.choice.payloadType && pt !== line.offer.dtmfPayloadType) return;
    // Symmetric RTP: answer to where the leg's packets come from (RFC 4961), latched on the first
    // one, and moved only when the source we follow has gone quiet.
    const r = line.remote;
    if (!r || r.address !== source.address || r.port !== source.port) {
      if (!r || line.lastFromRemote === 0 || now - line.lastFromRemote > RELATCH_MS) {
        line.remote = source;
        if (!line.mux) line.remoteRtcp = { address: source.address, port: source.port + 1 };
        else line.remoteRtcp = source;
      } else {
        return; // another source while ours is live: not ours
      }
    }
    line.lastFromRemote = now;
    this.#lastHeard = now;
    this.#setConnected();
    line.remoteSsrc = ssrc;
    this.#countReceived(line, msg, now);
    if (pt === line.offer.dtmfPayloadType) {
      this.#onDtmf(line, msg);
      return;
    }
    for (const h of this.#on.rtp[line.kind]) h(msg);
  }

  #countReceived(line: Line, msg: Buffer, now: number): void {
    const seq = msg.readUInt16BE(2);
    line.received++;
    if (line.baseSeq < 0) {
      line.baseSeq = seq;
      line.maxSeq = seq;
    } else {
      const delta = (seq - line.maxSeq) & 0xffff;
      if (delta > 0 && delta < 0x8000) {
        if (seq < line.maxSeq) line.cycles += 0x10000;
        line.maxSeq = seq;
      }
    }
    // Interarrival jitter, in timestamp units (RFC 3550 A.8).
    const arrival = (now / 1000) * line.choice.clockRate;
    const transit = arrival - msg.readUInt32BE(4);
    if (line.transit !== undefined) {
      const d = Math.abs(transit - line.transit);
      line.jitter += (d - line.jitter) / 16;
    }
    line.transit = transit;
  }

  #onDtmf(line: Line, msg: Buffer): void {
    const off = 12 + (msg[0] & 0x0f) * 4;
    if (msg.length < off + 4) return;
    const event = msg[off];
    const end = (msg[off + 1] & 0x80) !== 0;
    const duration = msg.readUInt16BE(off + 2);
    const ts = msg.readUInt32BE(4);
    // The end packet is sent three times: the event counts once (by its timestamp).
    if (!end || ts === this.#lastDtmf) return;
    this.#lastDtmf = ts;
    const digit = DTMF_DIGITS[event];
    if (digit === undefined) return;
    const e = { digit, durationMs: Math.round((duration * 1000) / line.choice.clockRate) };
    this.#on.dtmf.forEach((h) => h(e));
  }

  #onRtcp(line: Line, buf: Buffer): void {
    let off = 0;
    while (off + 4 <= buf.length) {
      const count = buf[off] & 0x1f;
      const type = buf[off + 1];
      const len = (buf.readUInt16BE(off + 2) + 1) * 4;
      if (off + len > buf.length || buf[off] >> 6 !== 2) return;
      const pkt = buf.subarray(off, off + len);
      if (type === 200 && pkt.length >= 28) {
        // SR: its NTP middle 32 bits and when it came, for our receiver report's LSR/DLSR.
        line.lastSr = { middle: pkt.readUInt32BE(10), at: performance.now() };
        this.#readReportBlocks(line, pkt, 28, count);
      } else if (type === 201) {
        this.#readReportBlocks(line, pkt, 8, count);
      } else if (type === 206 && (count === 1 || count === 4)) {
        // PSFB: PLI (FMT 1) or FIR (FMT 4, RFC 5104): the viewer needs a keyframe.
        if (line.kind === 'video') this.#on.keyframe.forEach((h) => h());
      } else if (type === 203) {
        // BYE: the endpoint hung up.
        this.#on.state.forEach((h) => h('closed'));
      }
      off += len;
    }
  }

  #readReportBlocks(line: Line, pkt: Buffer, start: number, count: number): void {
    for (let i = 0; i < count; i++) {
      const b = start + i * 24;
      if (b + 24 > pkt.length) return;
      if (pkt.readUInt32BE(b) === line.ssrc) line.remoteFractionLost = pkt[b + 4] / 256;
    }
  }

  get answerSdp(): string {
    return this.#answer;
  }

  get connected(): boolean {
    return this.#connected;
  }

  get silentMs(): number {
    return performance.now() - this.#lastHeard;
  }

  /** Our RTP port for each kind (an SDP-less leg's answer). */
  port(kind: MediaKind): number | undefined {
    return this.#lines.get(kind)?.port;
  }

  onRtp(kind: MediaKind, handler: RtpHandler): () => void {
    return SessionHandlers.add(this.#on.rtp[kind], handler);
  }

  onKeyframeRequest(handler: () => void): () => void {
    return SessionHandlers.add(this.#on.keyframe, handler);
  }

  onStateChange(handler: (state: string) => void): () => void {
    return SessionHandlers.add(this.#on.state, handler);
  }

  onDtmf(handler: (e: DtmfEvent) => void): () => void {
    return SessionHandlers.add(this.#on.dtmf, handler);
  }

  sendRtp(kind: MediaKind, packet: Buffer): void {
    const line = this.#lines.get(kind);
    if (!line?.remote || this.#closed || packet.length < 12) return;
    packet[1] = (packet[1] & 0x80) | line.choice.payloadType;
    packet.writeUInt32BE(line.ssrc, 8);
    line.packetsSent++;
    line.octetsSent += packet.length - 12;
    line.lastRtpTs = packet.readUInt32BE(4);
    line.lastRtpAt = Date.now();
    send(line.rtp, packet, line.remote);
  }

  /** PLI where the endpoint said it takes it, else FIR (RFC 5104), which room systems answer. */
  requestKeyframe(): void {
    const line = this.#lines.get('video');
    if (!line || line.remoteSsrc === undefined || this.#closed) return;
    const fb =
      line.offer.pli || !line.offer.fir
        ? psfb(1, line.ssrc, line.remoteSsrc, Buffer.alloc(0))
        : psfb(4, line.ssrc, 0, fciFir(line.remoteSsrc, line.firSeq++ & 0xff));
    this.#sendRtcp(line, Buffer.concat([this.#report(line), fb]));
  }

  link(): LinkReport {
    const v = this.#lines.get('video');
    return { fractionLost: v?.remoteFractionLost ?? 0, repaired: 0, refused: 0, packetsSent: v?.packetsSent ?? 0, packetsNacked: 0, congested: false };
  }

  /** A sender report (or a receiver report when we have sent nothing yet) with SDES CNAME, every few seconds. */
  #sendReports(): void {
    for (const line of this.#lines.values()) {
      try {
        if (line.remoteRtcp || line.remote) this.#sendRtcp(line, this.#report(line));
      } catch {
        // A report that cannot be built is skipped; the media goes on.
      }
    }
  }

  #report(line: Line): Buffer {
    const blocks = line.remoteSsrc !== undefined && line.received > 0 ? [this.#reportBlock(line)] : [];
    let head: Buffer;
    if (line.packetsSent > 0) {
      head = Buffer.alloc(28);
      const nowMs = Date.now();
      const secs = Math.floor(nowMs / 1000) + NTP_EPOCH_OFFSET;
      const frac = Math.floor(((nowMs % 1000) / 1000) * 2 ** 32);
      head.writeUInt32BE(line.ssrc, 4);
      head.writeUInt32BE(secs >>> 0, 8);
      head.writeUInt32BE(frac >>> 0, 12);
      // The RTP timestamp that corresponds to this NTP instant, from the last packet sent.
      head.writeUInt32BE((line.lastRtpTs + Math.round(((nowMs - line.lastRtpAt) * line.choice.clockRate) / 1000)) >>> 0, 16);
      head.writeUInt32BE(line.packetsSent >>> 0, 20);
      head.writeUInt32BE(line.octetsSent >>> 0, 24);
      head[1] = 200;
    } else {
      head = Buffer.alloc(8);
      head.writeUInt32BE(line.ssrc, 4);
      head[1] = 201;
    }
    head[0] = 0x80 | blocks.length;
    const report = Buffer.concat([head, ...blocks]);
    report.writeUInt16BE(report.length / 4 - 1, 2);
    return Buffer.concat([report, sdes(line.ssrc, this.#cname)]);
  }

  #reportBlock(line: Line): Buffer {
    const b = Buffer.alloc(24);
    const extMax = line.cycles + line.maxSeq;
    const expected = extMax - line.baseSeq + 1;
    const lost = Math.max(0, Math.min(0x7fffff, expected - line.received));
    const expectedInterval = expected - line.expectedPrior;
    const receivedInterval = line.received - line.receivedPrior;
    line.expectedPrior = expected;
    line.receivedPrior = line.received;
    const lostInterval = expectedInterval - receivedInterval;
    const fraction = expectedInterval <= 0 || lostInterval <= 0 ? 0 : Math.min(255, Math.floor((lostInterval << 8) / expectedInterval));
    b.writeUInt32BE(line.remoteSsrc!, 0);
    b.writeUInt32BE((((fraction & 0xff) << 24) | lost) >>> 0, 4);
    b.writeUInt32BE(extMax >>> 0, 8);
    b.writeUInt32BE(Math.round(line.jitter) >>> 0, 12);
    if (line.lastSr) {
      b.writeUInt32BE(line.lastSr.middle >>> 0, 16);
      b.writeUInt32BE(Math.round(((performance.now() - line.lastSr.at) / 1000) * 65536) >>> 0, 20);
    }
    return b;
  }

  #sendRtcp(line: Line, packet: Buffer): void {
    const to = line.remoteRtcp ?? (line.remote && { address: line.remote.address, port: line.mux ? line.remote.port : line.remote.port + 1 });
    if (!to || this.#closed) return;
    send(line.rtcp ?? line.rtp, packet, to);
  }

  get closed(): boolean {
    return this.#closed;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    // BYE (RFC 3550 6.6), so the endpoint knows the leg ended.
    for (const line of this.#lines.values()) {
      if (!line.rtp) continue;
      const bye = Buffer.alloc(8);
      bye[0] = 0x81;
      bye[1] = 203;
      bye.writeUInt16BE(1, 2);
      bye.writeUInt32BE(line.ssrc, 4);
      this.#sendRtcp(line, Buffer.concat([this.#report(line), bye]));
    }
    this.#closed = true;
    clearInterval(this.#rtcpTimer);
    this.#on.clear();
    // Let the BYE leave before the sockets close.
    await new Promise((r) => setImmediate(r));
    for (const line of this.#lines.values()) {
      line.rtp?.close();
      line.rtcp?.close();
    }
  }
}

/**
 * Sends one datagram to a numeric address and a real port; anything else is dropped, never thrown
 * (a port of 0 or over 65535 from an offer made dgram throw) and never resolved as a name.
 */
function send(sock: dgram.Socket, packet: Buffer, to: Endpoint): void {
  if (!(to.port >= 1 && to.port <= 65535) || !/^\d{1,3}(\.\d{1,3}){3}$/.test(to.address)) return;
  try {
    sock.send(packet, to.port, to.address);
  } catch {
    // A closed socket: the leg is ending.
  }
}

function psfb(fmt: number, sender: number, media: number, fci: Buffer): Buffer {
  const b = Buffer.alloc(12 + fci.length);
  b[0] = 0x80 | fmt;
  b[1] = 206;
  b.writeUInt16BE(b.length / 4 - 1, 2);
  b.writeUInt32BE(sender, 4);
  b.writeUInt32BE(media, 8);
  fci.copy(b, 12);
  return b;
}

function fciFir(ssrc: number, seq: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(ssrc, 0);
  b[4] = seq;
  return b;
}

function sdes(ssrc: number, cname: string): Buffer {
  const text = Buffer.from(cname, 'utf8');
  const itemLen = 4 + 2 + text.length + 1; // ssrc, type+len, text, end
  const padded = Math.ceil(itemLen / 4) * 4;
  const b = Buffer.alloc(4 + padded);
  b[0] = 0x81;
  b[1] = 202;
  b.writeUInt16BE(b.length / 4 - 1, 2);
  b.writeUInt32BE(ssrc, 4);
  b[8] = 1; // CNAME
  b[9] = text.length;
  text.copy(b, 10);
  return b;
}
