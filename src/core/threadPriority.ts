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
