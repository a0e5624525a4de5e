import { Redis } from 'ioredis';
import { McuError } from '../core/errors.js';
import { TypedEmitter } from '../core/events.js';
import type { Logger } from '../core/log.js';
import { HEARTBEAT_LUA, KEY_PREFIX, LEAVE_LUA, PLACE_LUA, type NodeRecord } from './placement.js';

/** Redis cannot be reached: the node serves what it has and places nothing new. */
export class ClusterUnavailableError extends McuError {
  constructor(why: string) {
    super(503, 'cluster_unavailable', `the cluster's registry (Redis) cannot be reached, so no new room can be placed now: ${why}`);
  }
}

/** What the node running this registry has, read at each heartbeat. */
export interface LocalSnapshot {
  loadCores: number;
  pendingCores: number;
  capacityCores: number;
  participantCost: number;
  maxRooms: number;
  participants: number;
  /** Rooms open on this node: they stay placed here. */
  rooms: string[];
  /** Recordings this node holds: published when they change, and every few seconds while they record. */
  recordings: Array<{ id: string; state: string; active: boolean; dump: () => Record<string, unknown> & { room: string } }>;
}

/** A recording as the cluster knows it: which node holds it, and what that node last published. */
export interface ClusterRecording {
  node: string;
  recording: Record<string, unknown> & { id: string; room: string; state: string };
}

export interface RegistryOptions {
  redisUrl: string;
  nodeId: string;
  url: string;
  iceAddresses: string[];
  /** How long a room stays placed after its node closed it (MCU_ROOM_GRACE_SECONDS), in ms. */
  graceMs: number;
  snapshot: () => LocalSnapshot;
  log: Logger;
  heartbeatMs?: number;
  ttlMs?: number;
  prefix?: string;
}

export interface RegistryEvents extends Record<string, unknown> {
  /** A heartbeat went through after none had (at start, or Redis is back). */
  up: void;
  /** A heartbeat failed after one had gone through. */
  down: { error: string };
}

/** Heartbeat period and record TTL: a node that stops beating is gone from the registry within TTL_MS. */
export const HEARTBEAT_MS = 1000;
export const TTL_MS = 4000;

/**
 * This node in the cluster's registry (Redis, through ioredis: the one module that imports it).
 * Every HEARTBEAT_MS it writes its record (URL, ICE addresses, load and capacity from admission)
 * with a TTL, keeps its rooms placed, publishes its recordings, and reads the other nodes back.
 * It places rooms (PLACE_LUA, atomic) and says where a room or recording is. When Redis cannot be
 * reached, calls throw ClusterUnavailableError and the heartbeat keeps trying; ioredis reconnects
 * by itself. close() publishes a last time, leaves the registry and disconnects.
 */
export class Registry extends TypedEmitter<RegistryEvents> {
  readonly id: string;
  readonly url: string;
  readonly #o: Required<Omit<RegistryOptions, 'log'>> & { log: Logger };
  readonly #redis: Redis;
  readonly #startedAt = new Date().toISOString();
  #timer?: NodeJS.Timeout;
  #beating?: Promise<void>;
  #up = false;
  #draining = false;
  #closed = false;
  #nodes = new Map<string, NodeRecord>();
  /** What was last published of each local recording (its state, and when), to write only changes. */
  #published = new Map<string, { state: string; at: number }>();
  /** Rooms open here that Redis places on another node (said once each). */
  readonly #conflicts = new Set<string>();

  static async create(opts: RegistryOptions): Promise<Registry> {
    const r = new Registry(opts);
    await r.beat();
    r.#timer = setInterval(() => void r.beat(), r.#o.heartbeatMs);
    r.#timer.unref();
    return r;
  }

  private constructor(opts: RegistryOptions) {
    super();
    this.#o = { heartbeatMs: HEARTBEAT_MS, ttlMs: TTL_MS, prefix: KEY_PREFIX, ...opts };
    this.id = opts.nodeId;
    this.url = opts.url;
    this.#redis = new Redis(opts.redisUrl, {
      // Fail at once while disconnected (the caller answers 503) instead of queueing requests.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      connectTimeout: 2000,
      commandTimeout: 2000,
      retryStrategy: (times) => Math.min(100 * times, 1000),
      lazyConnect: false,
    });
    this.#redis.on('error', () => undefined); // reported by the heartbeat, once per outage
    this.#redis.defineCommand('mcuPlace', { numberOfKeys: 1, lua: PLACE_LUA });
    this.#redis.defineCommand('mcuHeartbeat', { numberOfKeys: 0, lua: HEARTBEAT_LUA });
    this.#redis.defineCommand('mcuLeave', { numberOfKeys: 0, lua: LEAVE_LUA });
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Whether the last heartbeat went through. */
  get up(): boolean {
    return this.#up;
  }

  get draining(): boolean {
    return this.#draining;
  }

  /** Live nodes as of the last heartbeat (this one included while it is registered). */
  nodes(): NodeRecord[] {
    return [...this.#nodes.values()];
  }

  /** This node takes no new rooms from now on; the others learn it at once. */
  async drain(): Promise<void> {
    this.#draining = true;
    await this.beat();
  }

  /** One heartbeat now (they never overlap). */
  beat(): Promise<void> {
    return (this.#beating ??= this.#beat().finally(() => (this.#beating = undefined)));
  }

  async #beat(): Promise<void> {
    if (this.#closed) return;
    const s = this.#o.snapshot();
    const record: NodeRecord = {
      id: this.id,
      url: this.url,
      iceAddresses: this.#o.iceAddresses,
      loadCores: s.loadCores,
      pendingCores: s.pendingCores,
      capacityCores: s.capacityCores,
      participantCost: s.participantCost,
      rooms: s.rooms.length,
      participants: s.participants,
      maxRooms: s.maxRooms,
      draining: this.#draining,
      startedAt: this.#startedAt,
    };
    const p = this.#o.prefix;
    try {
      const res = (await this.#cmd('mcuHeartbeat', p, this.id, JSON.stringify(record), this.#o.ttlMs, this.#o.graceMs, ...s.rooms)) as string[];
      const n = Number(res[0]);
      const nodes = new Map<string, NodeRecord>();
      for (const raw of res.slice(1, 1 + n)) {
        const rec = parseRecord(raw);
        nodes.set(rec.id, rec);
      }
      this.#nodes = nodes;
      const conflicts = res.slice(1 + n);
      for (let i = 0; i < conflicts.length; i += 2) {
        if (this.#conflicts.has(conflicts[i])) continue;
        this.#conflicts.add(conflicts[i]);
        this.#o.log.warn(`room ${conflicts[i]} is open here but placed on node ${conflicts[i + 1]}; requests that reach this node are served here`);
      }
      for (const room of this.#conflicts) if (!s.rooms.includes(room)) this.#conflicts.delete(room);
      // A room closed here is no longer refreshed: its placement lasts the grace period (its TTL).
      await this.#publishRecordings(s.recordings);
      if (!this.#up) {
        this.#up = true;
        this.#o.log.info(`registered as node ${this.id} (${this.url}); ${nodes.size} node(s) in the cluster`);
        this.safeEmit('up');
      }
    } catch (err) {
      if (this.#up || this.#nodes.size === 0) {
        this.#o.log.warn(`registry unreachable (${(err as Error).message}); serving the rooms held here, placing none until it is back`);
        // Published recordings are written again in full once it is back (it may have restarted empty).
        this.#published.clear();
        if (this.#up) this.safeEmit('down', { error: (err as Error).message });
      }
      this.#up = false;
      // Other nodes are unknown while Redis is away; keep this one's own record for its URL.
      this.#nodes = new Map([[this.id, record]]);
    }
  }

  async #publishRecordings(recs: LocalSnapshot['recordings']): Promise<void> {
    const key = this.#o.prefix + 'recordings';
    const now = Date.now();
    const write: string[] = [];
    const seen = new Set<string>();
    for (const r of recs) {
      seen.add(r.id);
      const last = this.#published.get(r.id);
      if (last && last.state === r.state && !(r.active && now - last.at >= 5000)) continue;
      write.push(r.id, JSON.stringify({ node: this.id, recording: r.dump() }));
      this.#published.set(r.id, { state: r.state, at: now });
    }
    const gone = [...this.#published.keys()].filter((id) => !seen.has(id));
    for (const id of gone) this.#published.delete(id);
    if (!write.length && !gone.length) return;
    const m = this.#redis.multi();
    if (write.length) m.hset(key, ...write);
    if (gone.length) m.hdel(key, ...gone);
    await m.exec();
  }

  /** Where a room is placed, placing it now if it is not (or its node is gone). null: no node has room. */
  async place(room: string, opts: { avoidSelf?: boolean } = {}): Promise<NodeRecord | null> {
    const id = (await this.#cmd('mcuPlace', this.#o.prefix + 'room:' + room, this.#o.prefix, room, this.#o.graceMs, opts.avoidSelf ? this.id : '')) as string | null;
    if (!id) return null;
    const node = await this.liveNode(id);
    if (!node) throw new ClusterUnavailableError(`node ${id} left the registry while the room was placed`);
    return node;
  }

  /** The live node a room is placed on, or undefined. */
  async whereIs(room: string): Promise<NodeRecord | undefined> {
    const id = await this.#call(() => this.#redis.get(this.#o.prefix + 'room:' + room));
    return id ? this.liveNode(id) : undefined;
  }

  /** Every recording the cluster knows of, with the node that holds it. */
  async recordings(): Promise<ClusterRecording[]> {
    const all = await this.#call(() => this.#redis.hgetall(this.#o.prefix + 'recordings'));
    return Object.values(all).map((v) => JSON.parse(v) as ClusterRecording);
  }

  async recording(id: string): Promise<ClusterRecording | undefined> {
    const v = await this.#call(() => this.#redis.hget(this.#o.prefix + 'recordings', id));
    return v ? (JSON.parse(v) as ClusterRecording) : undefined;
  }

  /** A node's record as Redis has it now (not the heartbeat's copy), or undefined if it has left. */
  async liveNode(id: string): Promise<NodeRecord | undefined> {
    const raw = await this.#call(() => this.#redis.get(this.#o.prefix + 'node:' + id));
    return raw ? parseRecord(raw) : undefined;
  }

  /** Every node in the registry now, as Redis has them. */
  async liveNodes(): Promise<NodeRecord[]> {
    const p = this.#o.prefix;
    const ids = await this.#call(() => this.#redis.smembers(p + 'nodes'));
    if (!ids.length) return [];
    const raws = await this.#call(() => this.#redis.mget(...ids.map((id) => p + 'node:' + id)));
    return raws.filter((r): r is string => !!r).map(parseRecord);
  }

  #cmd(name: string, ...args: Array<string | number>): Promise<unknown> {
    return this.#call(() => (this.#redis as unknown as Record<string, (...a: Array<string | number>) => Promise<unknown>>)[name](...args));
  }

  async #call<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#closed) throw new ClusterUnavailableError('this node is leaving the cluster');
    try {
      return await fn();
    } catch (err) {
      if (err instanceof McuError) throw err;
      throw new ClusterUnavailableError((err as Error).message);
    }
  }

  /** Publishes the recordings a last time, leaves the registry (its rooms are placed afresh on their next join) and disconnects. Safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    clearInterval(this.#timer);
    await this.#beating;
    try {
      await this.#publishRecordings(this.#o.snapshot().recordings);
      await this.#cmd('mcuLeave', this.#o.prefix, this.id);
      this.#o.log.info(`node ${this.id} left the registry`);
    } catch (err) {
      this.#o.log.warn(`could not leave the registry (${(err as Error).message}); its record expires in ${this.#o.ttlMs} ms`);
    }
    this.#closed = true;
    this.removeAllListeners();
    this.#redis.disconnect();
  }
}

function parseRecord(raw: string): NodeRecord {
  const rec = JSON.parse(raw) as NodeRecord;
  // Lua's cjson writes an empty array as {}.
  if (!Array.isArray(rec.iceAddresses)) rec.iceAddresses = [];
  return rec;
}
