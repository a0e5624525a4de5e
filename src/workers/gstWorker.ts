/**
 * The GStreamer worker: the thread that builds, starts, adjusts and stops the pipelines of
 * participants, composites and tile scalers, so that `gst_parse_launch` and state changes never
 * hold the control thread (and its HTTP API) while someone joins. Media does not pass through it
 * either: pipelines talk to the RTC and mixer workers over loopback UDP. The control thread drives
 * it with GstRequests through RemotePipeline handles (src/gst/remote.ts).
 */
import { parentPort } from 'node:worker_threads';
import { InvalidStateError, NotFoundError } from '../core/errors.js';
import { createLogger, setLogLevel, type LogLevel } from '../core/log.js';
import { strayErrors, surviveStrayErrors } from './strayErrors.js';
import { LoopLagMonitor } from '../core/loopLag.js';
import { GstPipeline, releaseFreeMemory, runningPipelines } from '../gst/native.js';
import { RecorderMedia } from '../media/RecorderMedia.js';
import { Channel, type PortLike } from './channel.js';
import { cancelQuietCollection, collectGarbage, heapMb, collectWhenQuiet, writeHeapSnapshot } from './gc.js';
import type { GstEvents, GstRequests, NoEvents, NoRequests } from './protocol.js';

surviveStrayErrors(createLogger('gst'));
const channel = new Channel<NoRequests, GstRequests, GstEvents, NoEvents>(parentPort as unknown as PortLike);
const lag = new LoopLagMonitor('gst-worker');
const pipelines = new Map<string, GstPipeline>();

type StartRequest = GstRequests['pipeline.start'];
const queued = new Map<string, { req: StartRequest[0]; resolve: (r: StartRequest[1]) => void; reject: (e: Error) => void }>();

/** Builds and starts the oldest queued pipeline, then yields to messages (closes among them). */
function buildNext(): void {
  const first = queued.entries().next();
  if (first.done) return;
  const [id, { req, resolve, reject }] = first.value;
  queued.delete(id);
  try {
    const p = new GstPipeline(req.launch);
    pipelines.set(id, p);
    const startMs = p.play((e) => channel.notify('pipeline.bus', { id, type: e.type, element: e.element, message: e.message }));
    // udpsrc binds a free port while the pipeline starts; live pipelines start synchronously.
    const bound: Record<string, number> = {};
    for (const el of req.ports ?? []) bound[el] = Number(p.get(el, 'port'));
    resolve({ startMs, ports: bound });
  } catch (err) {
    reject(err as Error);
  }
  if (queued.size > 0) setImmediate(buildNext);
}
/**
 * After pipelines stop: collect their element handles, then hand freed memory back, once no
 * pipeline has stopped for RELEASE_QUIET_MS. The trim locks each of malloc's arenas while it walks
 * it, and every thread that allocates from that arena meanwhile waits, media threads included:
 * in a CI run of the joins test a 667 ms trim, 2 s after a guest left, came with 265-279 ms stalls
 * of both RTC workers and 319-373 ms without a frame or a mix packet at the egress, the largest of
 * the test. So a run of people leaving one after another makes one trim, after the last of them,
 * instead of one after each; it still stalls whoever is in a call then (see Known limits).
 */
const RELEASE_QUIET_MS = 30_000;
const release = () => collectWhenQuiet(RELEASE_QUIET_MS, releaseFreeMemory);

const recorders = new Map<string, RecorderMedia>();
const recorder = (id: string) => {
  const r = recorders.get(id);
  if (!r) throw new NotFoundError(`no recorder "${id}"`);
  return r;
};

const pipeline = (id: string) => {
  const p = pipelines.get(id);
  if (!p) throw new NotFoundError(`no pipeline "${id}"`);
  return p;
};

channel.serve({
  init({ logLevel }) {
    setLogLevel(logLevel as LogLevel);
  },
  'pipeline.start'(req) {
    // Builds wait their turn, so that a close that comes first cancels one not yet built (a join
    // replaces every viewer's composite, and the next join may replace them again before then).
    return new Promise((resolve, reject) => {
      queued.set(req.id, { req, resolve, reject });
      if (queued.size === 1) setImmediate(buildNext);
    });
  },
  'pipeline.get'({ id, element, prop }) {
    const v = pipeline(id).get(element, prop);
    return typeof v === 'bigint' ? Number(v) : (v as string | number | boolean | null);
  },
  'pipeline.set'({ id, element, prop, value }) {
    pipelines.get(id)?.set(element, prop, value);
  },
  'pipeline.keyframe'({ id, element }) {
    pipelines.get(id)?.forceKeyUnit(element);
  },
  async 'pipeline.close'({ id }) {
    const q = queued.get(id);
    if (q) {
      queued.delete(id);
      q.reject(new InvalidStateError(`pipeline ${id} was closed before it was built`));
      return;
    }
    const p = pipelines.get(id);
    pipelines.delete(id);
    await p?.close();
    // The pipeline is freed; the handles on its elements (and the elements) go when collected,
    // and this thread allocates too little for V8 to collect on its own for a long time.
    release();
  },
  async 'recorder.start'({ id, launch }) {
    const r = new RecorderMedia(launch, {
      failed: (reason) => channel.notify('recorder.failed', { id, reason }),
      switched: (to, from) => channel.notify('recorder.switched', { id, to, from }),
      keyframe: (key) => channel.notify('recorder.keyframe', { id, key }),
    });
    recorders.set(id, r);
    return r.open();
  },
  'recorder.generation'({ id, key, codec, ssrc }) {
    recorders.get(id)?.generation(key, codec, ssrc);
  },
  'recorder.started'({ id, key, ssrc, startMs }) {
    recorders.get(id)?.started(key, ssrc, startMs);
  },
  'recorder.follow'({ id, key }) {
    recorders.get(id)?.follow(key);
  },
  'recorder.forget'({ id, key }) {
    recorders.get(id)?.forget(key);
  },
  'recorder.videoPackets'({ id }) {
    return recorder(id).videoPackets;
  },
  async 'recorder.stop'({ id }) {
    const r = recorder(id);
    recorders.delete(id);
    try {
      return await r.stop();
    } finally {
      release();
    }
  },
  async 'recorder.close'({ id }) {
    const r = recorders.get(id);
    recorders.delete(id);
    await r?.close();
    release();
  },
  'test.gc'() {
    // Made now, so the one waiting for a quiet moment is not needed.
    cancelQuietCollection();
    collectGarbage();
    releaseFreeMemory();
    return heapMb();
  },
  'test.heapSnapshot'({ file }) {
    return writeHeapSnapshot(file);
  },
  async shutdown() {
    const all = [...pipelines.values()];
    pipelines.clear();
    const recs = [...recorders.values()];
    recorders.clear();
    await Promise.all([...all.map((p) => p.close()), ...recs.map((r) => r.stop().catch(() => false))]);
  },
});

setInterval(() => channel.notify('load', { maxLoopLagMs: lag.maxLagMs, strayErrors: strayErrors(), pipelines: runningPipelines }), 250);
