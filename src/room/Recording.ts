import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { compositionKey, type Composition } from '../core/composition.js';
import { InvalidStateError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { compositeLaunch, EL, recorderLaunch, type Presets, type RecordingFormat } from '../core/pipelines.js';
import { compositeTiles } from './compositeTiles.js';
import { GstPipeline } from '../gst/native.js';
import type { AudioMixer } from '../media/audioMixer.js';
import type { ImageRenderer } from '../render/images.js';

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

/**
 * Audio reaches the recorder earlier than the picture of the same instant: the video jitterbuffer
 * holds 20 ms more than the audio one (60 vs 40 ms), and the picture then waits for two
 * free-running 30 fps samplers (the composite's intervideosrc and the recorder's). Audio is stamped
 * this much later. 40 ms sits between the best value for a 1280x720 recording (bench/lipsync.mjs:
 * with 50 ms the mean over 10 minutes was +21 ms) and for 640x360 (about 55 ms); the samplers'
 * phases still spread it by about ±25 ms.
 */
const AUDIO_ALIGN_MS = 40;

export type RecordingState = 'starting' | 'recording' | 'stopping' | 'done' | 'failed';

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
  renderer: ImageRenderer;
  mixer: AudioMixer;
  channelOf: (participantId: string) => string;
  log: Logger;
  videoBitrate: number;
  audioBitrate: number;
}

/**
 * One recording of a room: its own view of everyone (it depends on no participant's layout), and a
 * recorder pipeline that lives as long as the recording. When the composition changes, only the
 * composite in front of the recorder is rebuilt; the file stays one continuous stream.
 * The state only moves forward: starting -> recording -> stopping -> done, or failed.
 */
export class Recording {
  readonly id = crypto.randomUUID();
  state: RecordingState = 'starting';
  reason?: string;
  readonly createdAt = new Date();
  startedAt?: Date;
  stoppedAt?: Date;
  /** This recording's own layout choices (`layout` and `pin`), changed like a viewer's. */
  prefs: { layout: string; pin?: string };
  readonly file: string;
  #recorder?: GstPipeline;
  #composite?: GstPipeline;
  #compositeKey?: string;
  #pending?: Composition;
  #building = false;
  #fsync?: NodeJS.Timeout;
  #fd?: number;
  readonly #log: Logger;
  readonly #channel: string;

  constructor(
    readonly roomId: string,
    readonly options: RecordingOptions,
    private readonly deps: RecordingDeps,
  ) {
    this.prefs = { layout: options.layout };
    this.file = path.join(deps.dir, `${roomId}-${this.id}.${options.format}`);
    this.#channel = `mcu-rec-${this.id}`;
    this.#log = deps.log.child({ recording: this.id.slice(0, 8) });
  }

  get active(): boolean {
    return this.state === 'starting' || this.state === 'recording';
  }

  get mimeType(): string {
    return this.options.format === 'webm' ? 'video/webm' : 'video/mp4';
  }

  /** Starts the recorder; the first composition follows with update(). A bad directory fails it. */
  start(): void {
    try {
      ensureDir(this.deps.dir);
      this.#fd = fs.openSync(this.file, 'w');
    } catch (err) {
      this.fail(`cannot write ${this.file}: ${(err as Error).message}`);
      return;
    }
    const o = this.options;
    const recorder = new GstPipeline(
      recorderLaunch({
        format: o.format,
        channel: this.#channel,
        width: o.width,
        height: o.height,
        fps: o.fps,
        videoBitrate: this.deps.videoBitrate,
        audioBitrate: o.format === 'webm' ? 64_000 : 128_000,
        file: this.file,
      }),
    );
    this.#recorder = recorder;
    recorder.play((e) => {
      if (e.type === 'error') this.fail(`${e.element}: ${e.message}`);
    });
    const t0 = performance.now();
    // The full mix, no one left out. Its timestamps are the mixer's exact frame times on the
    // recorder's running time, so audio lines up with the picture without arrival jitter.
    this.deps.mixer.addOutput(`recording:${this.id}`, (pcm, _pts, at) => {
      const running = BigInt(Math.max(0, Math.round((at - t0 + AUDIO_ALIGN_MS) * 1e6)));
      recorder.push(EL.mixIn, pcm, running);
    });
    this.state = 'recording';
    this.startedAt = new Date();
    // Power loss: push what has been written to disk every 2 s.
    this.#fsync = setInterval(() => {
      if (this.#fd !== undefined) fs.fsync(this.#fd, () => undefined);
    }, 2000);
    this.#fsync.unref();
    this.#log.info('recording', { file: this.file, format: o.format });
  }

  /** Shows `composition` from now on; a composition equal to the current one changes nothing. */
  update(composition: Composition): void {
    if (!this.active) return;
    this.#pending = composition;
    if (!this.#building) void this.#build();
  }

  async #build(): Promise<void> {
    this.#building = true;
    try {
      while (this.#pending && this.active) {
        const c = this.#pending;
        this.#pending = undefined;
        const key = compositionKey(c, 'raw', 0);
        if (key === this.#compositeKey) continue;
        const launch = compositeLaunch(await this.#spec(c), this.deps.presets);
        if (!this.active) break;
        const old = this.#composite;
        const next = new GstPipeline(launch);
        next.play((e) => {
          if (e.type === 'error') this.#log.error(`recording composite error in ${e.element}: ${e.message}`);
        });
        this.#composite = next;
        this.#compositeKey = key;
        // The recorder repeats the last picture while the old composite stops: no black frame.
        await old?.close();
      }
    } catch (err) {
      this.#log.error(`recording composite failed: ${(err as Error).message}`);
    } finally {
      this.#building = false;
    }
  }

  async #spec(c: Composition) {
    const r = this.deps.renderer;
    const tiles = await compositeTiles(c, r, this.deps.channelOf);
    return {
      width: c.width,
      height: c.height,
      fps: c.fps,
      codec: 'vp8' as const,
      bitrate: 0,
      tiles,
      background: await r.waitingCard(c.width, c.height, 'Waiting for participants…'),
      inputTimeoutNs: 6_000_000_000n,
      rtpPort: 0,
      rawChannel: this.#channel,
    };
  }

  /** Finalises the file: EOS through the encoders and muxer (index, duration), then stops. */
  async stop(): Promise<void> {
    if (!this.active) {
      if (this.state === 'stopping') throw new InvalidStateError(`recording ${this.id} is already stopping`);
      return;
    }
    this.state = 'stopping';
    this.deps.mixer.removeOutput(`recording:${this.id}`);
    await this.#composite?.close();
    const finished = (await this.#recorder?.drain(5000)) ?? false;
    await this.#recorder?.close();
    this.#release();
    this.stoppedAt = new Date();
    if (!finished) this.#log.warn('the recorder did not finish within 5 s; the file may lack its index');
    if (this.state === 'stopping') this.state = 'done';
    this.#log.info('recording stopped', { state: this.state, sizeBytes: this.sizeBytes() });
  }

  /** Something went wrong (disk full, unwritable directory): record why, stop, keep what was written. */
  fail(reason: string): void {
    if (this.state === 'done' || this.state === 'failed') return;
    this.#log.error(`recording failed: ${reason}`);
    this.reason = reason;
    this.state = 'failed';
    this.stoppedAt = new Date();
    this.deps.mixer.removeOutput(`recording:${this.id}`);
    void this.#composite?.close();
    void this.#recorder?.close();
    this.#release();
  }

  #release(): void {
    if (this.#fsync) clearInterval(this.#fsync);
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
      file: `/v1/recordings/${this.id}/file`,
    };
  }
}
