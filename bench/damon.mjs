// The kernel's DAMON (Data Access MONitor), which some virtual machines run to reclaim memory their
// host wants back. This project's 2-core machines run one kdamond in physical-address mode with a
// "pageout" scheme, sampling every 500 ms. Each round (about every 0.6 s) it took 20-30 ms of a CPU
// and walked the page tables of the pages it sampled, and every thread of the server stalled at
// once, for 25-50 ms, by its own event-loop monitors: measured on 2026-12-02 with `perf sched` in
// bench case (a) at 12 people, the late composite frames and the stalls of the control thread, the
// GStreamer worker and the RTC workers all came in the same rounds as kdamond's. With it off for
// the two runs of that case, the largest audio gap at the receivers was 52-60 ms (102-232 ms in
// six runs with it on) and the p99 frame lateness 43-54 ms (52-116).
//
// The bench reports what it finds; BENCH_DAMON=off stops the monitor for the run and starts it
// again at exit (root only; it is the machine's setting, not this project's).
import fs from 'node:fs';
import path from 'node:path';

const ROOT = '/sys/kernel/mm/damon/admin/kdamonds';

/** The kdamonds that are on, with what they do. */
export function damonState() {
  let ids = [];
  try {
    ids = fs.readdirSync(ROOT).filter((d) => /^\d+$/.test(d));
  } catch {
    return [];
  }
  const read = (...p) => {
    try {
      return fs.readFileSync(path.join(ROOT, ...p), 'utf8').trim();
    } catch {
      return undefined;
    }
  };
  return ids
    .map((id) => ({
      id,
      state: read(id, 'state'),
      operations: read(id, 'contexts', '0', 'operations'),
      sampleUs: Number(read(id, 'contexts', '0', 'monitoring_attrs', 'intervals', 'sample_us')),
      action: read(id, 'contexts', '0', 'schemes', '0', 'action'),
    }))
    .filter((k) => k.state === 'on');
}

/** One line on the DAMON monitors that run, or null when none does. */
export function describeDamon(kdamonds = damonState()) {
  if (kdamonds.length === 0) return null;
  return `the kernel's DAMON runs here (${kdamonds.map((k) => `kdamond ${k.id}: ${k.operations}, ${k.action ?? 'no scheme'}, sampling every ${k.sampleUs / 1000} ms`).join('; ')}): its rounds stall every thread of the server for 25-50 ms (see bench/damon.mjs); BENCH_DAMON=off stops it for the run`;
}

/**
 * Stops the running kdamonds until this process exits. Returns what it stopped; throws if it
 * cannot (not root).
 */
export function pauseDamon() {
  const stopped = damonState();
  for (const k of stopped) fs.writeFileSync(path.join(ROOT, k.id, 'state'), 'off');
  const restore = () => {
    for (const k of stopped) {
      try {
        fs.writeFileSync(path.join(ROOT, k.id, 'state'), 'on');
      } catch {
        // nothing more to do at exit
      }
    }
    stopped.length = 0;
  };
  process.on('exit', restore);
  for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => process.exit(130));
  return stopped;
}
