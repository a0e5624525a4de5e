import { compose, compositionKey, type Composition, type TileSubject } from '../core/composition.js';
import type { McuConfig } from '../core/config.js';
import { InvalidStateError, NotFoundError } from '../core/errors.js';
import type { LayoutRegistry } from '../core/layouts.js';
import type { Logger } from '../core/log.js';
import type { Presets } from '../core/pipelines.js';
import { AudioMixer } from '../media/audioMixer.js';
import type { ImageRenderer } from '../render/images.js';
import type { PeerSession } from '../rtc/native.js';
import { CompositeView } from './CompositeView.js';
import { Participant, videoChannel } from './Participant.js';
import { VideoOut } from './VideoOut.js';

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
  layoutId = 'grid';
  #recomposeScheduled = false;
  #closed = false;
  readonly #tick: NodeJS.Timeout;
  readonly #log: Logger;

  constructor(
    readonly id: string,
    private readonly deps: RoomDeps,
  ) {
    this.#log = deps.log.child({ room: id });
    this.#tick = setInterval(() => this.#maintain(), 250);
  }

  get closed(): boolean {
    return this.#closed;
  }

  async join(name: string, session: PeerSession): Promise<Participant> {
    const p = new Participant(this.id, name, session, {
      presets: this.deps.presets,
      mixer: this.mixer,
      audioBitrate: this.deps.config.audioBitrate,
      stallMs: this.deps.config.stallMs,
      log: this.#log,
      changed: () => this.scheduleRecompose(),
    });
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

  /** The exact composition `p` receives: everyone else who publishes, in join order. */
  compositionFor(p: Participant): Composition {
    const subjects: TileSubject[] = [...this.participants.values()]
      .filter((o) => o !== p && o.isPublisher)
      .map((o) => ({ id: o.id, name: o.name, hasVideo: o.hasLiveVideo }));
    const c = this.deps.config;
    return compose(subjects, this.deps.layouts.get(this.layoutId), { width: c.width, height: c.height, fps: c.fps });
  }

  /** What `p` sees now: the composition of the view on screen, or the one about to be if none is yet. */
  viewOf(participantId: string): Composition {
    const p = this.get(participantId);
    if (!p.videoOut) throw new InvalidStateError(`participant "${participantId}" receives no video, so it has no view`);
    return p.videoOut.shown?.composition ?? this.compositionFor(p);
  }

  scheduleRecompose(): void {
    if (this.#recomposeScheduled || this.#closed) return;
    this.#recomposeScheduled = true;
    setImmediate(() => {
      this.#recomposeScheduled = false;
      this.recompose();
    });
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
  }

  #release(view: CompositeView): void {
    if (view.listenerCount('packet') > 0 || view.closed) return;
    void view.close();
    if (this.views.get(view.key) === view) this.views.delete(view.key);
  }

  #maintain(): void {
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
      encoders: this.views.size,
      participants: [...this.participants.values()].map((p) => p.dump()),
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#tick);
    await Promise.all([...this.participants.values()].map((p) => p.close()));
    this.participants.clear();
    await Promise.all([...this.views.values()].map((v) => v.close()));
    this.views.clear();
    this.mixer.close();
  }
}
