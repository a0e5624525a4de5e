import client from 'prom-client';
import type { Mcu } from '../room/Mcu.js';

/**
 * Prometheus metrics, read from the live tree at scrape time (nothing is counted twice).
 * Node's default metrics bring event-loop lag (nodejs_eventloop_lag_*) and process CPU
 * (process_cpu_seconds_total).
 */
export function createMetrics(mcu: Mcu): client.Registry {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry });
  const rooms = () => [...mcu.rooms.values()];
  const everyone = () => rooms().flatMap((r) => [...r.participants.values()].map((p) => ({ r, p })));

  new client.Gauge({
    name: 'mcu_rooms',
    help: 'Rooms open',
    registers: [registry],
    collect() {
      this.set(mcu.rooms.size);
    },
  });
  new client.Gauge({
    name: 'mcu_participants',
    help: 'Participants by role',
    labelNames: ['role'],
    registers: [registry],
    collect() {
      this.reset();
      for (const role of ['participant', 'publisher', 'viewer']) this.set({ role }, everyone().filter(({ p }) => p.role === role).length);
    },
  });
  new client.Gauge({
    name: 'mcu_admission_cores',
    help: 'Admission control: CPU in use (load), committed to joins not yet in the load, what this node may use (capacity, MCU_CPU_BUDGET of its cores), and what one more participant costs (with video, audio only)',
    labelNames: ['what'],
    registers: [registry],
    collect() {
      const a = mcu.admission.dump();
      this.set({ what: 'load' }, a.loadCores);
      this.set({ what: 'capacity' }, a.capacityCores);
      this.set({ what: 'committed' }, a.pendingCores);
      this.set({ what: 'participant_cost' }, a.participantCost);
      this.set({ what: 'audio_participant_cost' }, a.audioParticipantCost);
    },
  });
  new client.Gauge({
    name: 'mcu_pipelines',
    help: 'GStreamer pipelines running',
    registers: [registry],
    collect() {
      this.set(mcu.workerPipelines);
    },
  });
  new client.Gauge({
    name: 'mcu_encoders',
    help: 'Composite video encoders in use (shared by viewers with identical compositions)',
    labelNames: ['room'],
    registers: [registry],
    collect() {
      this.reset();
      for (const r of rooms()) this.set({ room: r.id }, r.views.size);
    },
  });
  new client.Gauge({
    name: 'mcu_output_fps',
    help: 'Video frames per second sent to each viewer (last 5 s)',
    labelNames: ['room', 'participant'],
    registers: [registry],
    collect() {
      this.reset();
      for (const { r, p } of everyone()) if (p.receivesVideo && p.stats) this.set({ room: r.id, participant: p.id }, p.stats.fps);
    },
  });
  new client.Gauge({
    name: 'mcu_output_profile',
    help: 'The stream each viewer is sent: width and height in pixels, fps, bitrate in bits/s (its profile, from its limits)',
    labelNames: ['room', 'participant', 'what'],
    registers: [registry],
    collect() {
      this.reset();
      for (const { r, p } of everyone()) {
        if (!p.profile) continue;
        for (const what of ['width', 'height', 'fps', 'bitrate'] as const) this.set({ room: r.id, participant: p.id, what }, p.profile[what]);
      }
    },
  });
  new client.Gauge({
    name: 'mcu_output_rung',
    help: 'The rung of its bandwidth ladder each viewer is on: 0 full, 1 half the bitrate, 2 a quarter at half the size, 3 low frame rate',
    labelNames: ['room', 'participant'],
    registers: [registry],
    collect() {
      this.reset();
      for (const { r, p } of everyone()) if (p.receivesVideo) this.set({ room: r.id, participant: p.id }, p.rung?.index ?? 0);
    },
  });
  new client.Gauge({
    name: 'mcu_link_estimate_bps',
    help: 'What each viewer’s downlink carries, as its transport estimates it (transport-cc, else REMB)',
    labelNames: ['room', 'participant'],
    registers: [registry],
    collect() {
      this.reset();
      for (const { r, p } of everyone()) if (p.stats?.link?.estimate !== undefined) this.set({ room: r.id, participant: p.id }, p.stats.link.estimate);
    },
  });
  const lastBytes = new Map<string, { bytes: number; at: number }>();
  new client.Gauge({
    name: 'mcu_output_bitrate_bps',
    help: 'Video bits per second sent to each viewer, since the previous scrape',
    labelNames: ['room', 'participant'],
    registers: [registry],
    collect() {
      this.reset();
      const now = performance.now();
      for (const { r, p } of everyone()) {
        if (!p.receivesVideo || !p.stats) continue;
        const prev = lastBytes.get(p.id);
        const bytes = p.stats.bytesSent;
        if (prev && now > prev.at) this.set({ room: r.id, participant: p.id }, ((bytes - prev.bytes) * 8000) / (now - prev.at));
        lastBytes.set(p.id, { bytes, at: now });
      }
      for (const id of [...lastBytes.keys()]) if (!everyone().some(({ p }) => p.id === id)) lastBytes.delete(id);
    },
  });
  new client.Gauge({
    name: 'mcu_dropped_packets',
    help: 'Video packets not sent to a viewer while it waited for a keyframe (current participants)',
    labelNames: ['room', 'participant'],
    registers: [registry],
    collect() {
      this.reset();
      for (const { r, p } of everyone()) if (p.receivesVideo && p.stats) this.set({ room: r.id, participant: p.id }, p.stats.droppedWaitingKeyframe);
    },
  });
  new client.Gauge({
    name: 'mcu_keyframe_requests',
    help: 'Keyframe requests: PLIs sent to publishers, and keyframes asked of composite encoders (current rooms)',
    labelNames: ['direction'],
    registers: [registry],
    collect() {
      this.reset();
      this.set({ direction: 'to_publishers' }, everyone().reduce((n, { p }) => n + (p.stats?.pliSent ?? 0), 0));
      this.set({ direction: 'to_encoders' }, rooms().reduce((n, r) => n + [...r.views.values()].reduce((m, v) => m + v.keyframeRequests, 0), 0));
    },
  });
  new client.Gauge({
    name: 'mcu_event_loop_max_stall_ms',
    help: 'Longest event-loop stall of the control thread since start (media does not wait for it)',
    registers: [registry],
    collect() {
      this.set(mcu.maxLoopLagMs);
    },
  });
  new client.Gauge({
    name: 'mcu_media_thread_max_stall_ms',
    help: 'Longest event-loop stall of each media worker thread since start (every packet of its peers waits for it)',
    labelNames: ['thread'],
    registers: [registry],
    collect() {
      this.reset();
      for (const w of mcu.workers) this.set({ thread: w.name }, w.maxLoopLagMs);
    },
  });
  new client.Gauge({
    name: 'mcu_media_thread_stray_errors',
    help: 'Errors nobody caught (a throw in a handler, a rejection nobody awaited) that each media worker thread logged and survived since it started',
    labelNames: ['thread'],
    registers: [registry],
    collect() {
      this.reset();
      for (const w of mcu.workers) this.set({ thread: w.name }, w.strayErrors);
    },
  });
  new client.Gauge({
    name: 'mcu_media_thread_peers',
    help: 'Peers on each RTC worker thread',
    labelNames: ['thread'],
    registers: [registry],
    collect() {
      this.reset();
      for (const w of mcu.rtcWorkers) if (w) this.set({ thread: w.name }, w.load);
    },
  });
  return registry;
}
