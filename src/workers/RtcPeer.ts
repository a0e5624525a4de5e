/**
 * One peer's media inside its RTC worker: RTP from werift goes straight to its ingest pipeline's
 * sockets, its encoded mix and its composite come back from GStreamer to this thread and go out
 * through werift. Nothing here passes through the control thread.
 */
import type { Logger } from '../core/log.js';
import { LocalUdp, sendToPipeline } from '../media/localUdp.js';
import { parseRtp, RtpRewriter } from '../media/rtp.js';
import type { MixFeed, ViewSource } from '../media/viewFeeds.js';
import { MixGate } from '../media/mixGate.js';
import { InputGate } from '../media/inputGate.js';
import type { MediaSession } from '../rtc/session.js';
import type { DtmfEvent } from '../rtc/session.js';
import { VideoOut } from '../media/VideoOut.js';
import type { PeerStats } from './protocol.js';

export interface RtcPeerDeps {
  log: Logger;
  /** Skip decoding a silent microphone's packets (see InputGate). */
  inputGate?: boolean;
  /** The peer's picture now comes from `key`. */
  switched: (key: string, ms: number) => void;
  state: (state: string) => void;
  /** The peer sent a DTMF digit (RFC 4733). */
  dtmf?: (e: DtmfEvent) => void;
}

export class RtcPeer {
  readonly videoOut?: VideoOut;
  #audioOut?: LocalUdp;
  #gate?: MixGate;
  /** Whether the peer's microphone is decoded; undefined: always. */
  readonly #inputGate?: InputGate;
  #unfollowMix?: () => void;
  readonly #audioRewriter: RtpRewriter;
  #videoInPort?: number;
  #audioInPort?: number;
  #closed = false;
  #lastVideoAt = -Infinity;
  #lastPli = -Infinity;
  #lastSeq?: number;
  readonly #missing = new Set<number>();
  #lossTimer?: NodeJS.Timeout;
  readonly #unsubscribe: Array<() => void> = [];
  /** Largest interval between two mix packets sent to the peer since the last stats report. */
  #audioGapMs = 0;
  #lastAudioOut = 0;
  /** Recent stats windows' largest audio gaps, for a 10 s figure. */
  readonly #audioGaps: Array<[number, number]> = [];
  pliSent = 0;
  videoPacketsIn = 0;
  audioPacketsIn = 0;

  constructor(
    readonly id: string,
    readonly session: MediaSession,
    private readonly deps: RtcPeerDeps,
  ) {
    const t = session.tracks;
    if (deps.inputGate) this.#inputGate = new InputGate();
    this.#audioRewriter = new RtpRewriter(t.audio?.clockRate ?? (t.audio?.codec === 'opus' || !t.audio ? 48000 : 8000));
    if (t.video?.send) {
      this.videoOut = new VideoOut(
        (pkt) => session.sendRtp('video', pkt),
        (to, _from, ms) => deps.switched(to.key, ms),
        (gap, detail) => this.#warnGap('video', `no video frame for ${Math.round(gap)} ms (${detail})`),
      );
    }
    this.#unsubscribe.push(
      session.onRtp('video', (p) => this.#onVideoRtp(p)),
      session.onRtp('audio', (p, level) => {
        // Only the negotiated payload type goes on: the jitterbuffer's caps name exactly one.
        if (p.length < 12 || (p[1] & 0x7f) !== t.audio?.payloadType) return;
        this.audioPacketsIn++;
        if (this.#inputGate && !this.#inputGate.pass(p, level, performance.now())) return;
        if (this.#audioInPort) sendToPipeline(this.#audioInPort, p);
      }),
      session.onKeyframeRequest(() => this.videoOut?.requestKeyframe()),
      session.onDtmf((e) => {
        deps.log.info(`DTMF ${e.digit} (${e.durationMs} ms)`);
        deps.dtmf?.(e);
      }),
      session.onStateChange((s) => {
        if (s === 'connected') {
          deps.log.info('connected');
          this.videoOut?.requestKeyframe();
        }
        deps.state(s);
      }),
    );
  }

  /** Opens the socket the encoded mix comes back on; returns its port. */
  async openAudioOut(): Promise<number | undefined> {
    if (!this.session.tracks.audio?.send) return undefined;
    this.#audioOut = await LocalUdp.open((pkt) => {
      if (this.#gate) this.#gate.own(pkt);
      else this.#sendAudio(pkt);
    });
    return this.#audioOut.port;
  }

  /**
   * The peer hears the room's shared mix whenever its own mix-minus (made only while it is among the
   * mixed talkers) is not flowing: the gate passes one packet per frame.
   */
  followMix(feed: MixFeed): void {
    const pt = this.session.tracks.audio?.payloadType;
    if (!this.#audioOut || pt === undefined || this.session.tracks.audio?.codec !== 'opus') return;
    this.#unfollowMix?.();
    this.#gate?.close();
    const gate = (this.#gate = new MixGate((pkt) => this.#sendAudio(pkt)));
    this.#unfollowMix = feed.subscribe((packet) => {
      // The feed's packet is every follower's: copy it before this peer's rewriting.
      const pkt = Buffer.from(packet);
      pkt[1] = (pkt[1] & 0x80) | pt;
      gate.shared(pkt);
    });
  }

  #sendAudio(pkt: Buffer): void {
    const rtp = parseRtp(pkt);
    if (!rtp) return;
    // A rebuilt pipeline's encoder, or the shared mix, is another stream (its own SSRC): the peer
    // keeps seeing one.
    this.#audioRewriter.rewrite(pkt, rtp, rtp.ssrc);
    const now = performance.now();
    if (this.#lastAudioOut > 0) {
      const gap = now - this.#lastAudioOut;
      this.#audioGapMs = Math.max(this.#audioGapMs, gap);
      // Where and when the mix stalled, for whoever reads the log next to the joins and builds.
      if (gap > 100) this.#warnGap('audio', `no mix audio for ${Math.round(gap)} ms (${this.#gate ? 'shared or own mix' : 'own mix'}; ssrc ${rtp.ssrc})`);
    }
    this.#lastAudioOut = now;
    this.session.sendRtp('audio', pkt);
  }

  readonly #gapWarned = { audio: -Infinity, video: -Infinity };
  /** Logs where and when this peer's egress stalled, at most once every 5 s for each kind. */
  #warnGap(kind: 'audio' | 'video', text: string): void {
    const now = performance.now();
    if (now - this.#gapWarned[kind] < 5000) return;
    this.#gapWarned[kind] = now;
    this.deps.log.warn(text);
  }

  /** See InputGate.cutoff. */
  setGateCutoff(cutoff: number | undefined): void {
    if (this.#inputGate) this.#inputGate.cutoff = cutoff;
  }

  setTargets(videoInPort?: number, audioInPort?: number): void {
    this.#videoInPort = videoInPort;
    this.#audioInPort = audioInPort;
  }

  follow(view: ViewSource): void {
    this.videoOut?.follow(view);
  }

  #onVideoRtp(packet: Buffer): void {
    const rtp = parseRtp(packet);
    if (!rtp || rtp.payloadType !== this.session.tracks.video?.payloadType) return;
    this.videoPacketsIn++;
    this.#lastVideoAt = performance.now();
    // Loss tracking: a hole that is not filled (by NACK/RTX) soon means the decoder needs a keyframe.
    if (this.#lastSeq !== undefined) {
      const gap = (rtp.sequenceNumber - this.#lastSeq) & 0xffff;
      if (gap > 1 && gap < 1000) {
        for (let s = 1; s < gap && this.#missing.size < 200; s++) this.#missing.add((this.#lastSeq + s) & 0xffff);
        this.#lossTimer ??= setTimeout(() => {
          this.#lossTimer = undefined;
          if (this.#missing.size > 0) {
            this.#missing.clear();
            this.requestKeyframe();
          }
        }, 300);
      }
      if (gap !== 0 && gap < 0x8000) this.#lastSeq = rtp.sequenceNumber;
      else this.#missing.delete(rtp.sequenceNumber);
    } else {
      this.#lastSeq = rtp.sequenceNumber;
    }
    if (this.#videoInPort) sendToPipeline(this.#videoInPort, packet);
  }

  /** PLI to the publisher, at most once a second. */
  requestKeyframe(): void {
    const now = performance.now();
    if (!this.session.connected || now - this.#lastPli < 1000) return;
    this.#lastPli = now;
    this.pliSent++;
    this.session.requestKeyframe();
  }

  /** Largest gap between mix packets sent in the last ~10 s (and up to now). */
  #maxAudioGapMs(): number | null {
    if (!this.#audioOut) return null;
    const now = performance.now();
    const open = this.#lastAudioOut > 0 ? now - this.#lastAudioOut : 0;
    this.#audioGaps.push([now, Math.max(this.#audioGapMs, open)]);
    this.#audioGapMs = 0;
    while (this.#audioGaps.length > 0 && this.#audioGaps[0][0] < now - 10_000) this.#audioGaps.shift();
    return Math.round(Math.max(...this.#audioGaps.map(([, g]) => g)));
  }

  #lateness(): Pick<PeerStats, 'maxFrameLatenessMs' | 'p99FrameLatenessMs' | 'keyframesSent10s' | 'maxDeltaFrameLatenessMs'> {
    const l = this.videoOut?.frameLateness();
    return {
      maxFrameLatenessMs: l?.maxMs ?? null,
      p99FrameLatenessMs: l?.p99Ms ?? null,
      keyframesSent10s: l?.keyframes ?? null,
      maxDeltaFrameLatenessMs: l?.maxDeltaMs ?? null,
    };
  }

  stats(): PeerStats {
    const v = this.videoOut;
    return {
      connected: this.session.connected,
      silentMs: Math.round(this.session.silentMs),
      msSinceVideo: Math.round(performance.now() - this.#lastVideoAt),
      videoPacketsIn: this.videoPacketsIn,
      audioPacketsIn: this.audioPacketsIn,
      audioPacketsSkipped: this.#inputGate?.skipped ?? 0,
      audioLevel: this.#inputGate?.smoothedLevel !== undefined ? Math.round(this.#inputGate.smoothedLevel) : null,
      pliSent: this.pliSent,
      framesSent: v?.framesSent ?? 0,
      bytesSent: v?.bytesSent ?? 0,
      fps: v ? +v.fps().toFixed(2) : 0,
      maxFrameGapMs: v ? v.maxFrameGapMs() : null,
      ...this.#lateness(),
      maxAudioGapMs: this.#maxAudioGapMs(),
      lastSwitchMs: v?.lastSwitchMs ?? null,
      droppedWaitingKeyframe: v?.droppedWaitingKeyframe ?? 0,
      link: this.session.tracks.video?.send ? this.session.link() : null,
    };
  }

  get closed(): boolean {
    return this.#closed;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#lossTimer) clearTimeout(this.#lossTimer);
    this.#unsubscribe.splice(0).forEach((u) => u());
    this.videoOut?.close();
    this.#unfollowMix?.();
    this.#gate?.close();
    this.#audioOut?.close();
    await this.session.close();
  }
}
