/**
 * The one module that imports werift. A PeerSession is one WHIP-style peer: it answers an offer
 * (non-trickle), carries at most one audio and one video m-line each way, and exposes RTP in and
 * out as Buffers plus keyframe requests in both directions.
 */
import {
  RTCPeerConnection,
  RTCRtpCodecParameters,
  RtcpPayloadSpecificFeedback,
  RtcpTransportLayerFeedback,
  useAudioLevelIndication,
  useTransportWideCC,
  type MediaStreamTrack,
  type RTCRtpTransceiver,
  type RtcpPacket,
  type RtpPacket,
} from 'werift';
import { UnsupportedMediaError, BadRequestError } from '../core/errors.js';
import { addTwcc, twccSample, type TwccTotals } from '../core/rungs.js';
import type { VideoCodec } from '../core/pipelines.js';
import { answerDirection, inspectOffer, stripMdnsCandidates } from './sdp.js';
import { SessionHandlers, type DtmfEvent, type MediaSession, type RtpHandler } from './session.js';

const AUDIO_LEVEL_URI = 'urn:ietf:params:rtp-hdrext:ssrc-audio-level';

export interface RtcOptions {
  iceAddresses: string[];
  /** False: every audio packet is decoded, whatever its level (MCU_INPUT_GATE=0). Default true. */
  inputGate?: boolean;
  portRange: [number, number];
  gatherTimeoutMs?: number;
  /** The peer's grants: false answers its media with a direction that takes none of it (recvonly offers stay as they are). */
  canPublish?: boolean;
  /** False: the answer sends the peer nothing. */
  canSubscribe?: boolean;
  /** False: NACK and RTX are not negotiated (MCU_NACK=0), to measure what they repair. Default true. */
  nack?: boolean;
  /** A video codec to take when the offer has it, whatever the offer's order (MCU_VIDEO_CODEC). */
  preferVideo?: VideoCodec;
}

export type MediaKind = 'audio' | 'video';

export interface TrackInfo {
  codec: VideoCodec | 'opus' | 'pcmu' | 'pcma' | 'g722';
  payloadType: number;
  /** The RTP clock, where it is not the codec's usual one (plain legs say it always). */
  clockRate?: number;
  /** H.264 over a plain leg: 0 is single NAL units only (RFC 6184). */
  packetizationMode?: 0 | 1;
  /** We receive this kind from the peer. */
  recv: boolean;
  /** We send this kind to the peer. */
  send: boolean;
}

// transport-cc: the viewer reports when each packet arrived, and werift's sender turns that into
// an estimate of what its link carries (README, Weak links); goog-remb where only REMB is offered.
const feedback = (nack: boolean) => [
  ...(nack ? [{ type: 'nack' }] : []),
  { type: 'nack', parameter: 'pli' },
  { type: 'ccm', parameter: 'fir' },
  { type: 'goog-remb' },
  { type: 'transport-cc' },
];

/** Our video codecs in `order`; without `nack`, neither NACK nor RTX is offered (MCU_NACK=0, for comparison). */
function videoCodecs(order: VideoCodec[], nack = true): RTCRtpCodecParameters[] {
  const FEEDBACK = feedback(nack);
  const all: Record<VideoCodec, RTCRtpCodecParameters> = {
    vp8: new RTCRtpCodecParameters({ mimeType: 'video/VP8', clockRate: 90000, payloadType: 96, rtcpFeedback: FEEDBACK }),
    h264: new RTCRtpCodecParameters({
      mimeType: 'video/H264',
      clockRate: 90000,
      payloadType: 102,
      rtcpFeedback: FEEDBACK,
      parameters: 'level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f',
    }),
  };
  // RTX (RFC 4588): repairs go on their own stream, so the viewer can tell a repair from a late packet.
  const rtx: Record<VideoCodec, RTCRtpCodecParameters> = {
    vp8: new RTCRtpCodecParameters({ mimeType: 'video/rtx', clockRate: 90000, payloadType: 97, parameters: 'apt=96' }),
    h264: new RTCRtpCodecParameters({ mimeType: 'video/rtx', clockRate: 90000, payloadType: 103, parameters: 'apt=102' }),
  };
  return order.flatMap((c) => (nack ? [all[c], rtx[c]] : [all[c]]));
}

/** What the transport says about a viewer's downlink, for its bandwidth ladder. */
export interface LinkReport {
  /** bits/s the link carries, by TWCC (werift's SenderBandwidthEstimator) or else REMB; undefined before any. */
  estimate?: number;
  /** Transport-wide feedback so far, summed (src/core/rungs.ts, TwccTotals); undefined without any. */
  twcc?: TwccTotals;
  /** Where `estimate` came from. */
  source?: 'twcc' | 'remb';
  /** Fraction of the video lost on the way, from the viewer's receiver reports (0-1). */
  fractionLost: number;
  /** Video packets retransmitted for NACKs, and NACKed packets not repaired to keep within the budget. */
  repaired: number;
  refused: number;
  /** Video packets sent, and those the viewer NACKed (each once): their ratio over a stretch is the loss it sees. */
  packetsSent: number;
  packetsNacked: number;
  /** werift's own verdict from late transport-cc feedback. */
  congested: boolean;
}

const OPUS = () =>
  new RTCRtpCodecParameters({
    mimeType: 'audio/opus',
    clockRate: 48000,
    channels: 2,
    payloadType: 111,
    parameters: 'minptime=10;useinbandfec=1',
  });

/** A PLI (RFC 4585, FMT 1) or a FIR (RFC 5104, FMT 4): the peer asks for a keyframe. The bench's
 * generator (bench/generator.mjs) reads its viewers' requests with this too. */
export const isKeyframeRequest = (p: RtcpPacket): boolean => {
  if (!(p instanceof RtcpPayloadSpecificFeedback)) return false;
  const count = (p.feedback as { count?: number }).count;
  return count === 1 || count === 4;
};

/** The SDP without generic NACK feedback lines (`a=rtcp-fb:PT nack`; `nack pli` stays). */
export const withoutGenericNack = (sdp: string) => sdp.replace(/^a=rtcp-fb:\d+ nack\r?\n/gm, '');

/** G.711 (RFC 3551's static payload types), for WebRTC peers that offer nothing else. */
const G711 = () => [
  new RTCRtpCodecParameters({ mimeType: 'audio/PCMU', clockRate: 8000, channels: 1, payloadType: 0 }),
  new RTCRtpCodecParameters({ mimeType: 'audio/PCMA', clockRate: 8000, channels: 1, payloadType: 8 }),
];

export { answerDirection } from './sdp.js';

export class PeerSession implements MediaSession {
  readonly #pc: RTCPeerConnection;
  readonly #transceivers = new Map<MediaKind, RTCRtpTransceiver>();
  readonly tracks: Partial<Record<MediaKind, TrackInfo>> = {};
  #answer = '';
  #closed = false;
  #lastHeard = performance.now();
  #connected = false;
  readonly #on = new SessionHandlers();
  #remoteVideoSsrc?: number;
  readonly #link = { twcc: undefined as number | undefined, twccTotals: undefined as TwccTotals | undefined, twccAt: 0, remb: undefined as number | undefined, repaired: 0, refused: 0, sent: 0, nacked: 0, congested: false };
  /** Retransmissions allowed now (a token bucket, in packets): repairs count against the link. */
  #repairTokens = 50;
  #repairRefillAt = performance.now();

  private constructor(pc: RTCPeerConnection) {
    this.#pc = pc;
  }

  /** Answers a WHIP offer. Throws BadRequestError/UnsupportedMediaError for offers we cannot take. */
  static async answer(offerSdp: string, opts: RtcOptions): Promise<PeerSession> {
    const summary = inspectOffer(offerSdp);
    const offeredVideo = summary.media.find((m) => m.kind === 'video');
    const videoOrder: VideoCodec[] = offeredVideo?.codecs.filter((c): c is VideoCodec => c !== 'opus') ?? [];
    // The server's preference, where the offer has it: H.264 costs the server's encoders less than
    // half what VP8 does (x264 ultrafast 0.03 core at 360p against 0.07).
    if (opts.preferVideo && videoOrder.includes(opts.preferVideo)) videoOrder.sort((a, b) => Number(b === opts.preferVideo) - Number(a === opts.preferVideo));
    for (const c of ['vp8', 'h264'] as VideoCodec[]) if (!videoOrder.includes(c)) videoOrder.push(c);

    const pc = new RTCPeerConnection({
      iceServers: [],
      iceAdditionalHostAddresses: opts.iceAddresses,
      icePortRange: opts.portRange,
      iceUseIpv6: false,
      iceUseIpv4: true,
      pendingRtp: false,
      codecs: { video: videoCodecs(videoOrder, opts.nack !== false), audio: [OPUS(), ...G711()] },
      // The sender's audio level in every audio packet (RFC 6464; browsers send it): a silent
      // microphone's packets need not be decoded (src/media/inputGate.ts).
      headerExtensions: { audio: [useAudioLevelIndication()], video: [useTransportWideCC()] },
    });
    const session = new PeerSession(pc);
    try {
      await session.#negotiate(stripMdnsCandidates(offerSdp), summary.media, opts);
    } catch (err) {
      await session.close();
      if (err instanceof BadRequestError || err instanceof UnsupportedMediaError) throw err;
      throw new BadRequestError(`the SDP offer could not be applied: ${(err as Error).message}`, 'bad_sdp');
    }
    return session;
  }

  async #negotiate(sdp: string, offered: ReturnType<typeof inspectOffer>['media'], opts: RtcOptions): Promise<void> {
    const gatherTimeoutMs = opts.gatherTimeoutMs ?? 5000;
    const pc = this.#pc;
    await pc.setRemoteDescription({ type: 'offer', sdp });
    for (const t of pc.getTransceivers()) {
      const kind = t.kind as MediaKind;
      const o = offered.find((m) => m.kind === kind && (m.mid === undefined || m.mid === t.mid));
      if (!o || this.#transceivers.has(kind) || o.codecs.length === 0) {
        t.setDirection('inactive');
        continue;
      }
      t.setDirection(answerDirection(o.direction, opts));
      this.#transceivers.set(kind, t);
    }
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    if (pc.iceGatheringState !== 'complete') {
      await pc.iceGatheringStateChange.watch((s) => s === 'complete', gatherTimeoutMs).catch(() => undefined);
    }
    // werift answers with the feedback the offer lists, whatever codecs we gave it: without NACK
    // (MCU_NACK=0, for comparison) the answer must not say `nack`, or the browser NACKs anyway.
    this.#answer = opts.nack === false ? withoutGenericNack(pc.localDescription!.sdp) : pc.localDescription!.sdp;

    for (const [kind, t] of this.#transceivers) {
      const codec = t.codecs.find((c) => !/rtx|red|ulpfec/i.test(c.mimeType));
      if (!codec) throw new UnsupportedMediaError(`no common codec for ${kind}`);
      const name = codec.mimeType.split('/')[1].toLowerCase() as TrackInfo['codec'];
      const dir = t.direction;
      this.tracks[kind] = {
        codec: name,
        payloadType: codec.payloadType,
        clockRate: codec.clockRate,
        recv: dir === 'sendrecv' || dir === 'recvonly',
        send: dir === 'sendrecv' || dir === 'sendonly',
      };
      const seen = new Set<MediaStreamTrack>();
      const levelId = kind === 'audio' ? t.headerExtensions.find((e) => e.uri === AUDIO_LEVEL_URI)?.id : undefined;
      const listen = (track: MediaStreamTrack) => {
        if (seen.has(track)) return;
        seen.add(track);
        track.onReceiveRtp.subscribe((rtp: RtpPacket) => {
          this.#lastHeard = performance.now();
          if (kind === 'video') this.#remoteVideoSsrc = rtp.header.ssrc;
          const buf = rtp.serialize();
          let level: number | undefined;
          if (levelId !== undefined) {
            const ext = rtp.header.extensions.find((e) => e.id === levelId);
            if (ext && ext.payload.length > 0) level = ext.payload[0] & 0x7f;
          }
          for (const h of this.#on.rtp[kind]) h(buf, level);
        });
      };
      // werift may create the remote track while applying the offer, before we get here.
      t.receiver.tracks.forEach(listen);
      t.onTrack.subscribe(listen);
      const onRtcp = (p: RtcpPacket) => {
        this.#lastHeard = performance.now();
        if (kind === 'video' && isKeyframeRequest(p)) this.#on.keyframe.forEach((h) => h());
      };
      // On a sendrecv m-line werift delivers the viewer's PLI on the receiver, otherwise on the sender.
      t.receiver.onRtcp.subscribe(onRtcp);
      t.sender.onRtcp.subscribe(onRtcp);
      if (kind === 'video' && this.tracks.video?.send) this.#watchLink(t, opts.nack !== false);
    }
    pc.connectionStateChange.subscribe((s) => {
      if (s === 'connected') {
        this.#connected = true;
        this.#lastHeard = performance.now();
      }
      this.#on.state.forEach((h) => h(s));
    });
  }

  /**
   * Loads werift's lazily required modules and runs its certificate and key code once, so that
   * the first real join does not stall the event loop (and everyone's media) while it does so.
   */
  static async warmUp(): Promise<void> {
    const pc = new RTCPeerConnection({ iceServers: [], iceUseIpv6: false, codecs: { video: videoCodecs(['vp8']), audio: [OPUS()] } });
    try {
      pc.addTransceiver('video', { direction: 'recvonly' });
      await pc.setLocalDescription(await pc.createOffer());
    } finally {
      await pc.close().catch(() => undefined);
    }
  }

  get answerSdp(): string {
    return this.#answer;
  }

  get closed(): boolean {
    return this.#closed;
  }

  get connected(): boolean {
    return this.#connected;
  }

  /** Milliseconds since any RTP or RTCP arrived from the peer. */
  get silentMs(): number {
    return performance.now() - this.#lastHeard;
  }

  /** Each returns a function that unsubscribes the handler. */
  onRtp(kind: MediaKind, handler: RtpHandler): () => void {
    return SessionHandlers.add(this.#on.rtp[kind], handler);
  }

  /** The peer (a viewer) asked for a keyframe with PLI or FIR. */
  onKeyframeRequest(handler: () => void): () => void {
    return SessionHandlers.add(this.#on.keyframe, handler);
  }

  onStateChange(handler: (state: string) => void): () => void {
    return SessionHandlers.add(this.#on.state, handler);
  }

  /** WebRTC peers here negotiate no telephone-event: nothing to report. */
  onDtmf(_handler: (e: DtmfEvent) => void): () => void {
    return () => undefined;
  }

  /**
   * Follows what the viewer's link carries: werift's TWCC estimate, REMB, receiver-report loss; and
   * holds NACK repairs to a budget of a tenth of the estimate (at least 20 packets a second), so that
   * on a congested link the retransmissions do not add to what congests it.
   */
  #watchLink(t: RTCRtpTransceiver, nack: boolean): void {
    const link = this.#link;
    // werift reports the lesser of the rates sent and received over one feedback sample's packets
    // (those that arrived); read the sample itself while it is reported, before werift resets it, and
    // sum what arrived and everything sent over the same span (src/core/rungs.ts, twccSample).
    const bwe = t.sender.senderBWE as unknown as {
      cumulativeResult: { firstPacketSentAtMs: number; lastPacketSentAtMs: number; firstPacketReceivedAtMs: number; lastPacketReceivedAtMs: number; totalSize: number };
      sentInfos: Map<number, { size: number; sendingAtMs: number }>;
    };
    t.sender.senderBWE.onAvailableBitrate.subscribe(() => {
      const c = bwe.cumulativeResult;
      const sample = twccSample(
        { firstSentMs: c.firstPacketSentAtMs, lastSentMs: c.lastPacketSentAtMs, firstReceivedMs: c.firstPacketReceivedAtMs, lastReceivedMs: c.lastPacketReceivedAtMs, receivedBytes: c.totalSize },
        bwe.sentInfos.values(),
      );
      if (!sample) return;
      link.twccTotals ??= { receivedBytes: 0, receiveMs: 0, sentBytes: 0, sendMs: 0 };
      addTwcc(link.twccTotals, sample);
      link.twcc = (sample.receivedBytes * 8000) / sample.receiveMs;
      link.twccAt = performance.now();
    });
    t.sender.senderBWE.onCongestion.subscribe((c: boolean) => (link.congested = c));
    const remb = (p: RtcpPacket) => {
      if (p instanceof RtcpPayloadSpecificFeedback && (p.feedback as { count?: number }).count === 15) {
        link.remb = Number((p.feedback as unknown as { bitrate: bigint }).bitrate);
      }
    };
    t.receiver.onRtcp.subscribe(remb);
    t.sender.onRtcp.subscribe(remb);
    const sender = t.sender as unknown as { handleRtcpPacket(p: RtcpPacket): void };
    const handle = sender.handleRtcpPacket.bind(sender);
    const nackedAt = new Map<number, number>();
    sender.handleRtcpPacket = (p: RtcpPacket) => {
      if (p instanceof RtcpTransportLayerFeedback && (p.feedback as { count?: number }).count === 1) {
        const lost = (p.feedback as unknown as { lost: number[] }).lost;
        const now = performance.now();
        // A viewer asks again for what did not come: each packet counts once as lost.
        for (const seq of lost) {
          if (!nackedAt.has(seq)) link.nacked++;
          nackedAt.set(seq, now);
        }
        if (nackedAt.size > 4096) for (const [seq, at] of nackedAt) if (now - at > 3000) nackedAt.delete(seq);
        // Without NACK (MCU_NACK=0) nothing is repaired, even for a browser that NACKs unasked
        // (Chromium does, measured: the answer's lack of `nack` does not stop it).
        if (!nack) {
          link.refused += lost.length;
          return;
        }
        const perSecond = Math.max(20, (0.1 * (this.#estimate().estimate ?? 1_000_000)) / (8 * 1100));
        this.#repairTokens = Math.min(perSecond, this.#repairTokens + ((now - this.#repairRefillAt) / 1000) * perSecond);
        this.#repairRefillAt = now;
        const allowed = Math.max(0, Math.min(lost.length, Math.floor(this.#repairTokens)));
        this.#repairTokens -= allowed;
        link.repaired += allowed;
        link.refused += lost.length - allowed;
        if (allowed === 0) return;
        if (allowed < lost.length) (p.feedback as unknown as { lost: number[] }).lost = lost.slice(0, allowed);
      }
      handle(p);
    };
  }

  /** The estimate to trust now: transport-cc while it is fresh (3 s), else REMB. */
  #estimate(): { estimate?: number; twcc?: TwccTotals; source?: 'twcc' | 'remb' } {
    const l = this.#link;
    if (l.twcc !== undefined && performance.now() - l.twccAt < 3000) return { estimate: l.twcc, twcc: { ...l.twccTotals! }, source: 'twcc' };
    return l.remb !== undefined ? { estimate: l.remb, source: 'remb' } : {};
  }

  /** The viewer's downlink as the transport sees it now. */
  link(): LinkReport {
    const l = this.#link;
    const sender = this.#transceivers.get('video')?.sender as unknown as { remoteFractionLost?: number } | undefined;
    return {
      ...this.#estimate(),
      fractionLost: sender?.remoteFractionLost ?? 0,
      repaired: l.repaired,
      refused: l.refused,
      packetsSent: l.sent,
      packetsNacked: l.nacked,
      congested: l.congested,
    };
  }

  /** Sends one RTP packet; werift sets SSRC and payload type, we keep sequence and timestamp. */
  sendRtp(kind: MediaKind, packet: Buffer): void {
    const t = this.#transceivers.get(kind);
    if (!t || this.#closed || !this.#connected) return;
    if (kind === 'video') this.#link.sent++;
    t.sender.sendRtp(packet).catch(() => undefined);
  }

  /** Sends the peer (a publisher) a PLI for its video. */
  requestKeyframe(): void {
    const t = this.#transceivers.get('video');
    if (!t || this.#closed || !this.#connected || this.#remoteVideoSsrc === undefined) return;
    t.receiver.sendRtcpPLI(this.#remoteVideoSsrc).catch(() => undefined);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#on.clear();
    await this.#pc.close().catch(() => undefined);
  }
}
