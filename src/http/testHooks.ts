import express from 'express';
import fs from 'node:fs';
import { NotFoundError } from '../core/errors.js';
import type { Mcu } from '../room/Mcu.js';
import type { Channel } from '../workers/channel.js';
import { collectGarbage, heapMb } from '../workers/gc.js';
import type { NoEvents, NoRequests, TestRequests } from '../workers/protocol.js';

/**
 * What this process holds now, from /proc/self: descriptors (and of what kind), threads, the UDP
 * sockets among its descriptors, RSS; and the pipelines the GStreamer worker runs.
 */
export function processResources(mcu: Mcu) {
  const links = fs.readdirSync('/proc/self/fd').map((fd) => {
    try {
      return fs.readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      return ''; // the directory's own descriptor, closed by now
    }
  });
  // /proc/net/* list the namespace's sockets; ours are those whose inode one of our fds names.
  const inodes = (tables: string[], column: number) => {
    const set = new Set<string>();
    for (const table of tables) {
      const rows = fs.existsSync(table) ? fs.readFileSync(table, 'utf8').trim().split('\n').slice(1) : [];
      for (const row of rows) set.add(row.trim().split(/\s+/)[column]);
    }
    return set;
  };
  const udpInodes = inodes(['/proc/self/net/udp', '/proc/self/net/udp6'], 9);
  const tcpInodes = inodes(['/proc/self/net/tcp', '/proc/self/net/tcp6'], 9);
  const unixInodes = inodes(['/proc/self/net/unix'], 6);
  const fdKinds: Record<string, number> = {};
  for (const l of links.filter(Boolean)) {
    const socket = /^socket:\[(\d+)\]$/.exec(l)?.[1];
    const kind = socket
      ? udpInodes.has(socket) ? 'udp' : tcpInodes.has(socket) ? 'tcp' : unixInodes.has(socket) ? 'unix' : 'socket'
      : l.startsWith('/') ? 'file' : l.replace(/:\[?\d+\]?$/, '');
    fdKinds[kind] = (fdKinds[kind] ?? 0) + 1;
  }
  const udp = fdKinds.udp ?? 0;
  const status = fs.readFileSync('/proc/self/status', 'utf8');
  return {
    fds: links.filter(Boolean).length,
    fdKinds,
    threads: fs.readdirSync('/proc/self/task').length,
    udp,
    rssMb: Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024,
    // RSS by kind: anonymous memory (heaps: malloc's arenas, V8's pages) and file-backed (code, libraries).
    rssAnonMb: Number(/RssAnon:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024,
    rssFileMb: Number(/RssFile:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024,
    pipelines: mcu.workerPipelines,
    rooms: mcu.rooms.size,
  };
}

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
  // Descriptors, threads, UDP sockets, RSS and pipelines of the server process.
  router.get('/resources', (_req, res) => {
    res.json(processResources(mcu));
  });
  // A full garbage collection in every thread (each worker, then this one); answers what the
  // process holds afterwards.
  router.post('/gc', async (_req, res) => {
    const heaps = await Promise.all(
      mcu.workers.map(async (w) => ({
        thread: `${w.kind}${w.threadId}`,
        ...(await (w.channel as unknown as Channel<TestRequests, NoRequests, NoEvents, NoEvents>).request('test.gc', {}).catch(() => undefined)),
      })),
    );
    collectGarbage();
    res.json({ ...processResources(mcu), heaps: [{ thread: 'control', ...heapMb() }, ...heaps] });
  });
  return router;
}
