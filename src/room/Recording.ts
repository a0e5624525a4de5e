import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { compositionKey, type Composition } from '../core/composition.js';
import { InvalidStateError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { recorderLaunch, recordingCodec, type Presets, type RecordingFormat } from '../core/pipelines.js';
import type { GstHost, RemoteRecorder } from '../gst/remote.js';
import type { ImageRenderer } from '../render/images.js';
import type { MixerWorker } from '../workers/MediaWorker.js';
import { CompositeView } from './CompositeView.js';

/**
 * Creates a directory and its parents one by one. (fs.mkdirSync with `recursive` never returns
 * for some unwritable paths, /proc/... among them.)
 */
function ensureDir(dir: string): void {
  const parts = path.resolve(dir).split(path.sep).filter(Boolean);
  let cur: string = path.sep;
  for (const part of parts) {
    cur = path.join(cur, part);
    try {
      fs.mkdirSync(cur);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  if (!fs.statSync(cur).isDirectory()) throw new Error(`${cur} is not a directory`);
}

export type RecordingState = 'starting' | 'recording' | 'stopping' | 'done' | 'failed';

const METADATA_KIND = 'webrtc-mcu-recording';

/** What `<room>-<id>.json` next to a recording holds: its dump, less what the file itself tells. */
interface RecordingMetadata {
  kind: typeof METADATA_KIND;
  id: string;
  room: string;
  state: RecordingState;
  interrupted?: boolean;
  format: RecordingFormat;
  width: number;
  height: number;
  fps: number;
  layout: string;
  pin: string | null;
  createdAt: string;
  startedAt: string | null;
  stoppedAt: string | null;
  reason: string | null;
}

export interface RecordingOptions {
  format: RecordingFormat;
  width: number;
  height: number;
  fps: number;
  layout: string;
}

export interface RecordingDeps {
  dir: string;
  presets: Presets;
  /** Where its composites and its recorder run: the GStreamer worker. */
  gst: GstHost;
  renderer: ImageRenderer;
  mixer: MixerWorker;
  channelOf: (participantId: string) => string;
  log: Logger;
  videoBitrate: number;
}

/**
 * One recording of a room: its own view of everyone (it depends on no participant's layout),
 * composited and encoded by a CompositeView of its own, and a recorder that muxes that video and
 * the full mix into the file for as long as the recording lasts. When the composition changes, a
 * new composite is built and the recording switches to it on its first keyframe, as a viewer
 * does; the file stays one continuous stream. Every picture is placed on the file's timeline by
 * the instant it was composed, and every mix frame by the instant it was mixed, so sync does not
 * depend on when either reaches Node.
 * The state only moves forward: starting -> recording -> stopping -> done, or failed.
 */
export class Recording {
  readonly id: string;
  state: RecordingState = 'starting';
  reason?: string;
  /** Found on disk after a restart in a state other than done or failed: the server stopped
   * without finalising it (a crash, a kill, a power cut); the file plays up to its last cluster. */
  interrupted = false;
  readonly createdAt: Date;
  startedAt?: Date;
  stoppedAt?: Date;
  /** This recording's own layout choices (`layout` and `pin`), changed like a viewer's. */
  prefs: { layout: string; pin?: string };
  readonly file: string;
  /** The media side: recorder, composite video in, mix in (src/media/RecorderMedia.ts). */
  #media?: RemoteRecorder;
  #viewKey?: string;
  /** This recording's composites, by key; the one shown and the one it switches to. */
  readonly #views = new Map<string, CompositeView>();
  /** The key of the composite whose first keyframe the recording waits for, if any. */
  #pendingKey?: string;
  #noVideoTimer?: NodeJS.Timeout;
  #fsync?: NodeJS.Timeout;
  #fd?: number;
  #fdOpened = false;
  readonly #log: Logger;

  constructor(
    readonly roomId: string,
    readonly options: RecordingOptions,
    private readonly deps: RecordingDeps,
    restored?: RecordingMetadata,
  ) {
    this.id = restored?.id ?? crypto.randomUUID();
    this.createdAt = restored ? new Date(restored.createdAt) : new Date();
    this.prefs = { layout: restored?.layout ?? options.layout, pin: restored?.pin ?? undefined };
    this.file = path.join(deps.dir, `${roomId}-${this.id}.${options.format}`);
    this.#log = deps.log.child({ recording: this.id.slice(0, 8) });
  }

  /** Where this recording's metadata is kept, next to its file, so a restarted server lists it. */
  get metadataFile(): string {
    return this.file.replace(/\.\w+$/, '.json');
  }

  /**
   * The recordings a previous run of the server left in `dir`, from their metadata files. One
   * that was still running is marked interrupted and ends when its file was last written.
   */
  static restoreAll(dir: string, log: Logger): Recording[] {
    let names: string[];
    try {
      names = fs.readdirSync(dir).filter((n) => n.endsWith('.json'));
    } catch {
      return []; // no directory yet
    }
    const out: Recording[] = [];
    for (const name of names) {
      try {
        const m = JSON.parse(fs.readFileSync(path.join(dir, name), 'utf8')) as RecordingMetadata;
        if (m.kind !== METADATA_KIND) continue;
        const deps = { dir, log } as RecordingDeps; // a finished recording runs nothing
        const rec = new Recording(m.room, { format: m.format, width: m.width, height: m.height, fps: m.fps, layout: m.layout }, deps, m);
        rec.startedAt = m.startedAt ? new Date(m.startedAt) : undefined;
        rec.stoppedAt = m.stoppedAt ? new Date(m.stoppedAt) : undefined;
        rec.reason = m.reason ?? undefined;
        rec.interrupted = m.interrupted === true;
        if (m.state === 'done' || m.state === 'failed') {
          rec.state = m.state;
        } else {
          rec.state = 'done';
          rec.interrupted = true;
          rec.stoppedAt = fs.statSync(rec.file, { throwIfNoEntry: false })?.mtime ?? rec.startedAt;
          rec.#persist();
        }
        out.push(rec);
      } catch (err) {
        log.warn(`ignoring recording metadata ${name}: ${(err as Error).message}`);
      }
    }
    return out.sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime());
  }

  /** Writes the metadata file (atomically: a crash leaves the old one or the new one). */
  #persist(): void {
    const tmp = `${this.metadataFile}.tmp`;
    try {
      const { file: _url, sizeBytes: _size, durationS: _d, ...m } = this.dump();
      fs.writeFileSync(tmp, JSON.stringify({ kind: METADATA_KIND, ...m, file: path.basename(this.file) }, null, 2));
      fs.renameSync(tmp, this.metadataFile);
    } catch (err) {
      this.#log.warn(`could not write ${this.metadataFile}: ${(err as Error).message}`);
    }
  }

  /** Deletes the file and its metadata. */
  async remove(): Promise<void> {
    await fs.promises.rm(this.file, { force: true });
    await fs.promises.rm(this.metadataFile, { force: true });
  }

  get active(): boolean {
    return this.state === 'starting' || this.state === 'recording';
  }

  get mimeType(): string {
    return this.options.format === 'webm' ? 'video/webm' : 'video/mp4';
  }

  get codec() {
    return recordingCodec(this.options.format);
  }

  /** Starts the recorder; the first composition follows with update(). A bad directory fails it. */
  async start(): Promise<void> {
    try {
      ensureDir(this.deps.dir);
      this.#fd = fs.openSync(this.file, 'w');
      this.#fdOpened = true;
    } catch (err) {
      this.fail(`cannot write ${this.file}: ${(err as Error).message}`);
      return;
    }
    const o = this.options;
    this.state = 'recording';
    try {
      this.#media = await this.deps.gst.startRecorder(
        recorderLaunch({ format: o.format, audioBitrate: o.format === 'webm' ? 64_000 : 128_000, file: this.file }, this.deps.presets),
        {
          failed: (reason) => this.fail(reason),
          // The recording shows `to` now: the composite it showed before goes.
          switched: (to, from) => {
            if (this.#pendingKey === to) this.#pendingKey = undefined;
            if (from && from !== to) this.#dropView(from);
          },
          keyframe: (key) => this.#views.get(key)?.requestKeyframe(),
        },
      );
      // The full mix, no one left out, stamped with the instant each frame stands for.
      await this.deps.mixer.channel.request('output.add', { room: this.roomId, id: this.#mixId, port: this.#media.mixPort, format: 'pcm-at' });
    } catch (err) {
      this.fail(`could not start: ${(err as Error).message}`);
      return;
    }
    this.startedAt = new Date();
    this.#persist();
    // Power loss: push what has been written to disk every 2 s.
    this.#fsync = setInterval(() => {
      if (this.#fd !== undefined) fs.fsync(this.#fd, () => undefined);
    }, 2000);
    this.#fsync.unref();
    // The muxer writes nothing until both streams flow: a composite that never delivers would
    // leave an empty file behind a "recording" state.
    this.#noVideoTimer = setTimeout(() => {
      void this.#media
        ?.videoPackets()
        .then((n) => {
          if (this.active && n === 0) this.fail('the recording composite produced no video within 10 s');
        })
        .catch(() => undefined);
    }, 10_000);
    this.#noVideoTimer.unref();
    this.#log.info('recording', { file: this.file, format: o.format });
  }

  get #mixId(): string {
    return `recording:${this.id}`;
  }

  #dropView(key: string): void {
    const v = this.#views.get(key);
    this.#views.delete(key);
    this.#media?.forget(key);
    void v?.close();
  }

  /** Shows `composition` from now on; a composition equal to the current one changes nothing. */
  update(composition: Composition): void {
    const media = this.#media;
    if (!this.active || !media) return;
    const key = `rec:${this.id}:${compositionKey(composition, this.codec, this.deps.videoBitrate)}`;
    if (key === this.#viewKey) return;
    // A composite that was about to take over, and is replaced before its first keyframe, goes.
    if (this.#pendingKey) this.#dropView(this.#pendingKey);
    if (this.#viewKey) this.#pendingKey = key;
    this.#viewKey = key;
    const view = new CompositeView(
      key,
      composition,
      this.codec,
      this.deps.videoBitrate,
      { presets: this.deps.presets, gst: this.deps.gst, renderer: this.deps.renderer, channelOf: this.deps.channelOf, inputTimeoutMs: 6000, log: this.#log },
      // A keyframe every 2 s, for seeking in the file; two encoder threads for the larger canvas;
      // every picture taken from its channel at a fixed point of the frame period (lip sync).
      { gopSeconds: 2, threads: 2, waitingText: 'Waiting for participants…', steadyTiles: true },
    );
    this.#views.set(key, view);
    view.followers.set(this.id, media.feedPort);
    view.on('generation', ({ ssrc }) => media.generation(key, this.codec, ssrc));
    view.on('started', ({ ssrc, startMs }) => media.started(key, ssrc, startMs));
    view.on('failed', (err) => this.fail(`the recording composite failed: ${err.message}`));
    view.start().catch((err) => {
      if (!view.closed) this.#log.error(`recording composite failed to start: ${(err as Error).message}`);
    });
    // The recording goes on showing the current composite until the new one's first keyframe.
    media.follow(key);
  }

  /** Finalises the file: EOS through the encoders and muxer (index, duration), then stops. */
  async stop(): Promise<void> {
    if (!this.active) {
      if (this.state === 'stopping') throw new InvalidStateError(`recording ${this.id} is already stopping`);
      return;
    }
    this.state = 'stopping';
    void this.deps.mixer.channel.request('output.remove', { room: this.roomId, id: this.#mixId }).catch(() => undefined);
    const finished = (await this.#media?.stop().catch(() => false)) ?? false;
    this.#release();
    this.stoppedAt = new Date();
    if (!finished) this.#log.warn('the recorder did not finish within 5 s; the file may lack its index');
    if (this.state === 'stopping') this.state = 'done';
    this.#persist();
    this.#log.info('recording stopped', { state: this.state, sizeBytes: this.sizeBytes() });
  }

  /** Something went wrong (disk full, unwritable directory): record why, stop, keep what was written. */
  fail(reason: string): void {
    if (this.state === 'done' || this.state === 'failed') return;
    this.#log.error(`recording failed: ${reason}`);
    this.reason = reason;
    this.state = 'failed';
    this.stoppedAt = new Date();
    void this.deps.mixer?.channel.request('output.remove', { room: this.roomId, id: this.#mixId }).catch(() => undefined);
    void this.#media?.close();
    this.#release();
    if (this.#fdOpened) this.#persist(); // nothing to describe if the file never existed
  }

  #release(): void {
    for (const key of [...this.#views.keys()]) this.#dropView(key);
    if (this.#fsync) clearInterval(this.#fsync);
    if (this.#noVideoTimer) clearTimeout(this.#noVideoTimer);
    if (this.#fd !== undefined) {
      try {
        fs.fsyncSync(this.#fd);
        fs.closeSync(this.#fd);
      } catch {
        // already closed or gone
      }
      this.#fd = undefined;
    }
  }

  sizeBytes(): number | null {
    try {
      return fs.statSync(this.file).size;
    } catch {
      return null;
    }
  }

  dump() {
    const end = this.stoppedAt ?? (this.active ? new Date() : undefined);
    return {
      id: this.id,
      room: this.roomId,
      state: this.state,
      format: this.options.format,
      codecs: this.options.format === 'webm' ? { video: 'VP8', audio: 'Opus' } : { video: 'H.264', audio: 'AAC' },
      width: this.options.width,
      height: this.options.height,
      fps: this.options.fps,
      layout: this.prefs.layout,
      pin: this.prefs.pin ?? null,
      createdAt: this.createdAt.toISOString(),
      startedAt: this.startedAt?.toISOString() ?? null,
      stoppedAt: this.stoppedAt?.toISOString() ?? null,
      durationS: this.startedAt && end ? +((end.getTime() - this.startedAt.getTime()) / 1000).toFixed(2) : 0,
      sizeBytes: this.sizeBytes(),
      reason: this.reason ?? null,
      interrupted: this.interrupted,
      file: `/v1/recordings/${this.id}/file`,
    };
  }
}
