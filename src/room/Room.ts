import { compose, compositionKey, type Composition, type TileSubject } from '../core/composition.js';
import type { McuConfig } from '../core/config.js';
import { InvalidStateError, NotFoundError } from '../core/errors.js';
import type { LayoutRegistry } from '../core/layouts.js';
import { SpeakerDetector } from '../core/speaker.js';
import type { Logger } from '../core/log.js';
import type { Presets } from '../core/pipelines.js';
import { AudioMixer } from '../media/audioMixer.js';
import type { ImageRenderer } from '../render/images.js';
import type { PeerSession } from '../rtc/native.js';
import { CompositeView } from './CompositeView.js';
import { Participant, videoChannel } from './Participant.js';
import { VideoOut } from './VideoOut.js';
import { Recording, type RecordingOptions } from './Recording.js';

export interface RoomDeps {
  config: McuConfig;
  presets: Presets;
  layouts: LayoutRegistry;
  renderer: ImageRenderer;
  log: Logger;
  /** The room closed itself (it became empty). */
  emptied: (room: Room) => void;
}

/**
 * A room: its participants in join order, one audio mixer (mix-minus), and the composite views
 * its viewers receive, shared between viewers whose compositions are identical.
 */
export class Room {
  readonly createdAt = new Date();
  readonly participants = new Map<string, Participant>();
  readonly mixer = new AudioMixer();
  readonly views = new Map<string, CompositeView>();
  readonly recordings = new Map<string, Recording>();
  /** Room defaults; each viewer may override them (Participant.viewPrefs). */
  layoutId = 'grid';
  selfView = false;
  pin?: string;
  readonly #speaker: SpeakerDetector;
  #recomposeScheduled = false;
  #closed = false;
  readonly #tick: NodeJS.Timeout;
  readonly #log: Logger;

  constructor(
    readonly id: string,
    private readonly deps: RoomDeps,
  ) {
    this.#log = deps.log.child({ room: id });
    this.#speaker = new SpeakerDetector({ holdMs: deps.config.speakerHoldMs, floorDb: -50 });
    this.#tick = setInterval(() => this.#maintain(), 250);
  }

  get closed(): boolean {
    return this.#closed;
  }

  get activeSpeaker(): string | undefined {
    return this.#speaker.current;
  }

  async join(name: string, session: PeerSession, opts: { screenshare?: boolean } = {}): Promise<Participant> {
    const p = new Participant(this.id, name, session, {
      presets: this.deps.presets,
      mixer: this.mixer,
      audioBitrate: this.deps.config.audioBitrate,
      stallMs: this.deps.config.stallMs,
      log: this.#log,
      changed: () => this.scheduleRecompose(),
    });
    p.screenshare = !!opts.screenshare;
    if (p.receivesVideo) {
      p.videoOut = new VideoOut(
        (pkt) => session.sendRtp('video', pkt),
        (view) => this.#release(view),
      );
    }
    session.onStateChange((s) => {
      if (s === 'failed' || s === 'closed') void this.leave(p.id).catch(() => undefined);
    });
    this.participants.set(p.id, p);
    try {
      await p.start();
    } catch (err) {
      this.participants.delete(p.id);
      await p.close();
      throw err;
    }
    this.#log.info('joined', { participant: p.id, name, role: p.role, tracks: session.tracks });
    this.recompose();
    return p;
  }

  get(participantId: string): Participant {
    const p = this.participants.get(participantId);
    if (!p) throw new NotFoundError(`no participant "${participantId}" in room "${this.id}"`);
    return p;
  }

  async leave(participantId: string): Promise<void> {
    const p = this.get(participantId);
    this.participants.delete(participantId);
    await p.close();
    this.recompose();
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

  /** The exact composition `p` receives: the publishers (itself only with self-view) in join order. */
  compositionFor(p: Participant): Composition {
    const prefs = this.prefsFor(p);
    const subjects: TileSubject[] = [...this.participants.values()]
      .filter((o) => o.isPublisher && (o !== p || prefs.selfView))
      .map((o) => ({ id: o.id, name: o.name, hasVideo: o.hasLiveVideo, screenshare: o.screenshare }));
    const c = this.deps.config;
    return compose(subjects, this.deps.layouts.get(prefs.layout), { width: c.width, height: c.height, fps: c.fps }, { pinned: prefs.pin, speaker: this.activeSpeaker });
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

  startRecording(options: RecordingOptions): Recording {
    this.deps.layouts.get(options.layout); // 404 for an unknown layout
    const rec = new Recording(this.id, options, {
      dir: this.deps.config.recordingsDir,
      presets: this.deps.presets,
      renderer: this.deps.renderer,
      mixer: this.mixer,
      channelOf: videoChannel,
      log: this.#log,
      videoBitrate: Math.round((this.deps.config.videoBitrate * (options.width * options.height)) / (640 * 360) / 2),
    });
    this.recordings.set(rec.id, rec);
    rec.start();
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
    if (!p.videoOut) throw new InvalidStateError(`participant "${participantId}" receives no video, so it has no layout`);
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
    if (!p.videoOut) throw new InvalidStateError(`participant "${participantId}" receives no video, so it has no view`);
    return p.videoOut.shown?.composition ?? this.compositionFor(p);
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
      this.recompose();
    }, 50);
  }

  /** Points each viewer at the view for its current composition; identical compositions share a view. */
  recompose(): void {
    if (this.#closed) return;
    const cfg = this.deps.config;
    for (const p of this.participants.values()) {
      if (!p.videoOut) continue;
      const composition = this.compositionFor(p);
      const key = compositionKey(composition, p.videoCodec, cfg.videoBitrate);
      let view = this.views.get(key);
      if (!view) {
        view = new CompositeView(key, composition, p.videoCodec, cfg.videoBitrate, {
          presets: this.deps.presets,
          renderer: this.deps.renderer,
          channelOf: videoChannel,
          inputTimeoutMs: cfg.stallMs * 3,
          log: this.#log,
        });
        this.views.set(key, view);
        const v = view;
        view.start().catch((err) => {
          this.#log.error(`composite failed to start: ${(err as Error).message}`);
          void v.close();
          this.views.delete(key);
        });
      }
      p.videoOut.follow(view);
    }
    for (const rec of this.recordings.values()) if (rec.active) rec.update(this.compositionForRecording(rec));
  }

  #release(view: CompositeView): void {
    if (view.listenerCount('packet') > 0 || view.closed) return;
    void view.close();
    if (this.views.get(view.key) === view) this.views.delete(view.key);
  }

  #maintain(): void {
    if (this.#speaker.update(this.mixer.takeLevels(), performance.now())) {
      this.#log.info('active speaker', { participant: this.#speaker.current });
      this.recompose();
    }
    const timeout = this.deps.config.peerTimeoutMs;
    for (const p of this.participants.values()) {
      p.maintain();
      const s = p.session;
      // A peer whose connection died (no RTP or RTCP for a while), or that never connected, is removed.
      if ((s.connected && s.silentMs > timeout) || (!s.connected && s.silentMs > timeout * 2)) {
        this.#log.warn('peer went silent; removing it', { participant: p.id, silentMs: Math.round(s.silentMs) });
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
      encoders: this.views.size,
      recordings: [...this.recordings.values()].filter((r) => r.active).map((r) => r.id),
      participants: [...this.participants.values()].map((p) => p.dump()),
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#tick);
    // Recordings first, while the media they record is still flowing into their files.
    await Promise.all([...this.recordings.values()].map((r) => r.stop().catch(() => undefined)));
    await Promise.all([...this.participants.values()].map((p) => p.close()));
    this.participants.clear();
    await Promise.all([...this.views.values()].map((v) => v.close()));
    this.views.clear();
    this.mixer.close();
  }
}
