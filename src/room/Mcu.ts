import type { McuConfig } from '../core/config.js';
import { BadRequestError, InvalidStateError, NotFoundError } from '../core/errors.js';
import { LayoutRegistry } from '../core/layouts.js';
import { createLogger } from '../core/log.js';
import { loadPresets, PROJECT_ROOT } from '../core/pipelines.js';
import { ImageRenderer } from '../render/images.js';
import { PeerSession } from '../rtc/native.js';
import path from 'node:path';
import { Recording, type RecordingOptions } from './Recording.js';
import { Room } from './Room.js';

const ROOM_RE = /^[A-Za-z0-9_-]{1,64}$/;
export const MAX_NAME = 64;

export function checkRoomId(id: string): string {
  if (!ROOM_RE.test(id)) throw new BadRequestError('room ids are 1-64 letters, digits, "_" or "-"', 'bad_room');
  return id;
}

export function checkName(name: unknown, fallback: string): string {
  if (name === undefined || name === '') return fallback;
  if (typeof name !== 'string') throw new BadRequestError('name must be a single string', 'bad_name');
  const clean = name.replace(/[\u0000-\u001f\u007f]/g, '').trim();
  if ([...clean].length > MAX_NAME) throw new BadRequestError(`name must be at most ${MAX_NAME} characters`, 'bad_name');
  return clean || fallback;
}

/** The top of the tree: rooms by id. Closing it closes every room, participant and pipeline. */
export class Mcu {
  readonly rooms = new Map<string, Room>();
  /** Every recording, running or finished, by id: this process's and those found on disk. */
  readonly recordings = new Map<string, Recording>();
  readonly layouts: LayoutRegistry;
  readonly #presets = loadPresets();
  readonly #renderer: ImageRenderer;
  readonly #log = createLogger('mcu');
  #closed = false;
  #guests = 0;

  readonly #lagTimer: NodeJS.Timeout;
  /** Largest event-loop stall seen, in ms: while the loop is blocked no RTP moves. */
  maxLoopLagMs = 0;

  constructor(readonly config: McuConfig) {
    this.layouts = LayoutRegistry.fromDirectory(path.join(PROJECT_ROOT, 'layouts'));
    this.#renderer = new ImageRenderer(config.cacheDir);
    // Recordings from earlier runs stay listed and downloadable.
    for (const rec of Recording.restoreAll(config.recordingsDir, this.#log)) this.recordings.set(rec.id, rec);
    let last = performance.now();
    this.#lagTimer = setInterval(() => {
      const now = performance.now();
      const lag = now - last - 50;
      last = now;
      if (lag > this.maxLoopLagMs) this.maxLoopLagMs = Math.round(lag);
      if (lag > 100) this.#log.warn(`event loop was blocked for ${Math.round(lag)} ms`);
    }, 50);
    this.#lagTimer.unref();
  }

  room(id: string): Room {
    const r = this.rooms.get(id);
    if (!r) throw new NotFoundError(`no room "${id}"`);
    return r;
  }

  /** WHIP join: answers the offer and adds the peer to the room (created on first join). */
  async join(roomId: string, rawName: unknown, offer: string, opts: { screenshare?: boolean } = {}) {
    checkRoomId(roomId);
    const name = checkName(rawName, `Guest ${++this.#guests}`);
    const session = await PeerSession.answer(offer, {
      iceAddresses: this.config.iceAddresses,
      portRange: this.config.rtcPorts,
    });
    const room = this.rooms.get(roomId) ?? this.#openRoom(roomId);
    const participant = await room.join(name, session, opts);
    return { room, participant, answer: session.answerSdp };
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
  createRoom(id: string, opts: { layout?: string; autoRecord?: Partial<RecordingOptions> | boolean }) {
    checkRoomId(id);
    if (this.rooms.has(id)) throw new InvalidStateError(`room "${id}" exists already`);
    if (opts.layout) this.layouts.get(opts.layout);
    const room = this.#openRoom(id);
    if (opts.layout) room.setLayout({ layout: opts.layout });
    if (opts.autoRecord) this.startRecording(id, opts.autoRecord === true ? {} : opts.autoRecord);
    else this.#closeIfIdle(room);
    return room;
  }

  startRecording(roomId: string, opts: Partial<RecordingOptions>): Recording {
    const room = this.room(roomId);
    const rec = room.startRecording({
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
    clearInterval(this.#lagTimer);
    // Graceful shutdown finalises every recording before anything else goes.
    await Promise.all([...this.recordings.values()].map((r) => r.stop().catch(() => undefined)));
    await Promise.all([...this.rooms.values()].map((r) => r.close()));
    this.rooms.clear();
  }
}
