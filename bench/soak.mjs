#!/usr/bin/env node
// Soak: does the server give back what it takes, over time? Runs the real server (bin/mcu) for
// SOAK_MINUTES (default 30) under a steady churn: 6 people (werift peers sending real VP8 and Opus,
// from bench/generator.mjs in a process of its own) join and leave twice a minute, and one
// recording is started, stopped and deleted each minute. At the same point of every minute, when
// everyone has left, it prints the server's RSS, descriptors, threads and event-loop lag; at the
// end, the least-squares slope of RSS (MB a minute) and descriptors (a minute), and whether they
// met the goal: under 1 MB a minute, descriptors flat. Run it with `npm run soak` (inside unshare -n).
//   SOAK_MINUTES   how long (default 30)
//   SOAK_PEOPLE    people in the room at once (default 6)
//   SOAK_SERVER_LOG=file keeps the server's output
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startGenerator } from './ipc.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const MINUTES = Number(process.env.SOAK_MINUTES ?? 30);
const PEOPLE = Number(process.env.SOAK_PEOPLE ?? 6);
const ROOM = 'soak';
/** The goal: less than this many MB a minute, and descriptors flat (under this many a minute). */
const GOAL_MB_PER_MIN = 1;
const GOAL_FDS_PER_MIN = 0.5;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A client like any other: the admin key on every request, the WHIP joins and leaves included.
// (The server wants an API key of 16 characters or more.)
const KEY = 'soak-admin-key-0123456789';
const api = (url, init = {}) => fetch(url, { ...init, headers: { ...init.headers, Authorization: `Bearer ${KEY}` } });

async function startServer() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcu-soak-'));
  const proc = spawn(path.join(ROOT, 'bin/mcu'), [], {
    env: {
      ...process.env,
      NODE: process.execPath,
      HOST: '127.0.0.1',
      PORT: '0',
      MCU_ICE_ADDRESSES: '127.0.0.1',
      LOG_LEVEL: 'warn',
      MCU_CACHE_DIR: path.join(dir, 'cache'),
      MCU_RECORDINGS_DIR: path.join(dir, 'recordings'),
      MCU_SECRETS_FILE: path.join(dir, 'secrets.json'),
      MCU_API_KEY: KEY,
      // The soak measures leaks, not admission: no join-rate limit or admission control in its way.
      MCU_JOINS_PER_SECOND: '100000',
      MCU_CPU_BUDGET: '0',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log = process.env.SOAK_SERVER_LOG ? fs.createWriteStream(process.env.SOAK_SERVER_LOG) : undefined;
  let out = '';
  const collect = (d) => {
    log?.write(d);
    out = (out + d).slice(-20_000);
  };
  proc.stdout.on('data', collect);
  proc.stderr.on('data', collect);
  const url = await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`server did not start:\n${out}`)), 30_000);
    proc.stdout.on('data', () => {
      const m = /listening on (http:\/\/[^\s/]+)/.exec(out) ?? /(http:\/\/[^/\s]+)\/\?room=/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(m[1]);
      }
    });
    proc.once('exit', (c) => reject(new Error(`server exited ${c}:\n${out}`)));
  });
  return { proc, url, dir, tail: () => out };
}

/** What the server process holds, from /proc. */
function usage(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return {
    rssMb: Number(/VmRSS:\s+(\d+)/.exec(status)[1]) / 1024,
    fds: fs.readdirSync(`/proc/${pid}/fd`).length,
    threads: fs.readdirSync(`/proc/${pid}/task`).length,
  };
}

/** Event-loop lag from /metrics: the control thread's over the last scrape (prom-client resets its
 * histogram on each), and the longest stall of any media thread since the start. */
async function loopLag(url) {
  const text = await (await api(`${url}/metrics`)).text();
  const one = (name) => Number(new RegExp(`^${name} ([\\d.e+-]+)`, 'm').exec(text)?.[1] ?? NaN);
  const media = [...text.matchAll(/^mcu_media_thread_max_stall_ms\{[^}]*\} ([\d.]+)/gm)].map((m) => Number(m[1]));
  return {
    maxMs: one('nodejs_eventloop_lag_max_seconds') * 1000,
    p99Ms: one('nodejs_eventloop_lag_p99_seconds') * 1000,
    mediaMaxMs: Math.max(0, ...media),
  };
}

/** Least squares: the slope of ys against xs. */
function slope(xs, ys) {
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i] - mx) * (ys[i] - my);
    den += (xs[i] - mx) ** 2;
  }
  return den ? num / den : 0;
}

const server = await startServer();
const gen = await startGenerator();
const counts = { joins: 0, failedJoins: 0, recordings: 0, failedRecordings: 0 };
const stop = async () => {
  await gen.call({ cmd: 'leaveAll' }).catch(() => undefined);
  gen.close();
  server.proc.kill('SIGTERM');
  await new Promise((r) => server.proc.once('exit', r));
  fs.rmSync(server.dir, { recursive: true, force: true });
};
process.on('SIGINT', () => void stop().then(() => process.exit(130)));

/** PEOPLE join one after another (ICE and DTLS done), stay until `untilMs`, then all leave. */
async function round(untilMs) {
  for (let i = 0; i < PEOPLE; i++) {
    try {
      await gen.call({ cmd: 'join', url: server.url, room: ROOM, name: `S${counts.joins}`, token: KEY, waitConnected: true });
      counts.joins++;
    } catch (err) {
      counts.failedJoins++;
      console.log(`  a join failed: ${err.message}`);
    }
    await sleep(1000);
  }
  await sleep(Math.max(0, untilMs - performance.now()));
  await gen.call({ cmd: 'leaveAll' });
}

/** A recording of the room from now until `stopAtMs`; then it is stopped and deleted. */
async function recording(stopAtMs) {
  try {
    const res = await api(`${server.url}/v1/rooms/${ROOM}/recordings`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });
    if (res.status !== 201) throw new Error(`start ${res.status} ${await res.text()}`);
    const { id } = await res.json();
    await sleep(Math.max(0, stopAtMs - performance.now()));
    const stopped = await api(`${server.url}/v1/rooms/${ROOM}/recordings/${id}/stop`, { method: 'POST' });
    if (stopped.status !== 200) throw new Error(`stop ${stopped.status} ${await stopped.text()}`);
    const del = await api(`${server.url}/v1/recordings/${id}`, { method: 'DELETE' });
    if (del.status !== 204) throw new Error(`delete ${del.status} ${await del.text()}`);
    counts.recordings++;
  } catch (err) {
    counts.failedRecordings++;
    console.log(`  a recording failed: ${err.message}`);
  }
}

console.log(`soak: ${MINUTES} min, ${PEOPLE} people joining and leaving twice a minute, one recording a minute; server pid ${server.proc.pid}`);
const start = usage(server.proc.pid);
console.log(`start: rss ${start.rssMb.toFixed(1)} MB, ${start.fds} fds, ${start.threads} threads`);
console.log('min | rss MB | fds | threads | loop lag max/p99 ms (control, last minute) | media threads max stall ms (since start) | joins | recordings');
const samples = [];
const t0 = performance.now();
try {
  for (let minute = 1; minute <= MINUTES; minute++) {
    const m0 = t0 + (minute - 1) * 60_000;
    // The room exists before the recording starts (it is created by the first join otherwise).
    await api(`${server.url}/v1/rooms`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ id: ROOM }) }).catch(() => undefined);
    const rec = recording(m0 + 50_000);
    await round(m0 + 24_000);
    await sleep(Math.max(0, m0 + 27_000 - performance.now()));
    await round(m0 + 48_000);
    await rec;
    // Everyone has left and the recording is gone: the same point of every minute.
    await sleep(Math.max(0, m0 + 58_000 - performance.now()));
    const u = usage(server.proc.pid);
    const lag = await loopLag(server.url).catch(() => ({ maxMs: NaN, p99Ms: NaN, mediaMaxMs: NaN }));
    samples.push({ minute, ...u });
    console.log(
      [minute, u.rssMb.toFixed(1), u.fds, u.threads, `${lag.maxMs.toFixed(0)}/${lag.p99Ms.toFixed(0)}`, lag.mediaMaxMs.toFixed(0), `${counts.joins} (${counts.failedJoins} failed)`, `${counts.recordings} (${counts.failedRecordings} failed)`].join(' | '),
    );
    await sleep(Math.max(0, m0 + 60_000 - performance.now()));
  }
} finally {
  await stop();
}

// The first minute warms up (thread pools, GStreamer's plugins, V8's heap): the slope is taken
// from the second minute on when there are three samples or more after it.
const fit = samples.length >= 4 ? samples.slice(1) : samples;
const xs = fit.map((s) => s.minute);
const mbPerMin = slope(xs, fit.map((s) => s.rssMb));
const fdsPerMin = slope(xs, fit.map((s) => s.fds));
const threadsPerMin = slope(xs, fit.map((s) => s.threads));
const ok = mbPerMin < GOAL_MB_PER_MIN && Math.abs(fdsPerMin) < GOAL_FDS_PER_MIN && counts.failedJoins === 0 && counts.failedRecordings === 0;
console.log(
  `slope (minutes ${xs[0]}-${xs.at(-1)}, least squares): ${mbPerMin.toFixed(2)} MB/min, ${fdsPerMin.toFixed(2)} fds/min, ${threadsPerMin.toFixed(2)} threads/min; ` +
    `${counts.joins} joins (${counts.failedJoins} failed), ${counts.recordings} recordings (${counts.failedRecordings} failed)`,
);
console.log(`goal (under ${GOAL_MB_PER_MIN} MB/min, descriptors flat, nothing failed): ${ok ? 'met' : 'NOT met'}`);
process.exit(ok ? 0 : 1);
