/**
 * One clock for every thread of the process, in milliseconds. performance.now() counts from each
 * thread's own start, so instants that cross threads (when a picture was composed, when a mix
 * frame was mixed) are read from the process-wide monotonic clock instead.
 */
export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}
