import { BadRequestError, UnsupportedMediaError } from '../core/errors.js';
import { splitOffer, type Direction } from './sdp.js';

/**
 * Plain RTP offers and answers (RFC 3264 over RTP/AVP, no ICE, no DTLS): what SIP gateways, PBXs
 * and room systems send. Pure; the sockets are in src/rtc/plain.ts.
 */

export type PlainAudioCodec = 'pcmu' | 'pcma' | 'g722' | 'opus';
export type PlainVideoCodec = 'h264' | 'vp8';
export type PlainCodec = PlainAudioCodec | PlainVideoCodec;

export interface PlainCodecChoice {
  codec: PlainCodec;
  payloadType: number;
  /** The RTP clock (G.722's is 8000 though its audio is 16 kHz: RFC 3551 4.5.2). */
  clockRate: number;
  channels?: number;
  /** The offer's fmtp for this payload type, echoed in the answer (H.264's profile and mode). */
  fmtp?: string;
  /** H.264 only: 0 (single NAL units) or 1 (non-interleaved). */
  packetizationMode?: 0 | 1;
}

export interface PlainMediaOffer {
  kind: 'audio' | 'video';
  /** The m-line as offered (the answer has one line per offered line, in order). */
  index: number;
  proto: string;
  /** Offered formats (the answer rejects a line it takes nothing from with port 0 and these). */
  formats: string;
  /** Where the endpoint receives RTP; 0.0.0.0 or port 0 means "unknown yet" (latch on first packet). */
  address: string;
  port: number;
  /** Where it receives RTCP (a=rtcp, else port + 1), unless it multiplexes RTCP on the RTP port. */
  rtcpAddress: string;
  rtcpPort: number;
  rtcpMux: boolean;
  direction: Direction;
  /** What we take from this line, in the offer's order of preference; undefined: nothing. */
  choice?: PlainCodecChoice;
  /** RFC 4733 telephone-event at the chosen codec's clock. */
  dtmfPayloadType?: number;
  /** Feedback the endpoint understands: `a=rtcp-fb:* ccm fir`, `nack pli`. */
  fir: boolean;
  pli: boolean;
  /** a=ptime, in ms. */
  ptime?: number;
}

export interface PlainOffer {
  media: PlainMediaOffer[];
}

/** An RTP/AVP(F) offer, as opposed to a WebRTC one (UDP/TLS/RTP/SAVPF) or SRTP (RTP/SAVP). */
export function isPlainRtpOffer(sdp: string): boolean {
  const protos = [...sdp.matchAll(/^m=(?:audio|video) \d+ (\S+) /gm)].map((m) => m[1]);
  return protos.length > 0 && protos.every((p) => p === 'RTP/AVP' || p === 'RTP/AVPF');
}

// RFC 3551's static payload types we take.
const STATIC: Record<number, { name: string; clock: number }> = {
  0: { name: 'pcmu', clock: 8000 },
  8: { name: 'pcma', clock: 8000 },
  9: { name: 'g722', clock: 8000 },
};

/** H.264 we can send and decode: constrained baseline (or baseline with the constraint flag), either packetization mode. */
function h264Mode(fmtp: string | undefined): 0 | 1 | undefined {
  const f = fmtp ?? '';
  const pm = /packetization-mode=(\d)/.exec(f)?.[1] ?? '0';
  if (pm !== '0' && pm !== '1') return undefined;
  // No profile-level-id is baseline level 1 by RFC 6184's default (42000a).
  const plid = /profile-level-id=([0-9a-f]{6})/i.exec(f)?.[1];
  if (plid) {
    const profile = parseInt(plid.slice(0, 2), 16);
    const constraints = parseInt(plid.slice(2, 4), 16);
    // 0x42: baseline; 0x4d (main) or 0x58 (extended) only when they also claim constrained baseline (constraint_set1).
    const constrainedBaseline = profile === 0x42 || ((profile === 0x4d || profile === 0x58) && (constraints & 0x40) !== 0);
    if (!constrainedBaseline) return undefined;
  }
  return pm === '1' ? 1 : 0;
}

export function parsePlainOffer(sdp: string): PlainOffer {
  const { session, sections } = splitOffer(sdp);
  const sessionAddress = connection(session);
  const sessionDir = session.find((l) => /^a=(sendrecv|sendonly|recvonly|inactive)$/.test(l))?.slice(2) as Direction | undefined;
  const media: PlainMediaOffer[] = [];
  const taken = { audio: false, video: false };
  sections.forEach((sec, index) => {
    const m = /^m=(\w+) (\d+)(?:\/\d+)? ([\w/]+) ?(.*)$/.exec(sec[0]);
    if (!m) throw new BadRequestError(`malformed media line "${sec[0].slice(0, 80)}"`, 'bad_sdp');
    const [, kind, portText, proto, formats] = m;
    const port = Number(portText);
    if (port > 65535) throw new BadRequestError(`bad port in "${sec[0].slice(0, 80)}"`, 'bad_sdp');
    const address = connection(sec) ?? sessionAddress;
    if ((kind === 'audio' || kind === 'video') && port !== 0 && !address) {
      throw new BadRequestError(`the ${kind} m-line has no connection address (c=IN IP4 ...)`, 'bad_sdp');
    }
    const rtpmap = new Map<number, { name: string; clock: number; channels?: number }>();
    const fmtp = new Map<number, string>();
    let fir = false;
    let pli = false;
    for (const l of sec) {
      const r = /^a=rtpmap:(\d+) ([^/\s]+)\/(\d+)(?:\/(\d+))?/.exec(l);
      if (r) rtpmap.set(Number(r[1]), { name: r[2].toLowerCase(), clock: Number(r[3]), channels: r[4] ? Number(r[4]) : undefined });
      const f = /^a=fmtp:(\d+) (.*)$/.exec(l);
      if (f) fmtp.set(Number(f[1]), f[2].trim());
      if (/^a=rtcp-fb:\S+ ccm fir/.test(l)) fir = true;
      if (/^a=rtcp-fb:\S+ nack pli/.test(l)) pli = true;
    }
    const rtcpLine = sec.find((l) => l.startsWith('a=rtcp:'));
    // RFC 3605: a port, and maybe an address; only an IPv4 address is taken (never a name to resolve).
    const rtcp = rtcpLine ? /^a=rtcp:(\d{1,5})(?: IN IP4 (\d{1,3}(?:\.\d{1,3}){3}))?$/.exec(rtcpLine.trim()) : undefined;
    if (rtcpLine && (!rtcp || Number(rtcp[1]) < 1 || Number(rtcp[1]) > 65535)) {
      throw new BadRequestError(`bad a=rtcp line "${rtcpLine.slice(0, 60)}": it must be a port and, optionally, IN IP4 and an address`, 'bad_sdp');
    }
    const rtcpMux = sec.includes('a=rtcp-mux');
    const pts = formats.trim() ? formats.trim().split(/\s+/).map(Number) : [];
    const entry: PlainMediaOffer = {
      kind: kind === 'video' ? 'video' : 'audio',
      index,
      proto,
      formats,
      address: address ?? '0.0.0.0',
      port,
      rtcpAddress: rtcp?.[2] ?? address ?? '0.0.0.0',
      rtcpPort: rtcpMux ? port : rtcp ? Number(rtcp[1]) : port + 1,
      rtcpMux,
      direction: (sec.find((l) => /^a=(sendrecv|sendonly|recvonly|inactive)$/.test(l))?.slice(2) as Direction) ?? sessionDir ?? 'sendrecv',
      fir,
      pli,
      ptime: Number(/^a=ptime:(\d+)/m.exec(sec.join('\n'))?.[1]) || undefined,
    };
    media.push(entry);
    if ((kind !== 'audio' && kind !== 'video') || port === 0 || (proto !== 'RTP/AVP' && proto !== 'RTP/AVPF') || taken[entry.kind]) return;
    for (const pt of pts) {
      if (!Number.isInteger(pt) || pt < 0 || pt > 127) continue;
      const map = rtpmap.get(pt) ?? STATIC[pt];
      if (!map) continue;
      const name = map.name;
      let choice: PlainCodecChoice | undefined;
      if (kind === 'audio') {
        if ((name === 'pcmu' || name === 'pcma' || name === 'g722') && map.clock === 8000) choice = { codec: name, payloadType: pt, clockRate: 8000 };
        else if (name === 'opus' && map.clock === 48000) choice = { codec: 'opus', payloadType: pt, clockRate: 48000, channels: 2, fmtp: fmtp.get(pt) };
      } else if (name === 'h264' && map.clock === 90000) {
        const mode = h264Mode(fmtp.get(pt));
        if (mode !== undefined) choice = { codec: 'h264', payloadType: pt, clockRate: 90000, fmtp: fmtp.get(pt), packetizationMode: mode };
      } else if (name === 'vp8' && map.clock === 90000) {
        choice = { codec: 'vp8', payloadType: pt, clockRate: 90000 };
      }
      if (choice) {
        entry.choice = choice;
        taken[entry.kind] = true;
        break;
      }
    }
    if (entry.choice && kind === 'audio') {
      for (const pt of pts) {
        const map = rtpmap.get(pt);
        if (map?.name === 'telephone-event' && map.clock === entry.choice.clockRate) {
          entry.dtmfPayloadType = pt;
          break;
        }
      }
    }
  });
  if (!media.some((m) => m.kind === 'audio' || m.kind === 'video')) throw new BadRequestError('the offer has no audio or video m-line', 'bad_sdp');
  if (!media.some((m) => m.choice)) {
    throw new UnsupportedMediaError(
      'no common codec: over plain RTP this server speaks PCMU, PCMA, G.722 and Opus, and H.264 constrained baseline (packetization-mode 0 or 1) and VP8',
    );
  }
  return { media };
}

function connection(lines: string[]): string | undefined {
  const c = lines.find((l) => l.startsWith('c='));
  if (!c) return undefined;
  const m = /^c=IN IP4 (\d{1,3}(?:\.\d{1,3}){3})(?:\/\d+)?$/.exec(c.trim());
  if (!m) throw new BadRequestError(`only IPv4 unicast connection addresses are supported, got "${c.slice(0, 60)}"`, 'bad_sdp');
  return m[1];
}

export interface PlainAnswerMedia {
  /** Our port for this line (its RTCP is port + 1 unless the offer multiplexes). */
  port: number;
  direction: Direction;
}

const RTPMAP: Record<PlainCodec, (c: PlainCodecChoice) => string> = {
  pcmu: () => 'PCMU/8000',
  pcma: () => 'PCMA/8000',
  g722: () => 'G722/8000',
  opus: () => 'opus/48000/2',
  h264: () => 'H264/90000',
  vp8: () => 'VP8/90000',
};

/**
 * The answer: one m-line per offered line, in order; a line we take nothing from is rejected
 * with port 0. `ports` has our port for each line we take (by m-line index).
 */
export function plainAnswer(offer: PlainOffer, address: string, ports: Map<number, PlainAnswerMedia>, sessionId: string): string {
  const out = ['v=0', `o=webrtc-mcu ${sessionId} 1 IN IP4 ${address}`, 's=webrtc-mcu', `c=IN IP4 ${address}`, 't=0 0'];
  for (const m of offer.media) {
    const ours = ports.get(m.index);
    const c = m.choice;
    if (!ours || !c) {
      out.push(`m=${m.kind} 0 ${m.proto} ${m.formats.trim() || '0'}`);
      continue;
    }
    const pts = [c.payloadType, ...(m.dtmfPayloadType !== undefined ? [m.dtmfPayloadType] : [])];
    out.push(`m=${m.kind} ${ours.port} ${m.proto} ${pts.join(' ')}`);
    out.push(`a=rtpmap:${c.payloadType} ${RTPMAP[c.codec](c)}`);
    if (c.codec === 'h264') {
      // Echo the level they decode (we cap what we send to it), in the mode they asked for.
      const level = /profile-level-id=([0-9a-f]{6})/i.exec(c.fmtp ?? '')?.[1] ?? '42e01f';
      out.push(`a=fmtp:${c.payloadType} profile-level-id=${level};packetization-mode=${c.packetizationMode ?? 0}`);
    } else if (c.codec === 'opus' && c.fmtp) {
      out.push(`a=fmtp:${c.payloadType} minptime=10;useinbandfec=1`);
    }
    if (m.kind === 'video') {
      out.push(`a=rtcp-fb:${c.payloadType} ccm fir`, `a=rtcp-fb:${c.payloadType} nack pli`);
    }
    if (m.dtmfPayloadType !== undefined) {
      out.push(`a=rtpmap:${m.dtmfPayloadType} telephone-event/${c.clockRate}`, `a=fmtp:${m.dtmfPayloadType} 0-16`);
    }
    if (m.kind === 'audio') out.push('a=ptime:20');
    out.push(m.rtcpMux ? 'a=rtcp-mux' : `a=rtcp:${ours.port + 1}`);
    out.push(`a=${ours.direction}`);
  }
  return out.join('\r\n') + '\r\n';
}



