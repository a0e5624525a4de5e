import crypto from 'node:crypto';
import type { Logger } from '../core/log.js';
import { EL, participantLaunch, type IngestSpec, type Presets, type VideoCodec } from '../core/pipelines.js';
import { GstPipeline } from '../gst/native.js';
import type { AudioMixer } from '../media/audioMixer.js';
import { LocalUdp, sendToPipeline } from '../media/localUdp.js';
import { parseRtp, RtpRewriter } from '../media/rtp.js';
import type { PeerSession } from '../rtc/native.js';
import type { VideoOut } from './VideoOut.js';

export type Role = 'participant' | 'publisher' | 'viewer';

export interface ParticipantDeps {
  presets: Presets;
  mixer: AudioMixer;
  audioBitrate: number;
  stallMs: number;
  log: Logger;
  /** Something about this participant that others see changed (its video started or stalled). */
  changed: () => void;
}

/** Inter-pipeline channel that carries a participant's decoded video to every composite. */
export const videoChannel = (participantId: string) => `mcu-v-${participantId}`;

/**
 * One person in a room: their WebRTC session, the pipeline that decodes what they send once and
 * encodes the mix they hear, and the one composite video they receive.
 */
export class Participant {
  readonly id = crypto.randomUUID();
  readonly joinedAt = new Date();
  readonly role: Role;
  videoOut?: VideoOut;
  /** This viewer's own layout choices (unset fields follow the room). */
  viewPrefs: { layout?: string; selfView?: boolean; pin?: string } = {};
  screenshare = false;
  #pipeline?: GstPipeline;
  #videoPort?: number;
  #audioPort?: number;
  #pcmUdp?: LocalUdp;
  #mixUdp?: LocalUdp;
  readonly #audioRewriter = new RtpRewriter(48000);
  #closed = false;
  #restarts = 0;
  readonly #log: Logger;
  // Video-in state, for liveness and keyframe requests to the publisher.
  #lastVideoAt = 0;
  #decoded = 0;
  #lastFrameAt = 0;
  #lastPli = -Infinity;
  #lastSeq?: number;
  readonly #missing = new Set<number>();
  #live = false;
  pliSent = 0;
  videoPacketsIn = 0;
  audioPacketsIn = 0;

  constructor(
    readonly roomId: string,
    readonly name: string,
    readonly session: PeerSession,
    private readonly deps: ParticipantDeps,
  ) {
    const t = session.tracks;
    const sends = !!(t.audio?.recv || t.video?.recv);
    const receives = !!(t.audio?.send || t.video?.send);
    this.role = sends && receives ? 'participant' : sends ? 'publisher' : 'viewer';
    this.#log = deps.log.child({ participant: this.id.slice(0, 8), name });
  }

  get closed(): boolean {
    return this.#closed;
  }
  get sendsVideo(): boolean {
    return !!this.session.tracks.video?.recv;
  }
  get sendsAudio(): boolean {
    return !!this.session.tracks.audio?.recv;
  }
  get receivesVideo(): boolean {
    return !!this.session.tracks.video?.send;
  }
  get receivesAudio(): boolean {
    return !!this.session.tracks.audio?.send;
  }
  /** Shown as a tile to others. */
  get isPublisher(): boolean {
    return this.role !== 'viewer';
  }
  get videoCodec(): VideoCodec {
    return (this.session.tracks.video?.codec as VideoCodec | undefined) ?? 'vp8';
  }
  /** Decoded video of this participant is flowing now. */
  get hasLiveVideo(): boolean {
    return this.#live;
  }

  async start(): Promise<void> {
    const t = this.session.tracks;
    if (t.audio?.recv) {
      const fifo = this.deps.mixer.addInput(this.id);
      this.#pcmUdp = await LocalUdp.open((pcm) => fifo.write(pcm));
    }
    if (t.audio?.send) {
      this.#mixUdp = await LocalUdp.open((pkt) => {
        const rtp = parseRtp(pkt);
        if (!rtp) return;
        this.#audioRewriter.rewrite(pkt, rtp, this.#mixUdp);
        this.session.sendRtp('audio', pkt);
      });
    }
    this.#startPipeline();
    if (t.audio?.send) {
      this.deps.mixer.addOutput(this.id, (pcm, pts) => this.#pipeline?.push(EL.mixIn, pcm, pts));
    }
    this.session.onRtp('video', (p) => this.#onVideoRtp(p));
    this.session.onRtp('audio', (p) => {
      // Only the negotiated payload type goes on: the jitterbuffer's caps name exactly one.
      if (p.length < 12 || (p[1] & 0x7f) !== t.audio?.payloadType) return;
      this.audioPacketsIn++;
      if (this.#audioPort) sendToPipeline(this.#audioPort, p);
    });
    this.session.onKeyframeRequest(() => this.videoOut?.requestKeyframe());
    this.session.onStateChange((s) => {
      if (s === 'connected') {
        this.#log.info('connected');
        this.videoOut?.requestKeyframe();
      }
    });
  }

  #spec(): IngestSpec {
    const t = this.session.tracks;
    return {
      video: t.video?.recv
        ? { codec: t.video.codec as VideoCodec, payloadType: t.video.payloadType, channel: videoChannel(this.id) }
        : undefined,
      audio: t.audio?.recv && this.#pcmUdp ? { codec: 'opus', payloadType: t.audio.payloadType, pcmPort: this.#pcmUdp.port } : undefined,
      mix: t.audio?.send && this.#mixUdp ? { codec: 'opus', bitrate: this.deps.audioBitrate, rtpPort: this.#mixUdp.port } : undefined,
    };
  }

  #startPipeline(): void {
    const spec = this.#spec();
    if (!spec.video && !spec.audio && !spec.mix) return;
    const p = new GstPipeline(participantLaunch(spec, this.deps.presets));
    this.#pipeline = p;
    this.#decoded = 0;
    this.#videoPort = this.#audioPort = undefined;
    p.play((e) => {
      if (e.type === 'error') {
        this.#log.error(`pipeline error in element ${e.element}: ${e.message}`);
        this.#restartPipeline();
      } else if (e.type === 'warning') {
        this.#log.warn(`pipeline warning in element ${e.element}: ${e.message}`);
        this.#requestKeyframe(); // a decoder that complains has most likely lost sync
      }
    });
    // udpsrc binds a free port while the pipeline starts; live pipelines start synchronously.
    if (spec.video) this.#videoPort = Number(p.get(EL.videoIn, 'port'));
    if (spec.audio) this.#audioPort = Number(p.get(EL.audioIn, 'port'));
  }

  /** An error in this participant's pipeline is isolated to it: rebuild it, a few times at most. */
  #restartPipeline(): void {
    if (this.#closed) return;
    void this.#pipeline?.close();
    this.#pipeline = undefined;
    this.#videoPort = this.#audioPort = undefined;
    if (++this.#restarts > 5) {
      this.#log.error('pipeline failed 5 times; this participant stays without media');
      return;
    }
    setTimeout(() => {
      if (!this.#closed) this.#startPipeline();
    }, 200);
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
        setTimeout(() => {
          if (this.#missing.size > 0) {
            this.#missing.clear();
            this.#requestKeyframe();
          }
        }, 300);
      }
      if (gap !== 0 && gap < 0x8000) this.#lastSeq = rtp.sequenceNumber;
      else this.#missing.delete(rtp.sequenceNumber);
    } else {
      this.#lastSeq = rtp.sequenceNumber;
    }
    if (this.#videoPort) sendToPipeline(this.#videoPort, packet);
  }

  /** Frames the decoder has delivered so far (the sink's own count). */
  #framesDecoded(): number {
    if (!this.#pipeline || this.#pipeline.closed) return this.#decoded;
    const stats = String(this.#pipeline.get(EL.videoSink, 'stats') ?? '');
    const m = /rendered=\(guint64\)(\d+)/.exec(stats);
    return m ? Number(m[1]) : this.#decoded;
  }

  /** PLI to the publisher, at most once a second. */
  #requestKeyframe(): void {
    const now = performance.now();
    if (!this.session.connected || now - this.#lastPli < 1000) return;
    this.#lastPli = now;
    this.pliSent++;
    this.session.requestKeyframe();
  }

  /**
   * Periodic upkeep, driven by what the decoder really delivers: a tile is live while decoded frames
   * keep coming, and while RTP arrives but no frame comes out (the decoder started after the last
   * keyframe, or lost sync), the publisher gets a PLI.
   */
  maintain(): void {
    if (this.#closed || !this.sendsVideo) return;
    const now = performance.now();
    const decoded = this.#framesDecoded();
    if (decoded !== this.#decoded) {
      this.#decoded = decoded;
      this.#lastFrameAt = now;
    }
    const rtpFlowing = now - this.#lastVideoAt < 500;
    const framesFlowing = this.#lastFrameAt > 0 && now - this.#lastFrameAt < 700;
    if (rtpFlowing && !framesFlowing) this.#requestKeyframe();
    // A tile goes to its placeholder when decoded frames stop for stallMs and RTP stopped too; while
    // RTP still flows (a decoder catching up under load, or waiting for a PLI'd keyframe) it keeps
    // its last frame three times longer, so a busy server does not churn compositions.
    const silentFor = now - this.#lastFrameAt;
    const live = this.#lastFrameAt > 0 && (silentFor < this.deps.stallMs || (rtpFlowing && silentFor < this.deps.stallMs * 3));
    if (live !== this.#live) {
      this.#live = live;
      if (live) this.#log.info('video live');
      else this.#log.info('video stalled; showing placeholder', { msSinceRtp: Math.round(now - this.#lastVideoAt), pliSent: this.pliSent });
      this.deps.changed();
    }
  }

  dump() {
    return {
      id: this.id,
      name: this.name,
      role: this.role,
      joinedAt: this.joinedAt.toISOString(),
      connected: this.session.connected,
      media: {
        audio: this.session.tracks.audio ?? null,
        video: this.session.tracks.video ?? null,
      },
      videoLive: this.#live,
      screenshare: this.screenshare,
      view: this.videoOut ? { ...this.viewPrefs } : null,
      stats: { videoPacketsIn: this.videoPacketsIn, audioPacketsIn: this.audioPacketsIn, pliSent: this.pliSent, framesSent: this.videoOut?.framesSent ?? 0, maxFrameGapMs: this.videoOut?.maxFrameGapMs() ?? null, lastSwitchMs: this.videoOut?.lastSwitchMs ?? null },
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.deps.mixer.removeInput(this.id);
    this.deps.mixer.removeOutput(this.id);
    this.videoOut?.close();
    this.#pcmUdp?.close();
    this.#mixUdp?.close();
    await Promise.all([this.#pipeline?.close(), this.session.close()]);
    this.#log.info('left');
  }
}
