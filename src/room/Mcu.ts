import type { McuConfig } from '../core/config.js';
import { Admission, LimitError } from '../core/admission.js';
import { BadRequestError, InvalidStateError, NotFoundError } from '../core/errors.js';
import { LayoutRegistry } from '../core/layouts.js';
import { offerLimits, type OutputLimits } from '../core/profiles.js';
import { createLogger } from '../core/log.js';
import { LoopLagMonitor } from '../core/loopLag.js';
import { loadPresets, PROJECT_ROOT, threadRules } from '../core/pipelines.js';
import { GstThreadPriorities } from '../core/threadPriority.js';
import { ImageRenderer } from '../render/images.js';
import { GstHost } from '../gst/remote.js';
import { spawnGstWorker, spawnMixerWorker, spawnRtcWorker, type GstWorker, type MixerWorker, type RtcWorker } from '../workers/MediaWorker.js';
import os from 'node:os';
import path from 'node:path';
import { Participant } from './Participant.js';
import { Recording, type RecordingOptions } from './Recording.js';
import { Room } from './Room.js';
import type { PlainLegSpec } from '../rtc/plain.js';

const ROOM_RE = /^[A-Za-z0-9_-]{1,64}$/;
export const MAX_NAME = 64;

export interface JoinOptions {
  screenshare?: boolean;
  /** The credential that joins (a token's id): the participant's own later requests must carry it. */
  owner?: string;
  /** Whether the peer's media is taken (false: the answer receives nothing). Default true. */
  canPublish?: boolean;
  /** Whether the peer gets the composite and the mix (false: the answer sends nothing). Default true. */
  canSubscribe?: boolean;
  /** What the viewer asked to receive at most (?maxWidth=...). */
  limits?: OutputLimits;
}

export function checkRoomId(id: string, maxLength = 64): string {
  if (!ROOM_RE.test(id) || id.length > maxLength) throw new BadRequestError(`room ids are 1-${maxLength} letters, digits, "_" or "-"`, 'bad_room');
  return id;
}

export function checkName(name: unknown, fallback: string, maxLength = MAX_NAME): string {
  if (name === undefined || name === '') return fallback;
  if (typeof name !== 'string') throw new BadRequestError('name must be a single string', 'bad_name');
  const clean = name.replace(/[\u0000-\u001f\u007f]/g, '').trim();
  if ([...clean].length > maxLength) throw new BadRequestError(`name must be at most ${maxLength} characters`, 'bad_name');
  return clean || fallback;
}

/**
 * The top of the tree: rooms by id, and the media workers. Closing it closes every room,
 * participant and pipeline, then the workers. This is the control thread: it decides, and the
 * RTC workers (werift sessions and every packet of theirs) and the mixer worker carry the media.
 */
export class Mcu {
  readonly rooms = new Map<string, Room>();
  /** Which room each peer id is in, to route what the workers report. */
  readonly #peerRooms = new Map<string, Room>();
  readonly rtcWorkers: RtcWorker[] = [];
  #mixer!: MixerWorker;
  #gst!: GstHost;
  /** Every recording, running or finished, by id: this process's and those found on disk. */
  readonly recordings = new Map<string, Recording>();
  readonly layouts: LayoutRegistry;
  readonly #presets = loadPresets();
  readonly #renderer: ImageRenderer;
  readonly #log = createLogger('mcu');
  #closed = false;
  #guests = 0;
  /** Joins under way, by room: they hold a seat before they are in the room. */
  readonly #joining = new Map<string, number>();
  /** The credential each participant joined with (a token's id), for its own later requests. */
  readonly #owners = new Map<string, string>();
  readonly admission: Admission;

  readonly #lag: LoopLagMonitor;
  #priorityTimer?: NodeJS.Timeout;
  /** Largest stall of the control thread's event loop, in ms. Media does not wait for it. */
  get maxLoopLagMs(): number {
    return this.#lag.maxLagMs;
  }

  /** Spawns the media workers: one RTC worker per core (MCU_RTC_WORKERS), and the mixer. */
  static async create(config: McuConfig): Promise<Mcu> {
    const mcu = new Mcu(config);
    try {
      const n = config.rtcWorkers || Math.max(1, Math.min(os.availableParallelism(), 8));
      await Promise.all(Array.from({ length: n }, (_, i) => mcu.#startRtcWorker(i)));
      await mcu.#startMixer();
      await mcu.#startGst();
      mcu.admission.rebase();
    } catch (err) {
      await mcu.close();
      throw err;
    }
    return mcu;
  }

  async #startRtcWorker(index: number): Promise<void> {
    const w = await spawnRtcWorker(index, this.config.logLevel, this.config.mediaNice);
    this.rtcWorkers[index] = w;
    const room = (id: string) => this.#peerRooms.get(id);
    w.channel.on('peer.state', ({ id, state }) => room(id)?.peerState(id, state));
    w.channel.on('peer.switched', ({ id, key }) => room(id)?.peerSwitched(id, key));
    w.channel.on('peer.dtmf', ({ id, digit, durationMs }) => room(id)?.dtmf(id, digit, durationMs));
    w.channel.on('view.keyframe', ({ key }) => {
      for (const r of this.rooms.values()) r.views.get(key)?.requestKeyframe();
    });
    w.channel.on('stats', ({ peers, maxLoopLagMs, strayErrors }) => {
      w.maxLoopLagMs = maxLoopLagMs;
      w.strayErrors = strayErrors;
      for (const [id, s] of peers) room(id)?.peerStats(id, s);
    });
    w.on('died', (err) => {
      if (this.#closed) return;
      // Its peers' sessions are gone with it: they leave, and a fresh worker takes the slot.
      this.#log.error(`RTC worker ${index} died: ${err.message}; its peers leave and it restarts`);
      for (const [id, r] of this.#peerRooms) {
        if (r.participants.get(id)?.peer.worker === w) void r.leave(id).catch(() => undefined);
      }
      void this.#startRtcWorker(index).catch((e) => this.#log.error(`RTC worker ${index} could not restart: ${(e as Error).message}`));
    });
  }

  async #startMixer(): Promise<void> {
    const m = await spawnMixerWorker(this.config.logLevel, this.config.mediaNice, this.config.mixSpeakers);
    this.#mixer = m;
    m.channel.on('levels', ({ room, levels, mixed }) => this.rooms.get(room)?.levels(new Map(levels), mixed));
    m.channel.on('load', ({ maxLoopLagMs, strayErrors }) => {
      m.maxLoopLagMs = maxLoopLagMs;
      m.strayErrors = strayErrors;
    });
    m.on('died', (err) => {
      if (this.#closed) return;
      // Every room's audio went with it: the rooms close, so that people rejoin to working audio.
      this.#closeAllRooms(`mixer worker died: ${err.message}`);
      void this.#startMixer().catch((e) => this.#log.error(`mixer could not restart: ${(e as Error).message}`));
    });
  }

  async #startGst(): Promise<void> {
    const g = await spawnGstWorker(this.config.logLevel);
    this.#gst = new GstHost(g);
    g.channel.on('load', ({ maxLoopLagMs, strayErrors, pipelines }) => {
      g.maxLoopLagMs = maxLoopLagMs;
      g.strayErrors = strayErrors;
      g.pipelines = pipelines;
    });
    g.on('died', (err) => {
      if (this.#closed) return;
      // Every pipeline went with it: the rooms close, so that people rejoin to working media.
      this.#closeAllRooms(`GStreamer worker died: ${err.message}`);
      void this.#startGst().catch((e) => this.#log.error(`GStreamer worker could not restart: ${(e as Error).message}`));
    });
  }

  /** A worker that every room depends on died: every room closes (and its worker restarts). */
  #closeAllRooms(why: string): void {
    this.#log.error(`${why}; closing every room and restarting it`);
    for (const r of [...this.rooms.values()]) {
      this.rooms.delete(r.id);
      void r.close();
    }
  }

  /** Pipelines running in the GStreamer worker, as it last reported. */
  get workerPipelines(): number {
    return this.#gst?.worker.pipelines ?? 0;
  }

  /** Every media worker thread, for metrics. */
  get workers(): Array<RtcWorker | MixerWorker | GstWorker> {
    return [...this.rtcWorkers.filter(Boolean), ...(this.#mixer ? [this.#mixer] : []), ...(this.#gst ? [this.#gst.worker] : [])];
  }

  /** The RTC worker with the fewest peers. */
  #pickRtcWorker(): RtcWorker {
    return this.rtcWorkers.filter((w) => !w.closed).reduce((a, b) => (b.load < a.load ? b : a));
  }

  private constructor(readonly config: McuConfig) {
    this.layouts = LayoutRegistry.fromDirectory(path.join(PROJECT_ROOT, 'layouts'));
    this.#renderer = new ImageRenderer(config.cacheDir);
    // Recordings from earlier runs stay listed and downloadable.
    for (const rec of Recording.restoreAll(config.recordingsDir, this.#log)) this.recordings.set(rec.id, rec);
    this.#lag = new LoopLagMonitor('mcu');
    this.admission = new Admission({
      cores: os.availableParallelism(),
      budget: config.limits.cpuBudget,
      participantCost: config.limits.participantCost,
      audioParticipantCost: config.limits.audioParticipantCost,
    });
    if (config.mediaNice !== 0) {
      const priorities = new GstThreadPriorities(threadRules(config.mediaNice));
      this.#priorityTimer = setInterval(() => priorities.sweep(), 500);
      this.#priorityTimer.unref();
    }
  }

  room(id: string): Room {
    const r = this.rooms.get(id);
    if (!r) throw new NotFoundError(`no room "${id}"`);
    return r;
  }

  /**
   * WHIP join: answers the offer and adds the peer to the room (created on first join). The limits
   * are checked first, before anything is allocated: people per room, rooms per node, then the
   * node's CPU (admission by cost). `owner` identifies the credential that joined, so that the
   * participant's later requests can be matched to it; `canPublish`/`canSubscribe` come from its grants.
   */
  async join(roomId: string, rawName: unknown, offer: string, opts: JoinOptions = {}) {
    const { room, participant, answer } = await this.#admit(roomId, rawName, { offer }, opts);
    return { room, participant, answer: answer.answer };
  }

  /**
   * An SDP-less plain RTP leg (Asterisk's externalMedia): one audio codec, RTP to `remote` or to
   * wherever its first packet comes from. Returns where the gateway sends its RTP.
   */
  async addRtpLeg(roomId: string, rawName: unknown, leg: PlainLegSpec) {
    const { participant, answer } = await this.#admit(roomId, rawName, { leg }, {});
    return { participant, host: answer.plain!.host, port: answer.plain!.rtpPort! };
  }

  async #admit(roomId: string, rawName: unknown, how: { offer?: string; leg?: PlainLegSpec }, opts: JoinOptions) {
    checkRoomId(roomId, this.config.limits.roomIdLength);
    const name = checkName(rawName, `Guest ${this.#guests + 1}`, this.config.limits.nameLength);
    const offer = how.offer ?? '';
    // Priced by what it brings: an offer without video costs the mix, not a decoder and a composite.
    const release = this.#reserveSeat(roomId, { video: /^m=video [1-9]/m.test(offer) });
    this.#guests++;
    const worker = this.#pickRtcWorker();
    const id = Participant.newId();
    worker.load++;
    try {
      const answer = await worker.channel.request('peer.open', {
        id,
        ...how,
        rtc: {
          iceAddresses: this.config.iceAddresses,
          portRange: this.config.rtcPorts,
          canPublish: opts.canPublish ?? true,
          canSubscribe: opts.canSubscribe ?? true,
          nack: this.config.nack,
          preferVideo: this.config.preferVideo,
          inputGate: this.config.inputGate,
        },
        label: { room: roomId, participant: id.slice(0, 8), name },
      });
      const { tracks, audioOutPort } = answer;
      const room = this.rooms.get(roomId) ?? this.#openRoom(roomId);
      this.#peerRooms.set(id, room);
      try {
        // The offer limits what it receives too: b=TIAS/b=AS, and the level of the H.264 it decodes.
        const videoSection = offer.split(/^(?=m=)/m).find((sec) => sec.startsWith('m=video')) ?? '';
        const fromOffer = offerLimits(videoSection, this.config.width / this.config.height, tracks.video?.codec);
        const participant = await room.join(
          name,
          { id, worker, tracks, audioOutPort, transport: answer.plain ? 'rtp' : 'webrtc' },
          { screenshare: opts.screenshare, limits: { asked: opts.limits ?? {}, offer: fromOffer } },
        );
        if (opts.owner) this.#owners.set(id, opts.owner);
        return { room, participant, answer };
      } catch (err) {
        this.#peerRooms.delete(id);
        throw err;
      }
    } catch (err) {
      worker.load--;
      throw err;
    } finally {
      release();
    }
  }

  /**
   * Holds a seat in the room (and the room itself, if it is new) while a join is under way, or
   * throws the limit it would break. Synchronous, so joins that race are counted.
   */
  #reserveSeat(roomId: string, media: { video: boolean }): () => void {
    const { participantsPerRoom, rooms } = this.config.limits;
    const existing = this.rooms.get(roomId);
    const joining = this.#joining.get(roomId) ?? 0;
    if ((existing?.participants.size ?? 0) + joining >= participantsPerRoom) {
      throw new LimitError(409, 'participants_per_room', `room "${roomId}" is full: ${participantsPerRoom} participants is the limit (MCU_MAX_PARTICIPANTS)`);
    }
    if (!existing && joining === 0) this.#checkRoomCount();
    this.admission.admit(media);
    this.#joining.set(roomId, joining + 1);
    return () => {
      const n = (this.#joining.get(roomId) ?? 1) - 1;
      if (n > 0) this.#joining.set(roomId, n);
      else this.#joining.delete(roomId);
    };
  }

  #checkRoomCount(): void {
    const { rooms } = this.config.limits;
    const pendingNew = [...this.#joining.keys()].filter((r) => !this.rooms.has(r)).length;
    if (this.rooms.size + pendingNew >= rooms) {
      throw new LimitError(503, 'rooms', `this node holds its limit of ${rooms} rooms (MCU_MAX_ROOMS)`, 30);
    }
  }

  /** Whether this credential (a token's id) joined as this participant. */
  ownedBy(participantId: string, owner: string): boolean {
    return this.#owners.get(participantId) === owner;
  }

  /** A participant left its room: its worker has one peer fewer. */
  #left(p: Participant): void {
    this.#owners.delete(p.id);
    if (this.#peerRooms.delete(p.id)) p.peer.worker.load--;
  }

  /** A layout was replaced or deleted: recompose every room (views that use it change). */
  layoutChanged(_id: string): void {
    for (const r of this.rooms.values()) r.recompose();
  }

  #openRoom(roomId: string): Room {
    const room = new Room(roomId, {
      config: this.config,
      presets: this.#presets,
      layouts: this.layouts,
      renderer: this.#renderer,
      log: this.#log,
      mixer: this.#mixer,
      gst: this.#gst,
      rtcWorkers: () => this.rtcWorkers,
      left: (p) => this.#left(p),
      emptied: (r) => this.#closeIfIdle(r),
    });
    this.rooms.set(roomId, room);
    return room;
  }

  /** Close an empty room a little later, unless someone joins or a recording runs meanwhile. */
  #closeIfIdle(r: Room): void {
    setTimeout(() => {
      if (r.participants.size === 0 && !r.recording && this.rooms.get(r.id) === r) {
        this.rooms.delete(r.id);
        void r.close();
      }
    }, 30_000).unref();
  }

  /** POST /v1/rooms: an empty room, optionally with its layout, recording from the start. */
  async createRoom(id: string, opts: { layout?: string; autoRecord?: Partial<RecordingOptions> | boolean }) {
    checkRoomId(id, this.config.limits.roomIdLength);
    if (this.rooms.has(id)) throw new InvalidStateError(`room "${id}" exists already`);
    if (!this.#joining.has(id)) this.#checkRoomCount();
    if (opts.layout) this.layouts.get(opts.layout);
    const room = this.#openRoom(id);
    if (opts.layout) room.setLayout({ layout: opts.layout });
    if (opts.autoRecord) await this.startRecording(id, opts.autoRecord === true ? {} : opts.autoRecord);
    else this.#closeIfIdle(room);
    return room;
  }

  async startRecording(roomId: string, opts: Partial<RecordingOptions>): Promise<Recording> {
    const room = this.room(roomId);
    const rec = await room.startRecording({
      format: opts.format ?? 'webm',
      width: opts.width ?? 1280,
      height: opts.height ?? 720,
      fps: opts.fps ?? 30,
      layout: opts.layout ?? 'grid',
    });
    this.recordings.set(rec.id, rec);
    return rec;
  }

  recording(id: string): Recording {
    const r = this.recordings.get(id);
    if (!r) throw new NotFoundError(`no recording "${id}"`);
    return r;
  }

  async stopRecording(id: string): Promise<Recording> {
    const rec = this.recording(id);
    await rec.stop();
    const room = this.rooms.get(rec.roomId);
    if (room && room.participants.size === 0 && !room.recording) this.#closeIfIdle(room);
    return rec;
  }

  /** Deletes a finished recording and its file. */
  async deleteRecording(id: string): Promise<void> {
    const rec = this.recording(id);
    if (rec.active || rec.state === 'stopping') throw new InvalidStateError(`recording ${id} is ${rec.state}; stop it first`);
    await rec.remove();
    this.recordings.delete(id);
  }

  dump() {
    return { rooms: [...this.rooms.values()].map((r) => r.dump()) };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#lag.close();
    this.admission.close();
    clearInterval(this.#priorityTimer);
    // Graceful shutdown finalises every recording before anything else goes.
    await Promise.all([...this.recordings.values()].map((r) => r.stop().catch(() => undefined)));
    await Promise.all([...this.rooms.values()].map((r) => r.close()));
    this.rooms.clear();
    // Every pipeline stops in the GStreamer worker; the thread itself ends with the process (a
    // thread torn down under a pending GStreamer bus callback took the process with it).
    await this.#gst?.worker.channel.request('shutdown', {}).catch(() => undefined);
    await Promise.all(this.workers.map((w) => w.close({ terminate: w.kind !== 'gst' })));
  }
}
