import crypto from 'node:crypto';
import type { Logger } from '../core/log.js';
import { tighten, type OutputLimits, type OutputProfile } from '../core/profiles.js';
import { DEFAULT_RUNG_POLICY, ladder, LinkWindow, RungController, type Rung } from '../core/rungs.js';
import { EL, participantLaunch, type AudioCodec, type IngestSpec, type Presets, type VideoCodec } from '../core/pipelines.js';
import type { GstHost, RemotePipeline } from '../gst/remote.js';
import { RestartPolicy } from '../media/restartPolicy.js';
import type { MediaKind, TrackInfo } from '../rtc/native.js';
import type { MixerWorker, RtcWorker } from '../workers/MediaWorker.js';
import type { PeerStats } from '../workers/protocol.js';
import { ViewHolds } from './viewHolds.js';

export type Role = 'participant' | 'publisher' | 'viewer';

export interface ParticipantDeps {
  presets: Presets;
  /** Where its pipeline is built and runs: the GStreamer worker. */
  gst: GstHost;
  mixer: MixerWorker;
  audioBitrate: number;
  /** Talkers the room's mix carries at once (MCU_MIX_SPEAKERS); 0: everyone, and every listener
   * has its own encoder. */
  mixSpeakers: number;
  stallMs: number;
  log: Logger;
  /** Something about this participant that others see changed (its video started or stalled). */
  changed: () => void;
}

/** The peer's WebRTC session, as its RTC worker answered it. */
export interface PeerHandle {
  id: string;
  worker: RtcWorker;
  tracks: Partial<Record<MediaKind, TrackInfo>>;
  /** Where the peer's RTC worker takes its encoded mix. */
  audioOutPort?: number;
  /** WebRTC (werift), or a plain RTP leg (SIP gateways, room systems). */
  transport?: 'webrtc' | 'rtp';
}

/** Inter-pipeline channel that carries a participant's decoded video to every composite. */
export const videoChannel = (participantId: string) => `mcu-v-${participantId}`;

/**
 * One person in a room, as the control thread sees them: the handle of their WebRTC session (it
 * lives in an RTC worker, with all its packets), the pipeline that decodes what they send once and
 * encodes the mix they hear, and what they are shown. Packets never pass through here: the RTC
 * worker sends straight to the pipeline's sockets, the mixer worker straight to its encoder.
 */
export class Participant {
  readonly id: string;
  readonly joinedAt = new Date();
  readonly role: Role;
  /** This viewer's own layout choices (unset fields follow the room). */
  viewPrefs: { layout?: string; selfView?: boolean; pin?: string } = {};
  screenshare = false;
  /** What this viewer may receive: set at join or by PUT .../output (`asked`), and by its offer. */
  outputLimits: { asked: OutputLimits; offer: OutputLimits } = { asked: {}, offer: {} };
  /** The stream it is sent now (its room decides, from the limits). */
  profile?: OutputProfile;
  /** The composite views it shows, waits for, or still holds (its room keeps them). */
  readonly views = new ViewHolds();
  #pipeline?: RemotePipeline;
  /** The decoder's frame count as last read, and whether a read is under way. */
  #decodedReported = 0;
  #readingDecoded = false;
  #closed = false;
  readonly #restarts = new RestartPolicy();
  readonly #log: Logger;
  // Video-in state, for liveness and keyframe requests to the publisher.
  #decoded = 0;
  #lastFrameAt = 0;
  #live = false;
  /** The RTC worker's latest report, and when it came. */
  stats?: PeerStats;
  #statsAt = 0;

  constructor(
    readonly roomId: string,
    readonly name: string,
    readonly peer: PeerHandle,
    private readonly deps: ParticipantDeps,
  ) {
    this.id = peer.id;
    const t = peer.tracks;
    const sends = !!(t.audio?.recv || t.video?.recv);
    const receives = !!(t.audio?.send || t.video?.send);
    this.role = sends && receives ? 'participant' : sends ? 'publisher' : 'viewer';
    this.#log = deps.log.child({ participant: this.id.slice(0, 8), name });
  }

  static newId(): string {
    return crypto.randomUUID();
  }

  get closed(): boolean {
    return this.#closed;
  }
  get tracks() {
    return this.peer.tracks;
  }
  get sendsVideo(): boolean {
    return !!this.tracks.video?.recv;
  }
  get sendsAudio(): boolean {
    return !!this.tracks.audio?.recv;
  }
  get receivesVideo(): boolean {
    return !!this.tracks.video?.send;
  }
  get receivesAudio(): boolean {
    return !!this.tracks.audio?.send;
  }
  /** Shown as a tile to others. */
  get isPublisher(): boolean {
    return this.role !== 'viewer';
  }
  /** Opus for WebRTC peers; G.711 or G.722 for phones (and WebRTC peers that offer only G.711). */
  get audioCodec(): AudioCodec {
    return (this.tracks.audio?.codec as AudioCodec | undefined) ?? 'opus';
  }
  /**
   * An Opus listener hears the room's shared mix, and its own mix-minus only while it is among the
   * mixed talkers. Phones (G.711, G.722) keep an encoder of their own.
   */
  get hearsSharedMix(): boolean {
    return this.deps.mixSpeakers > 0 && this.audioCodec === 'opus' && !!this.tracks.audio?.send && !!this.peer.audioOutPort;
  }
  get videoCodec(): VideoCodec {
    return (this.tracks.video?.codec as VideoCodec | undefined) ?? 'vp8';
  }
  /** Moves this viewer along its bandwidth ladder from what its transport reports. */
  #rungs?: RungController;
  /** The link's estimate and loss over the last 1.5 s. */
  readonly #window = new LinkWindow();

  /** The rung of its ladder this viewer is on (undefined before its link has said anything). */
  get rung(): Rung | undefined {
    return this.#rungs?.rung;
  }

  /**
   * Feeds what the viewer's transport reports into its ladder (the top is its profile);
   * true when it moves to another rung.
   */
  adaptLink(stats: PeerStats, top: OutputProfile, now = performance.now()): boolean {
    const link = stats.link;
    if (!link || !this.receivesVideo) return false;
    // The estimate, the rate really sent and the loss, over a window (see LinkWindow): the loss is the
    // share of the video the viewer NACKed, or, where it does not NACK, its receiver reports' fraction lost.
    this.#window.add(now, link.estimate, link.packetsSent, link.packetsNacked, stats.bytesSent, link.twcc);
    const sending = this.#window.yardstick;
    const loss = link.packetsNacked > 0 ? this.#window.loss : link.fractionLost;
    const estimate = this.#window.estimate;
    if (estimate === undefined && loss === 0 && !this.#rungs) return false;
    const rungs = ladder(top);
    // The estimate covers the video stream alone (transport-cc is negotiated on it): little overhead.
    this.#rungs ??= new RungController(rungs, now, { ...DEFAULT_RUNG_POLICY, overhead: 16_000 });
    this.#rungs.setLadder(rungs);
    const before = this.#rungs.rung.index;
    const after = this.#rungs.update({ now, estimate, sending, loss }).index;
    if (after !== before) this.#log.info(`link: rung ${before} -> ${after} (${this.#rungs.rung.name})`, { estimate: estimate && Math.round(estimate), sending: Math.round(sending ?? 0), loss: +loss.toFixed(3) });
    return after !== before;
  }

  /** Both sets of limits, the tighter of each field. */
  get limits(): OutputLimits {
    return tighten(this.outputLimits.asked, this.outputLimits.offer);
  }
  /** Decoded video of this participant is flowing now. */
  get hasLiveVideo(): boolean {
    return this.#live;
  }

  get #rtc() {
    return this.peer.worker.channel;
  }

  async start(): Promise<void> {
    await this.#startPipeline();
  }

  async #spec(): Promise<IngestSpec> {
    const t = this.tracks;
    const pcmPort = t.audio?.recv ? (await this.deps.mixer.channel.request('input.add', { room: this.roomId, id: this.id })).port : undefined;
    return {
      video: t.video?.recv ? { codec: t.video.codec as VideoCodec, payloadType: t.video.payloadType, channel: videoChannel(this.id) } : undefined,
      audio: pcmPort !== undefined ? { codec: this.audioCodec, payloadType: t.audio!.payloadType, pcmPort } : undefined,
      mix:
        t.audio?.send && this.peer.audioOutPort
          ? { codec: this.audioCodec, bitrate: this.deps.audioBitrate, rtpPort: this.peer.audioOutPort, payloadType: t.audio.payloadType }
          : undefined,
    };
  }

  async #startPipeline(): Promise<void> {
    const spec = await this.#spec();
    if (this.#closed || (!spec.video && !spec.audio && !spec.mix)) return;
    const p = await this.deps.gst.start(participantLaunch(spec, this.deps.presets), {
      // udpsrc binds a free port while the pipeline starts: the worker reads these back.
      ports: [spec.video ? EL.videoIn : '', spec.audio ? EL.audioIn : '', spec.mix ? EL.mixIn : ''].filter(Boolean),
      onBus: (e) => {
        if (e.type === 'error') {
          this.#log.error(`pipeline error in element ${e.element}: ${e.message}`);
          this.#restartPipeline();
        } else if (e.type === 'warning') {
          this.#log.warn(`pipeline warning in element ${e.element}: ${e.message}`);
          this.requestKeyframe(); // a decoder that complains has most likely lost sync
        }
      },
    });
    if (this.#closed) {
      await p.close();
      return;
    }
    this.#pipeline = p;
    this.#decoded = this.#decodedReported = 0;
    this.#restarts.started();
    await this.#rtc.request('peer.targets', { id: this.id, videoInPort: p.ports[EL.videoIn], audioInPort: p.ports[EL.audioIn] });
    if (spec.mix) {
      await this.deps.mixer.channel.request('output.add', {
        room: this.roomId,
        id: this.id,
        port: p.ports[EL.mixIn],
        format: 'l16',
        when: this.hearsSharedMix ? 'speaking' : 'always',
      });
    }
  }

  /** An error in this participant's pipeline is isolated to it: rebuild it, a few times at most. */
  #restartPipeline(): void {
    if (this.#closed) return;
    void this.#pipeline?.close();
    this.#pipeline = undefined;
    void this.#rtc.request('peer.targets', { id: this.id }).catch(() => undefined);
    const again = this.#restarts.schedule(() => {
      if (!this.#closed) this.#startPipeline().catch((err) => this.#log.error(`pipeline restart failed: ${(err as Error).message}`));
    });
    if (!again) this.#log.error('pipeline failed 5 times; this participant stays without media');
  }

  /** The RTC worker's periodic report. */
  updateStats(s: PeerStats): void {
    this.stats = s;
    this.#statsAt = performance.now();
  }

  /**
   * Milliseconds the peer had been silent when its RTC worker last reported (four times a second).
   * Only the worker's word counts: time since that report is the control thread's or the worker's
   * own delay, not the peer's, and counting it removed peers after a stall of either (a worker
   * that dies is handled on its own: its peers leave and it restarts).
   */
  get silentMs(): number {
    return this.stats?.silentMs ?? 0;
  }

  get connected(): boolean {
    return this.stats?.connected ?? false;
  }

  /** Reads the frames the decoder has delivered so far (the sink's own count), for the next upkeep. */
  #readDecoded(): void {
    const p = this.#pipeline;
    if (!p || p.closed || this.#readingDecoded) return;
    this.#readingDecoded = true;
    p.get(EL.videoSink, 'stats')
      .then((stats) => {
        const m = /rendered=\(guint64\)(\d+)/.exec(String(stats ?? ''));
        if (m && p === this.#pipeline) this.#decodedReported = Number(m[1]);
      })
      .catch(() => undefined)
      .finally(() => (this.#readingDecoded = false));
  }

  #gateCutoff?: number;

  /** The room's cutoff for this microphone while the mix is full without it (InputGate); sent to
   * the RTC worker only when it changes. */
  setGateCutoff(cutoff: number | undefined): void {
    if (cutoff === this.#gateCutoff) return;
    this.#gateCutoff = cutoff;
    void this.#rtc.request('peer.gate', { id: this.id, cutoff }).catch(() => undefined);
  }

  /** PLI to the publisher (its RTC worker sends at most one a second). */
  requestKeyframe(): void {
    void this.#rtc.request('peer.pli', { id: this.id }).catch(() => undefined);
  }

  /**
   * The viewer's picture follows view `key` from its next keyframe. Resolves with what the RTC
   * worker shows and waits for then, or undefined if it could not be asked.
   */
  follow(key: string): Promise<{ shown?: string; pending?: string } | undefined> {
    return this.#rtc.request('peer.follow', { id: this.id, key }).catch(() => undefined);
  }

  /**
   * Periodic upkeep, driven by what the decoder really delivers: a tile is live while decoded frames
   * keep coming, and while RTP arrives but no frame comes out (the decoder started after the last
   * keyframe, or lost sync), the publisher gets a PLI.
   */
  maintain(): void {
    if (this.#closed || !this.sendsVideo) return;
    this.#readDecoded();
    const now = performance.now();
    const decoded = this.#decodedReported;
    if (decoded !== this.#decoded) {
      this.#decoded = decoded;
      this.#lastFrameAt = now;
    }
    const msSinceVideo = (this.stats?.msSinceVideo ?? Infinity) + (now - this.#statsAt);
    const rtpFlowing = msSinceVideo < 500;
    const framesFlowing = this.#lastFrameAt > 0 && now - this.#lastFrameAt < 700;
    if (rtpFlowing && !framesFlowing) this.requestKeyframe();
    // A tile goes to its placeholder when decoded frames stop for stallMs and RTP stopped too, for
    // stallMs as well: the camera went away. While RTP still flows, or paused for less than that (a
    // decoder catching up under load, waiting for a PLI'd keyframe, a sender that stalled for a
    // moment and sent again), it keeps its last frame three times longer: each change of a tile
    // rebuilds the composites that show it, and a bench run (case (a), 16 people) churned the
    // shared 720p composite on publishers whose RTP had paused 600-880 ms.
    const silentFor = now - this.#lastFrameAt;
    const rtpRecent = msSinceVideo < this.deps.stallMs;
    const live = this.#lastFrameAt > 0 && (silentFor < this.deps.stallMs || (rtpRecent && silentFor < this.deps.stallMs * 3));
    if (live !== this.#live) {
      this.#live = live;
      if (live) this.#log.info('video live');
      else this.#log.info('video stalled; showing placeholder', { msSinceRtp: Math.round(msSinceVideo), pliSent: this.stats?.pliSent ?? 0 });
      this.deps.changed();
    }
  }

  dump() {
    const s = this.stats;
    return {
      id: this.id,
      name: this.name,
      role: this.role,
      joinedAt: this.joinedAt.toISOString(),
      connected: this.connected,
      worker: this.peer.worker.index,
      transport: this.peer.transport ?? 'webrtc',
      media: {
        audio: this.tracks.audio ?? null,
        video: this.tracks.video ?? null,
      },
      videoLive: this.#live,
      screenshare: this.screenshare,
      view: this.receivesVideo ? { ...this.viewPrefs } : null,
      output: this.receivesVideo
        ? {
            limits: this.limits,
            asked: this.outputLimits.asked,
            offer: this.outputLimits.offer,
            profile: this.profile ?? null,
            rung: this.rung ? { index: this.rung.index, name: this.rung.name, changes: this.#rungs!.changes } : null,
            link: s?.link ?? null,
          }
        : null,
      stats: {
        videoPacketsIn: s?.videoPacketsIn ?? 0,
        audioPacketsIn: s?.audioPacketsIn ?? 0,
        audioPacketsSkipped: s?.audioPacketsSkipped ?? 0,
        pliSent: s?.pliSent ?? 0,
        framesSent: s?.framesSent ?? 0,
        maxFrameGapMs: s?.maxFrameGapMs ?? null,
        maxFrameLatenessMs: s?.maxFrameLatenessMs ?? null,
        p99FrameLatenessMs: s?.p99FrameLatenessMs ?? null,
        maxDeltaFrameLatenessMs: s?.maxDeltaFrameLatenessMs ?? null,
        keyframesSent10s: s?.keyframesSent10s ?? null,
        maxAudioGapMs: s?.maxAudioGapMs ?? null,
        lastSwitchMs: s?.lastSwitchMs ?? null,
      },
    };
  }

  /** Leaves: the mixer forgets this person, the pipeline stops, and the RTC worker closes the peer. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#restarts.cancel();
    const m = this.deps.mixer.channel;
    await Promise.all([
      m.request('input.remove', { room: this.roomId, id: this.id }).catch(() => undefined),
      m.request('output.remove', { room: this.roomId, id: this.id }).catch(() => undefined),
      this.#pipeline?.close(),
      this.#rtc.request('peer.close', { id: this.id }).catch(() => undefined),
    ]);
    this.#log.info('left');
  }
}
