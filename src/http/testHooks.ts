import express from 'express';
import { NotFoundError } from '../core/errors.js';
import type { Mcu } from '../room/Mcu.js';

/** Test-only routes under /v1/test (MCU_TEST_HOOKS=1): never mounted otherwise. */
export function testHooks(mcu: Mcu): express.Router {
  const router = express.Router();
  // Hold the control thread in a busy loop, as a long
  // synchronous job would, to prove that media does not wait for it.
  router.post('/stall', (req, res) => {
    const ms = Math.min(Number(req.query.ms ?? 1000) || 0, 10_000);
    const t0 = performance.now();
    while (performance.now() - t0 < ms) {
      // busy on purpose
    }
    res.json({ stalledMs: Math.round(performance.now() - t0) });
  });
  // Ends RTC worker N as a crash would: its peers leave, and a fresh worker takes its place.
  router.post('/crash-rtc-worker/:index', async (req, res) => {
    const w = mcu.rtcWorkers[Number(req.params.index)];
    if (!w) throw new NotFoundError(`no RTC worker ${req.params.index}`);
    await w.channel.request('test.crash', {});
    res.status(202).json({ threadId: w.threadId });
  });
  return router;
}
