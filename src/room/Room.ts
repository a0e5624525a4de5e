import { compose, compositionKey, type Composition, type TileSubject } from '../core/composition.js';
import type { McuConfig } from '../core/config.js';
import { InvalidStateError, NotFoundError } from '../core/errors.js';
import type { LayoutRegistry } from '../core/layouts.js';
import { SpeakerDetector } from '../core/speaker.js';
import type { Logger } from '../core/log.js';
import type { Presets } from '../core/pipelines.js';
import { fitProfile, type OutputLimits, type OutputProfile } from '../core/profiles.js';
import { ladder } from '../core/rungs.js';
import type { ImageRenderer } from '../render/images.js';
import type { GstHost } from '../gst/remote.js';
import type { MixerWorker, RtcWorker } from '../workers/MediaWorker.js';
import type { PeerStats } from '../workers/protocol.js';
import { CompositeView } from './CompositeView.js';
import { Participant, videoChannel, type PeerHandle } from './Participant.js';
import { Recording, type RecordingOptions } from './Recording.js';
import { TileScalers } from './TileScalers.js';
import { DEFAULT_MIX_SELECTION } from '../core/mixSelection.js';
import { SharedMix } from './SharedMix.js';

export interface RoomDeps {
  config: McuConfig;
  presets: Presets;
  layouts: LayoutRegistry;
  renderer: ImageRenderer;
  log: Logger;
  mixer: MixerWorker;
  /** The GStreamer worker, where every pipeline of the room is built and runs. */
  gst: GstHost;
  /** The RTC workers, which hear about every composite's SSRC. */
  rtcWorkers: () => RtcWorker[];
  /** A participant left (or failed to join). */
  left: (p: Participant) => void;
  /** The room closed itself (it became empty). */
  emptied: (room: Room) => void;
}

/** Composites are replaced at most this often in a room (see Room.recomposeSoon). */
export const RECOMPOSE_MIN_INTERVAL_MS = 500;

/**
 * A room: its participants in join order, one audio mix (mix-minus, in the mixer worker), and the
 * composite views its viewers receive, shared between viewers whose compositions are identical.
 * The room decides; the media workers carry the packets.
 */
export class Room {
  readonly createdAt = new Date();
  readonly participants = new Map<string, Participant>();
  readonly views = new Map<string, CompositeView>();
  readonly recordings = new Map<string, Recording>();
  /** Room defaults; each viewer may override them (Participant.viewPrefs). */
  layoutId = 'grid';
  selfView = false;
  pin?: string;
  readonly #speaker: SpeakerDetector;
  readonly #scalers: TileScalers;
  /** What every Opus listener outside the mixed talkers hears, encoded once. */
  readonly #sharedMix: SharedMix;
  #recomposeScheduled = false;
  #recomposeTimer?: NodeJS.Timeout;
  #lastRecompose = -Infinity;
  #closed = false;
  readonly #tick: NodeJS.Timeout;
  readonly #log: Logger;

  constructor(
    readonly id: string,
    private readonly deps: RoomDeps,
  ) {
    this.#log = deps.log.child({ room: id });
    this.#speaker = new SpeakerDetector({ holdMs: deps.config.speakerHoldMs, floorDb: -50 });
    this.#scalers = new TileScalers(deps.gst, videoChannel, deps.config.fps, BigInt(deps.config.stallMs * 3) * 1_000_000n, this.#log);
    this.#tick = setInterval(() => this.#maintain(), 250);
    this.#sharedMix = new SharedMix(id, {
      gst: deps.gst,
      mixer: deps.mixer,
      presets: deps.presets,
      bitrate: deps.config.audioBitrate,
      rtcWorkers: deps.rtcWorkers,
      log: this.#log,
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  get activeSpeaker(): string | undefined {
    return this.#speaker.current;
  }

  async join(name: string, peer: PeerHandle, opts: { screenshare?: boolean; limits?: { asked: OutputLimits; offer: OutputLimits } } = {}): Promise<Participant> {
    const p = new Participant(this.id, name, peer, {
      presets: this.deps.presets,
      gst: this.deps.gst,
      mixer: this.deps.mixer,
      audioBitrate: this.deps.config.audioBitrate,
      mixSpeakers: this.deps.config.mixSpeakers,
      stallMs: this.deps.config.stallMs,
      log: this.#log,
      changed: () => this.scheduleRecompose(),
    });
    p.screenshare = !!opts.screenshare;
    if (opts.limits) p.outputLimits = opts.limits;
    this.participants.set(p.id, p);
    try {
      await p.start();
      if (p.hearsSharedMix) await this.#sharedMix.follow(p.id, p.peer.worker);
    } catch (err) {
      this.#sharedMix.unfollow(p.id);
      this.participants.delete(p.id);
      await p.close();
      if (this.participants.size === 0) this.deps.emptied(this);
      throw err;
    }
    this.#log.info('joined', { participant: p.id, name, role: p.role, tracks: peer.tracks });
    this.recomposeSoon();
    return p;
  }

  // What the RTC workers report about this room's peers.

  peerState(id: string, state: string): void {
    if ((state === 'failed' || state === 'closed') && this.participants.has(id)) {
      this.#log.warn(`peer connection ${state}; removing it`, { participant: id });
      void this.leave(id).catch(() => undefined);
    }
  }

  peerStats(id: string, stats: PeerStats): void {
    const p = this.participants.get(id);
    if (!p) return;
    p.updateStats(stats);
    // A viewer whose link moves it to another rung gets that rung's composite, at a keyframe.
    if (p.adaptLink(stats, this.topProfileFor(p))) this.scheduleRecompose();
  }

  /** The peer's picture now comes from view `key`; the view it showed before is released. */
  peerSwitched(id: string, key: string): void {
    const p = this.participants.get(id);
    if (!p) return;
    this.#letGo(p, p.views.switched(key));
  }

  /** The latest events of the room (DTMF digits), newest last, for GET /v1/rooms/{room}. */
  readonly events: Array<{ type: 'dtmf'; participant: string; name: string; digit: string; durationMs: number; at: string }> = [];

  /** A participant sent a DTMF digit (RFC 4733): logged, and kept among the room's events. */
  dtmf(id: string, digit: string, durationMs: number): void {
    const p = this.participants.get(id);
    if (!p) return;
    this.#log.info(`DTMF ${digit}`, { participant: id, name: p.name, durationMs });
    this.events.push({ type: 'dtmf', participant: id, name: p.name, digit, durationMs, at: new Date().toISOString() });
    if (this.events.length > 100) this.events.splice(0, this.events.length - 100);
  }

  /** The talkers the mix carries now (MCU_MIX_SPEAKERS), as the mixer last reported. */
  mixed: string[] = [];

  /** Audio levels from the mixer, for the active speaker. */
  levels(levels: Map<string, number>, mixed: string[] = []): void {
    this.mixed = mixed;
    this.#gateInputs();
    if (this.#speaker.update(levels, performance.now())) {
      this.#log.info('active speaker', { participant: this.#speaker.current });
      this.recompose();
    }
  }

  /**
   * While the mix carries as many talkers as it can, a microphone outside it is decoded only when
   * it is loud enough to take the weakest talker's place soon: within 3 dB of the 6 dB margin the
   * selection asks (src/core/mixSelection.ts), by the levels the packets carry (RFC 6464). Everyone
   * else may still talk; they cannot be heard until a place frees, and then they are decoded again.
   */
  #gateInputs(): void {
    if (!this.deps.config.inputGate) return;
    const max = this.deps.config.mixSpeakers;
    const talkers = this.mixed.map((id) => this.participants.get(id)?.stats?.audioLevel);
    const full = max > 0 && this.mixed.length >= max && talkers.every((l) => typeof l === 'number');
    // RFC 6464 units: larger is quieter. The weakest talker, less the margin, plus 3 dB of slack.
    const cutoff = full ? Math.max(...(talkers as number[])) - (DEFAULT_MIX_SELECTION.marginDb - 3) : undefined;
    for (const p of this.participants.values()) p.setGateCutoff(cutoff === undefined || this.mixed.includes(p.id) ? undefined : cutoff);
  }

  get(participantId: string): Participant {
    const p = this.participants.get(participantId);
    if (!p) throw new NotFoundError(`no participant "${participantId}" in room "${this.id}"`);
    return p;
  }

  async leave(participantId: string): Promise<void> {
    const p = this.get(participantId);
    this.participants.delete(participantId);
    this.#sharedMix.unfollow(p.id);
    for (const key of p.views.releaseAll()) this.#unfollow(p.id, key);
    await p.close();
    this.deps.left(p);
    this.recomposeSoon();
    if (this.participants.size === 0) this.deps.emptied(this);
  }

  /** The layout, self-view and pin that apply to `p`: its own choices, else the room's. */
  prefsFor(p: Participant): { layout: string; selfView: boolean; pin?: string } {
    const layout = p.viewPrefs.layout && this.deps.layouts.has(p.viewPrefs.layout) ? p.viewPrefs.layout : this.layoutId;
    return {
      layout: this.deps.layouts.has(layout) ? layout : 'grid',
      selfView: p.viewPrefs.selfView ?? this.selfView,
      pin: p.viewPrefs.pin ?? this.pin,
    };
  }

  /** The most `p` is sent: the server's canvas, frame rate and bitrate fitted to p's limits. */
  topProfileFor(p: Participant): OutputProfile {
    const c = this.deps.config;
    return fitProfile({ width: c.width, height: c.height, fps: c.fps, bitrate: c.videoBitrate }, p.limits);
  }

  /** The stream `p` is sent now: its top profile, or the rung of its ladder its link allows. */
  profileFor(p: Participant): OutputProfile {
    const top = this.topProfileFor(p);
    const rung = p.rung;
    if (!rung || rung.index === 0) return top;
    const { width, height, fps, bitrate } = ladder(top)[rung.index];
    return { width, height, fps, bitrate };
  }

  /** New limits for what `p` receives (PUT .../output): it moves to a composite of that size at its next keyframe. */
  setOutputLimits(id: string, limits: OutputLimits): Participant {
    const p = this.get(id);
    if (!p.receivesVideo) throw new InvalidStateError(`participant ${id} receives no video`);
    p.outputLimits = { ...p.outputLimits, asked: limits };
    this.recompose();
    return p;
  }

  /** The exact composition `p` receives: the publishers (itself only with self-view) in join order, on its own canvas. */
  compositionFor(p: Participant): Composition {
    const prefs = this.prefsFor(p);
    const subjects: TileSubject[] = [...this.participants.values()]
      .filter((o) => o.isPublisher && (o !== p || prefs.selfView))
      .map((o) => ({ id: o.id, name: o.name, hasVideo: o.hasLiveVideo, screenshare: o.screenshare }));
    const profile = this.profileFor(p);
    return compose(subjects, this.deps.layouts.get(prefs.layout), { width: profile.width, height: profile.height, fps: profile.fps }, { pinned: prefs.pin, speaker: this.activeSpeaker });
  }

  /** What a recording shows: every publisher, on its own layout and pin, on its own canvas. */
  compositionForRecording(rec: Recording): Composition {
    const subjects: TileSubject[] = [...this.participants.values()]
      .filter((o) => o.isPublisher)
      .map((o) => ({ id: o.id, name: o.name, hasVideo: o.hasLiveVideo, screenshare: o.screenshare }));
    const layout = this.deps.layouts.has(rec.prefs.layout) ? rec.prefs.layout : 'grid';
    const o = rec.options;
    return compose(subjects, this.deps.layouts.get(layout), { width: o.width, height: o.height, fps: o.fps }, { pinned: rec.prefs.pin, speaker: this.activeSpeaker });
  }

  async startRecording(options: RecordingOptions): Promise<Recording> {
    this.deps.layouts.get(options.layout); // 404 for an unknown layout
    const rec = new Recording(this.id, options, {
      dir: this.deps.config.recordingsDir,
      presets: this.deps.presets,
      gst: this.deps.gst,
      renderer: this.deps.renderer,
      mixer: this.deps.mixer,
      channelOf: videoChannel,
      log: this.#log,
      videoBitrate: Math.round((this.deps.config.videoBitrate * (options.width * options.height)) / (640 * 360) / 2),
    });
    this.recordings.set(rec.id, rec);
    await rec.start();
    if (rec.active) rec.update(this.compositionForRecording(rec));
    return rec;
  }

  setRecordingPrefs(rec: Recording, opts: { layout?: string | null; pin?: string | null }): void {
    if (opts.layout) this.deps.layouts.get(opts.layout);
    if (opts.pin) this.get(opts.pin);
    if (opts.layout !== undefined) rec.prefs.layout = opts.layout ?? rec.options.layout;
    if (opts.pin !== undefined) rec.prefs.pin = opts.pin ?? undefined;
    rec.update(this.compositionForRecording(rec));
  }

  /** Recordings still running keep the room open while it is empty. */
  get recording(): boolean {
    return [...this.recordings.values()].some((r) => r.active);
  }

  /** Room default layout and self-view. */
  setLayout(opts: { layout?: string; selfView?: boolean }): void {
    if (opts.layout !== undefined) {
      this.deps.layouts.get(opts.layout); // 404 for an unknown layout
      this.layoutId = opts.layout;
    }
    if (opts.selfView !== undefined) this.selfView = opts.selfView;
    this.recompose();
  }

  /** One viewer's own layout, self-view and pin; undefined fields are left as they are, null clears. */
  setViewerPrefs(participantId: string, opts: { layout?: string | null; selfView?: boolean | null; pin?: string | null }): void {
    const p = this.get(participantId);
    if (!p.receivesVideo) throw new InvalidStateError(`participant "${participantId}" receives no video, so it has no layout`);
    if (opts.layout) this.deps.layouts.get(opts.layout);
    if (opts.pin) this.get(opts.pin);
    for (const k of ['layout', 'selfView', 'pin'] as const) {
      if (opts[k] === null) delete p.viewPrefs[k];
      else if (opts[k] !== undefined) (p.viewPrefs as Record<string, unknown>)[k] = opts[k];
    }
    this.recompose();
  }

  clearViewerPrefs(participantId: string): void {
    this.get(participantId).viewPrefs = {};
    this.recompose();
  }

  setPin(participantId: string | null): void {
    if (participantId !== null) this.get(participantId);
    this.pin = participantId ?? undefined;
    this.recompose();
  }

  /** What `p` sees now: the composition of the view on screen, or the one about to be if none is yet. */
  viewOf(participantId: string): Composition {
    const p = this.get(participantId);
    if (!p.receivesVideo) throw new InvalidStateError(`participant "${participantId}" receives no video, so it has no view`);
    return (p.views.shown && this.views.get(p.views.shown)?.composition) || this.compositionFor(p);
  }

  /**
   * Recomposes soon, once for a burst of changes (several videos going live at once), so that a
   * busy room does not build composites it replaces a moment later.
   */
  scheduleRecompose(): void {
    if (this.#recomposeScheduled || this.#closed) return;
    this.#recomposeScheduled = true;
    setTimeout(() => {
      this.#recomposeScheduled = false;
      this.recomposeSoon();
    }, 50);
  }

  /** Points each viewer at the view for its current composition, now (an operator's change). */
  recompose(): void {
    if (this.#closed) return;
    clearTimeout(this.#recomposeTimer);
    this.#recomposeTimer = undefined;
    this.#recomposeNow();
  }

  /**
   * The same for a change that comes in bursts (people joining or leaving, videos going live, a
   * link's rung): at once, unless the room recomposed less than RECOMPOSE_MIN_INTERVAL_MS ago, and
   * then once at the end of that interval, with whatever changed meanwhile. Each join replaces the
   * composites, and each video going live replaces them again: 16 people joining in a row started
   * 23 composites for the one shared layout (4 now), most replaced before they ran steadily (a
   * build takes the GStreamer worker 0.1-1 s), and on a saturated machine the replacements once
   * trailed the joins by 25 s, the picture 1.3 s late meanwhile. Each viewer's profile (what it is
   * sent) is known at once all the same.
   */
  recomposeSoon(): void {
    if (this.#closed) return;
    const wait = this.#lastRecompose + RECOMPOSE_MIN_INTERVAL_MS - performance.now();
    if (wait <= 0 && !this.#recomposeTimer) {
      this.#recomposeNow();
      return;
    }
    for (const p of this.participants.values()) if (p.receivesVideo) p.profile = this.profileFor(p);
    if (this.#recomposeTimer) return;
    this.#recomposeTimer = setTimeout(() => {
      this.#recomposeTimer = undefined;
      this.#recomposeNow();
    }, wait);
  }

  #recomposeNow(): void {
    if (this.#closed) return;
    this.#lastRecompose = performance.now();
    const cfg = this.deps.config;
    const started: CompositeView[] = [];
    for (const p of this.participants.values()) {
      if (!p.receivesVideo) continue;
      const composition = this.compositionFor(p);
      // Viewers with the same composition and the same profile share one encoder.
      const profile = this.profileFor(p);
      p.profile = profile;
      const key = compositionKey(composition, p.videoCodec, profile.bitrate);
      let view = this.views.get(key);
      if (!view) {
        view = this.#newView(key, composition, p.videoCodec, profile.bitrate);
        started.push(view);
      }
      this.#follow(p, view);
    }
    // Built after every follower is known, so each composite sends to the right threads at once.
    for (const v of started) {
      v.start().catch((err) => {
        // A composite replaced before it was built is skipped, not failed.
        if (!v.closed) this.#log.error(`composite failed to start: ${(err as Error).message}`);
        void v.close();
      });
    }
    for (const rec of this.recordings.values()) if (rec.active) rec.update(this.compositionForRecording(rec));
  }

  #newView(key: string, composition: Composition, codec: Participant['videoCodec'], bitrate: number): CompositeView {
    const cfg = this.deps.config;
    const view = new CompositeView(key, composition, codec, bitrate, {
      presets: this.deps.presets,
      gst: this.deps.gst,
      renderer: this.deps.renderer,
      channelOf: videoChannel,
      scalers: cfg.tileScalers ? this.#scalers : undefined,
      inputTimeoutMs: cfg.stallMs * 3,
      log: this.#log,
    });
    this.views.set(key, view);
    view.on('generation', ({ ssrc }) => {
      for (const w of this.deps.rtcWorkers()) void w.channel.request('view.generation', { key, codec, ssrc }).catch(() => undefined);
    });
    view.on('started', ({ ssrc, startMs }) => {
      for (const w of this.deps.rtcWorkers()) void w.channel.request('view.started', { key, ssrc, startMs }).catch(() => undefined);
    });
    view.on('closed', () => {
      if (this.views.get(key) === view) this.views.delete(key);
      for (const w of this.deps.rtcWorkers()) void w.channel.request('view.forget', { key }).catch(() => undefined);
    });
    view.on('failed', () => {
      // Its viewers follow a view that is gone: build it again, a moment later.
      for (const p of this.participants.values()) p.views.forget(key);
      setTimeout(() => this.recompose(), 1000).unref();
    });
    return view;
  }

  /**
   * Points `p` at `view`: it switches at the view's next keyframe, and a pending one is dropped;
   * the dropped one keeps running until the RTC worker's answer says it did not switch to it
   * meanwhile (ViewHolds).
   */
  #follow(p: Participant, view: CompositeView): void {
    const { send, hold } = p.views.point(view.key);
    if (!send) return;
    if (hold) {
      view.followers.set(p.id, p.peer.worker.feedPort);
      view.updatePorts();
    }
    void p.follow(view.key).then((state) => this.#letGo(p, p.views.answered(state)));
  }

  /** `p` no longer uses these views (ViewHolds said so); unless it has left, which let go of all. */
  #letGo(p: Participant, keys: string[]): void {
    if (this.participants.get(p.id) !== p) return;
    for (const key of keys) this.#unfollow(p.id, key);
  }

  /** `who` no longer uses view `key`; a view that nobody uses is closed. */
  #unfollow(who: string, key: string): void {
    const view = this.views.get(key);
    if (!view) return;
    view.followers.delete(who);
    if (view.followers.size === 0) void view.close();
    else view.updatePorts();
  }

  #maintain(): void {
    for (const p of this.participants.values()) {
      p.maintain();
      const timeout = p.peer.transport === 'rtp' ? this.deps.config.rtpTimeoutMs : this.deps.config.peerTimeoutMs;
      // A peer whose connection died (no RTP or RTCP for a while), or that never connected, is removed.
      const silentMs = p.silentMs;
      if ((p.connected && silentMs > timeout) || (!p.connected && silentMs > timeout * 2)) {
        this.#log.warn('peer went silent; removing it', { participant: p.id, silentMs: Math.round(silentMs) });
        void this.leave(p.id).catch(() => undefined);
      }
    }
  }

  dump() {
    return {
      id: this.id,
      createdAt: this.createdAt.toISOString(),
      layout: this.layoutId,
      selfView: this.selfView,
      pin: this.pin ?? null,
      activeSpeaker: this.activeSpeaker ?? null,
      events: this.events.slice(-50),
      encoders: this.views.size,
      audio: { mixed: this.mixed, sharedMix: this.#sharedMix.running, sharedMixListeners: this.#sharedMix.followers.size },
      scalers: this.#scalers.size,
      recordings: [...this.recordings.values()].filter((r) => r.active).map((r) => r.id),
      participants: [...this.participants.values()].map((p) => p.dump()),
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#tick);
    clearTimeout(this.#recomposeTimer);
    // Recordings first, while the media they record is still flowing into their files.
    await Promise.all([...this.recordings.values()].map((r) => r.stop().catch(() => undefined)));
    await Promise.all([...this.participants.values()].map(async (p) => {
      await p.close();
      this.deps.left(p);
    }));
    this.participants.clear();
    await Promise.all([...this.views.values()].map((v) => v.close()));
    this.views.clear();
    await this.#scalers.close();
    await this.#sharedMix.close();
    await this.deps.mixer.channel.request('room.close', { room: this.id }).catch(() => undefined);
  }
}
