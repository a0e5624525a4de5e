import type { LinkReport, MediaKind, TrackInfo } from './native.js';

/** An RFC 4733 telephone event the peer sent (a DTMF digit), reported once, when it ends. */
export interface DtmfEvent {
  /** 0-9, *, #, A-D, or "flash". */
  digit: string;
  durationMs: number;
}

/**
 * A peer's media session as the RTC worker uses it, whatever carries it: a WebRTC session
 * (werift: ICE, DTLS, SRTP; src/rtc/native.ts) or a plain RTP leg (src/rtc/plain.ts).
 */
export interface MediaSession {
  readonly tracks: Partial<Record<MediaKind, TrackInfo>>;
  readonly answerSdp: string;
  readonly connected: boolean;
  /** Milliseconds since any RTP or RTCP arrived from the peer. */
  readonly silentMs: number;
  /** `audioLevel`: for audio, the level the sender put in the packet (RFC 6464: 0 is 0 dBov, 127
   * is -127 dBov or silence), where that header extension was negotiated; else undefined. */
  onRtp(kind: MediaKind, handler: RtpHandler): () => void;
  /** The peer (a viewer) asked for a keyframe (PLI or FIR). */
  onKeyframeRequest(handler: () => void): () => void;
  onStateChange(handler: (state: string) => void): () => void;
  onDtmf(handler: (e: DtmfEvent) => void): () => void;
  /** Sends one RTP packet of ours; the session sets SSRC and payload type, we keep sequence and timestamp. */
  sendRtp(kind: MediaKind, packet: Buffer): void;
  /** Asks the peer (a publisher) for a keyframe. */
  requestKeyframe(): void;
  link(): LinkReport;
  close(): Promise<void>;
}

/** RFC 4733 section 3.2's event codes for DTMF. */
export const DTMF_DIGITS = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '#', 'A', 'B', 'C', 'D', 'flash'];

/** Where a session's events go: both kinds of session keep their subscribers the same way. */
export type RtpHandler = (packet: Buffer, audioLevel?: number) => void;

export class SessionHandlers {
  readonly rtp: Record<MediaKind, Set<RtpHandler>> = { audio: new Set(), video: new Set() };
  readonly keyframe = new Set<() => void>();
  readonly state = new Set<(s: string) => void>();
  readonly dtmf = new Set<(e: DtmfEvent) => void>();

  /** Adds `handler` to `set`; returns the function that takes it out again. */
  static add<T>(set: Set<T>, handler: T): () => void {
    set.add(handler);
    return () => set.delete(handler);
  }

  clear(): void {
    this.rtp.audio.clear();
    this.rtp.video.clear();
    this.keyframe.clear();
    this.state.clear();
    this.dtmf.clear();
  }
}
