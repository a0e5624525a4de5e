import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { compositionKey, type Composition } from '../core/composition.js';
import { InvalidStateError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { EL, recorderLaunch, recordingCodec, type Presets, type RecordingFormat } from '../core/pipelines.js';
import { GstPipeline } from '../gst/native.js';
import { readPcmAt } from '../media/l16.js';
import { LocalUdp } from '../media/localUdp.js';
import { ViewFeeds, type ViewPacket } from '../media/viewFeeds.js';
import type { ImageRenderer } from '../render/images.js';
import type { MixerWorker } from '../workers/MediaWorker.js';
import { CompositeView } from './CompositeView.js';
import { VideoOut } from '../media/VideoOut.js';

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
 * Where the mix goes on the recording's timeline, against the pictures. A mix frame is stamped
 * with the instant it was mixed (each input PLAYOUT_DELAY_MS after it arrived); a picture with the
 * instant it was composed, which is later after the same arrival: the video jitterbuffer holds
 * 20 ms more than the audio one, and the composite takes a picture from its channel up to a frame
 * after it lands and stamps it a frame later still. What is left of the difference after those
 * cancel was measured with bench/lipsync.mjs (the README has the figures). The rest of the spread
 * is where a composite's 30 fps ticks fall against a publisher's frames: within one frame.
 */
const AUDIO_ALIGN_MS = 9;

/** How long the composite's pictures wait before they go into the file (see #pushVideo). */
const HOLD_MS = 300;

interface HeldPicture {
  source: object;
  ts: number;
  ptsMs: number;
  arrived: number;
  packets: Buffer[];
  complete: boolean;
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
  #recorder?: GstPipeline;
  #video?: VideoOut;
  #viewKey?: string;
  /** This recording's composites, by key; the one shown and the one it switches to. */
  readonly #views = new Map<string, CompositeView>();
  /** Where their video comes back to this thread, and the full mix from the mixer worker. */
  #feeds?: ViewFeeds;
  #mixUdp?: LocalUdp;
  /** The recording's timeline starts here (nowMs() clock, ms). */
  #t0 = 0;
  #lastSeq?: number;
  #held: HeldPicture[] = [];
  #lastPtsNs?: bigint;
  #outSeq = 0;
  #flushTimer?: NodeJS.Timeout;
  #videoPackets = 0;
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
    const recorder = new GstPipeline(
      recorderLaunch({ format: o.format, audioBitrate: o.format === 'webm' ? 64_000 : 128_000, file: this.file }, this.deps.presets),
    );
    this.#recorder = recorder;
    this.#t0 = recorder.play((e) => {
      if (e.type === 'error') this.fail(`${e.element}: ${e.message}`);
    });
    this.#video = new VideoOut(
      (packet, from) => this.#pushVideo(packet, from),
      (_to, from) => from && this.#dropView(from.key),
    );
    this.#feeds = new ViewFeeds((key) => this.#views.get(key)?.requestKeyframe());
    this.#flushTimer = setInterval(() => this.#flushVideo(), 20);
    this.#flushTimer.unref();
    this.state = 'recording';
    try {
      await this.#feeds.open();
      // The full mix, no one left out, stamped with the instant each frame stands for.
      this.#mixUdp = await LocalUdp.open((packet) => {
        const m = readPcmAt(packet);
        if (m && this.active) recorder.push(EL.mixIn, m.pcm, this.#timeline(m.atMs + AUDIO_ALIGN_MS));
      });
      await this.deps.mixer.channel.request('output.add', { room: this.roomId, id: this.#mixId, port: this.#mixUdp.port, format: 'pcm-at' });
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
      if (this.active && this.#videoPackets === 0) this.fail('the recording composite produced no video within 10 s');
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
    this.#feeds?.forget(key);
    void v?.close();
  }

  /** A nowMs() instant (ms) as a timestamp on the file's timeline (ns). */
  #timeline(ms: number): bigint {
    return BigInt(Math.max(0, Math.round((ms - this.#t0) * 1e6)));
  }

  /**
   * One RTP packet of the composite's video. Pictures wait HOLD_MS before they go into the file:
   * when a new composite takes over (with a keyframe, see VideoOut), the old composite's pictures
   * of the same instants and later are still here to be dropped, so the file never shows a
   * picture after its own time (which would put the video late at every layout change).
   */
  #pushVideo(packet: Buffer, from: ViewPacket): void {
    if (!this.#recorder) return;
    // The view parsed the packet already; VideoOut only rewrote its sequence number (continuous
    // across composites) and timestamp.
    const seq = packet.readUInt16BE(2);
    if (this.#lastSeq !== undefined && seq !== ((this.#lastSeq + 1) & 0xffff)) {
      // Lost on the way (a long stall of the event loop): the depayloader drops pictures until a
      // keyframe, so ask for one.
      this.#video?.requestKeyframe();
    }
    this.#lastSeq = seq;
    this.#videoPackets++;
    let f = this.#held.at(-1);
    // A picture ends at its marker bit. (x264 can end two access units on one timestamp: they
    // stay two pictures, the second placed just after the first.)
    if (!f || f.complete || f.source !== from.source || f.ts !== from.rtp.timestamp) {
      if (f && f.source !== from.source) {
        this.#held = this.#held.filter((h) => h.source === from.source || h.ptsMs < from.ptsMs);
      }
      f = { source: from.source, ts: from.rtp.timestamp, ptsMs: from.ptsMs, arrived: performance.now(), packets: [], complete: false };
      this.#held.push(f);
    }
    f.packets.push(packet);
    f.complete = from.rtp.marker;
  }

  /** Writes the pictures that have waited long enough (all of them when `all`). */
  #flushVideo(all = false): void {
    const now = performance.now();
    for (;;) {
      const f = this.#held[0];
      // A picture whose last packet was lost goes too, once another one follows it.
      if (!f || !(f.complete || this.#held.length > 1) || (!all && now - f.arrived < HOLD_MS)) break;
      this.#held.shift();
      let ptsNs = this.#timeline(f.ptsMs);
      if (this.#lastPtsNs !== undefined && ptsNs <= this.#lastPtsNs) ptsNs = this.#lastPtsNs + 1_000_000n;
      this.#lastPtsNs = ptsNs;
      for (const p of f.packets) {
        p.writeUInt16BE(this.#outSeq, 2);
        this.#outSeq = (this.#outSeq + 1) & 0xffff;
        this.#recorder?.push(EL.videoRtpIn, p, ptsNs);
      }
    }
  }

  /** Shows `composition` from now on; a composition equal to the current one changes nothing. */
  update(composition: Composition): void {
    if (!this.active || !this.#video || !this.#feeds) return;
    const key = `rec:${this.id}:${compositionKey(composition, this.codec, this.deps.videoBitrate)}`;
    if (key === this.#viewKey) return;
    // A composite that was about to take over, and is replaced before its first keyframe, goes.
    const pending = this.#video.view;
    if (pending && pending !== this.#video.shown) this.#dropView(pending.key);
    this.#viewKey = key;
    const feeds = this.#feeds;
    const view = new CompositeView(
      key,
      composition,
      this.codec,
      this.deps.videoBitrate,
      { presets: this.deps.presets, renderer: this.deps.renderer, channelOf: this.deps.channelOf, inputTimeoutMs: 6000, log: this.#log },
      // A keyframe every 2 s, for seeking in the file; two encoder threads for the larger canvas;
      // every picture taken from its channel at a fixed point of the frame period (lip sync).
      { gopSeconds: 2, threads: 2, waitingText: 'Waiting for participants…', steadyTiles: true },
    );
    this.#views.set(key, view);
    view.followers.set(this.id, feeds.port);
    view.on('generation', ({ ssrc }) => feeds.generation(key, this.codec, ssrc));
    view.on('started', ({ ssrc, startMs }) => feeds.started(key, ssrc, startMs));
    view.on('failed', (err) => this.fail(`the recording composite failed: ${err.message}`));
    view.start().catch((err) => this.#log.error(`recording composite failed to start: ${(err as Error).message}`));
    // The recording goes on showing the current composite until the new one's first keyframe.
    this.#video.follow(feeds.feed(key));
  }

  /** Finalises the file: EOS through the encoders and muxer (index, duration), then stops. */
  async stop(): Promise<void> {
    if (!this.active) {
      if (this.state === 'stopping') throw new InvalidStateError(`recording ${this.id} is already stopping`);
      return;
    }
    this.state = 'stopping';
    void this.deps.mixer.channel.request('output.remove', { room: this.roomId, id: this.#mixId }).catch(() => undefined);
    this.#video?.close();
    this.#flushVideo(true);
    const finished = (await this.#recorder?.drain(5000)) ?? false;
    await this.#recorder?.close();
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
    this.#video?.close();
    void this.#recorder?.close();
    this.#release();
    if (this.#fdOpened) this.#persist(); // nothing to describe if the file never existed
  }

  #release(): void {
    for (const key of [...this.#views.keys()]) this.#dropView(key);
    this.#feeds?.close();
    this.#mixUdp?.close();
    if (this.#fsync) clearInterval(this.#fsync);
    if (this.#flushTimer) clearInterval(this.#flushTimer);
    this.#held = [];
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
