/**
 * A full garbage collection on demand, in whichever thread calls it, without starting Node with
 * --expose-gc: the flag is process-wide, and a fresh context made after it is set has `gc`.
 * The GStreamer worker collects after pipelines stop (the binding's element handles keep their
 * elements until collected); the test hook (POST /v1/test/gc) collects in every thread.
 */
import v8 from 'node:v8';
import vm from 'node:vm';

let gc: (() => void) | undefined;

export function collectGarbage(): void {
  if (!gc) {
    v8.setFlagsFromString('--expose-gc');
    gc = vm.runInNewContext('gc') as () => void;
  }
  gc();
}

/**
 * Collects once no call has come for `quietMs`: a run of calls (people leaving one after another)
 * makes one collection after the last of them; `then` runs after it.
 */
export function collectWhenQuiet(quietMs: number, then?: () => void): void {
  if (pending) clearTimeout(pending);
  pending = setTimeout(() => {
    pending = undefined;
    collectGarbage();
    then?.();
  }, quietMs);
  pending.unref();
}
let pending: NodeJS.Timeout | undefined;

/** Forgets a collection `collectWhenQuiet` was waiting to make (one was just made on demand). */
export function cancelQuietCollection(): void {
  if (pending) clearTimeout(pending);
  pending = undefined;
}

/** This thread's V8 heap, in MB: what it holds in pages (physical) and outside them (external, array buffers). */
export function heapMb(): { heapMb: number; externalMb: number } {
  const h = v8.getHeapStatistics();
  const mb = (n: number) => Math.round((n / 1048576) * 10) / 10;
  return { heapMb: mb(h.total_physical_size), externalMb: mb(h.external_memory) };
}

/** Writes a heap snapshot of this thread to `file` (test hooks, when investigating what a thread holds). */
export function writeHeapSnapshot(file: string): string {
  collectGarbage();
  return v8.writeHeapSnapshot(file);
}
