import fs from 'node:fs';
import os from 'node:os';
import { createLogger } from './log.js';

/**
 * Raises the scheduling priority of the calling thread (Linux: nice values are per thread).
 * GStreamer runs dozens of streaming threads, and the kernel shares the CPU fairly between
 * threads: without this, the one thread that carries every peer's packets gets a thirtieth of a
 * busy core while composites start. Needs CAP_SYS_NICE (root has it); without it, the thread
 * keeps its priority and a warning says so.
 */
export function raiseThreadPriority(thread: string, nice: number): void {
  if (nice === 0) return;
  const log = createLogger(thread);
  try {
    const tid = Number(fs.readlinkSync('/proc/thread-self').split('/').pop());
    os.setPriority(tid, nice);
    log.debug(`thread ${tid} runs at nice ${nice}`);
  } catch (err) {
    log.warn(`could not set this thread's priority to nice ${nice} (${(err as Error).message}); media may stall while the CPU is busy`);
  }
}

export interface ThreadRule {
  /** Matches a GStreamer streaming thread's name ("element:pad", at most 15 characters). */
  pattern: RegExp;
  nice: number;
}

/**
 * Gives GStreamer's streaming threads the priority of what they carry. GStreamer names each task
 * thread after its element and pad ("mixin:src"), and reuses pool threads for other tasks, so a
 * sweep over /proc/self/task sets each named thread's nice value from the first rule that matches
 * its current name, and 0 when none does. Threads without a GStreamer name (Node's own, the media
 * workers) are left alone. Linux only; elsewhere, or without CAP_SYS_NICE, it does nothing.
 */
export class GstThreadPriorities {
  readonly #applied = new Map<number, string>();
  #failed = false;

  constructor(private readonly rules: ThreadRule[]) {}

  sweep(): void {
    if (this.#failed) return;
    let tids: string[];
    try {
      tids = fs.readdirSync('/proc/self/task');
    } catch {
      this.#failed = true;
      return;
    }
    const alive = new Set<number>();
    for (const t of tids) {
      const tid = Number(t);
      alive.add(tid);
      let name: string;
      try {
        name = fs.readFileSync(`/proc/self/task/${t}/comm`, 'utf8').trim();
      } catch {
        continue; // gone meanwhile
      }
      if (!name.includes(':')) continue;
      const nice = this.rules.find((r) => r.pattern.test(name))?.nice ?? 0;
      const key = `${name}/${nice}`;
      if (this.#applied.get(tid) === key) continue;
      try {
        os.setPriority(tid, nice);
        this.#applied.set(tid, key);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ESRCH') continue;
        createLogger('gst').warn(`cannot set GStreamer thread priorities (${(err as Error).message}); media threads keep the default`);
        this.#failed = true;
        return;
      }
    }
    for (const tid of this.#applied.keys()) if (!alive.has(tid)) this.#applied.delete(tid);
  }
}
