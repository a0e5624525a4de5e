import type { ClusterConfig } from '../core/config.js';
import { createLogger } from '../core/log.js';
import type { Mcu } from '../room/Mcu.js';
import { defaultNodeId } from './placement.js';
import { Registry, type LocalSnapshot } from './Registry.js';

export { Registry } from './Registry.js';

const log = createLogger('cluster');

/** What a node reports to the registry, read from the live tree at each heartbeat. */
function snapshotOf(mcu: Mcu): LocalSnapshot {
  const a = mcu.admission.dump();
  const rooms = [...mcu.rooms.values()];
  return {
    loadCores: a.loadCores,
    pendingCores: a.pendingCores,
    capacityCores: a.capacityCores,
    participantCost: a.participantCost,
    maxRooms: mcu.config.limits.rooms,
    participants: rooms.reduce((n, r) => n + r.participants.size, 0),
    rooms: rooms.map((r) => r.id),
    recordings: [...mcu.recordings.values()].map((rec) => ({ id: rec.id, state: rec.state, active: rec.active, dump: () => rec.dump() })),
  };
}

export interface ClusterNode {
  registry: Registry;
  /**
   * SIGTERM: takes no new rooms (the registry says so at once), keeps the running ones until they
   * are empty (no participant, no recording) or MCU_DRAIN_SECONDS pass. The caller then closes.
   */
  drain(opts?: { signal?: AbortSignal }): Promise<{ emptied: boolean; seconds: number }>;
  /** Leaves the registry. */
  close(): Promise<void>;
}

/** Joins the cluster whose registry is at MCU_REDIS_URL, as the node reached at `url` (its listening address, unless MCU_PUBLIC_URL). */
export async function joinCluster(mcu: Mcu, config: ClusterConfig, url: string): Promise<ClusterNode> {
  const publicUrl = config.publicUrl ?? url;
  const registry = await Registry.create({
    redisUrl: config.redisUrl,
    nodeId: config.nodeId ?? defaultNodeId(publicUrl),
    url: publicUrl,
    iceAddresses: mcu.config.iceAddresses,
    graceMs: config.roomGraceSeconds * 1000,
    snapshot: () => snapshotOf(mcu),
    log,
  });
  const busy = () => [...mcu.rooms.values()].some((r) => r.participants.size > 0 || r.recording);
  return {
    registry,
    async drain({ signal } = {}) {
      const started = Date.now();
      await registry.drain();
      const deadline = started + config.drainSeconds * 1000;
      log.info(`draining: no new rooms; waiting for ${mcu.rooms.size} room(s) to empty, at most ${config.drainSeconds} s`);
      while (busy() && Date.now() < deadline && !signal?.aborted) await new Promise((r) => setTimeout(r, 200));
      const seconds = Math.round((Date.now() - started) / 100) / 10;
      const emptied = !busy();
      log.info(emptied ? `drained in ${seconds} s` : `drain ended after ${seconds} s with rooms still running; closing them`);
      return { emptied, seconds };
    },
    close: () => registry.close(),
  };
}
