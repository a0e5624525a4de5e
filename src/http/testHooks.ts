import express from 'express';
import fs from 'node:fs';
import { NotFoundError } from '../core/errors.js';
import type { Mcu } from '../room/Mcu.js';
import type { Channel } from '../workers/channel.js';
import { collectGarbage, heapMb, writeHeapSnapshot } from '../workers/gc.js';
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
  // Ends RTC worker N as a crash would (crash), or sends it into a loop that never yields, as a
  // bug could (hang: the watchdog must end it). Either way its peers leave, and a fresh worker
  // takes its place. Or has it throw where nobody catches, and reject a promise nobody awaits
  // (stray): it logs them and goes on, and its peers stay.
  for (const fault of ['crash', 'hang', 'stray'] as const) {
    router.post(`/${fault}-rtc-worker/:index`, async (req, res) => {
      const w = mcu.rtcWorkers[Number(req.params.index)];
      if (!w) throw new NotFoundError(`no RTC worker ${req.params.index}`);
      await w.channel.request(`test.${fault}`, {});
      res.status(202).json({ threadId: w.threadId });
    });
  }
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
  // Heap snapshots of every worker's thread and this one, into ?dir=: what each thread's V8 heap holds.
  router.post('/heap-snapshots', async (req, res) => {
    const dir = String(req.query.dir ?? '');
    if (!dir) throw new NotFoundError('no ?dir=');
    fs.mkdirSync(dir, { recursive: true });
    const files = await Promise.all(
      mcu.workers.map((w) =>
        (w.channel as unknown as Channel<TestRequests, NoRequests, NoEvents, NoEvents>)
          .request('test.heapSnapshot', { file: `${dir}/${w.kind}${w.threadId}.heapsnapshot` }, undefined, 120_000)
          .catch((e: Error) => `failed: ${e.message}`),
      ),
    );
    files.push(writeHeapSnapshot(`${dir}/control.heapsnapshot`));
    res.json({ files });
  });
  // Resident memory by mapping (/proc/self/smaps): the largest, and sums by kind, to tell malloc's
  // arenas (64 MB-aligned anonymous regions), the main heap, V8's pages and libraries apart.
  router.get('/smaps', (_req, res) => {
    const maps: Array<{ range: string; name: string; sizeKb: number; rssKb: number; anonKb: number }> = [];
    let cur: (typeof maps)[number] | undefined;
    for (const line of fs.readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
      const head = /^([0-9a-f]+-[0-9a-f]+)\s+\S+\s+\S+\s+\S+\s+\S+\s*(.*)$/.exec(line);
      if (head) {
        cur = { range: head[1], name: head[2], sizeKb: 0, rssKb: 0, anonKb: 0 };
        maps.push(cur);
        continue;
      }
      const f = /^(Size|Rss|Anonymous):\s+(\d+) kB/.exec(line);
      if (f && cur) cur[f[1] === 'Size' ? 'sizeKb' : f[1] === 'Rss' ? 'rssKb' : 'anonKb'] = Number(f[2]);
    }
    const sums: Record<string, { n: number; rssMb: number }> = {};
    for (const m of maps) {
      const [lo, hi] = m.range.split('-').map((x) => BigInt(`0x${x}`));
      const kind = m.name
        ? m.name.startsWith('/') ? 'file' : m.name
        : (lo & 0x3ffffffn) === 0n && hi - lo <= 0x4000000n ? 'arena?' : m.sizeKb === 256 ? 'v8-256k' : m.sizeKb < 1024 ? 'anon<1M' : 'anon>=1M';
      const s = (sums[kind] ??= { n: 0, rssMb: 0 });
      s.n++;
      s.rssMb += m.rssKb / 1024;
    }
    for (const s of Object.values(sums)) s.rssMb = Math.round(s.rssMb * 10) / 10;
    res.json({ sums, top: maps.sort((a, b) => b.anonKb - a.anonKb).slice(0, 25) });
  });
  return router;
}
