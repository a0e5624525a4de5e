#!/usr/bin/env node
// Benchmark: capacity, cost per participant, overhead against bare GStreamer, join time.
// Runs the real server (bin/mcu) and lightweight werift publishers on loopback only; prints a
// table and writes bench/results/latest.json. Run it with `npm run bench` (inside `unshare -n`).
// The load (publishers and viewers) comes from bench/generator.mjs, a separate process whose CPU
// is printed next to the server's.
//   BENCH_SECONDS   measured seconds per room size (default 20)
//   BENCH_SIZES_A   case (a) sizes, one shared 1280x720 layout (default 8,16,24,30, until real time is lost)
//   BENCH_SIZES_B   case (b) sizes, per-viewer 640x360 composites (default 4,6,8,10,12)
//   BENCH_SIZES_AUDIO  audio-only room sizes (default 10,20,30,40)
//   BENCH_AUDIO_TALKERS  in the audio-only rooms, how many send the tone; the others send silence
//                   (default: everyone, the worst case for the mix)
//   BENCH_JOINS     Chromium joins timed for the join-time figure (default 10; 0 skips it)
//   BENCH_VIDEO_CODECS  the video codecs each generated peer offers, in order (default vp8; vp8,h264 as a
//                   browser does, with the server's MCU_VIDEO_CODEC=h264 to measure H.264 composites)
//   BENCH_ONLY      a comma list of parts to run: a,b,audio,janus,bare,switch,latency,join,joins100 (default all;
//                   'janus' runs the audio-only sizes on Debian's Janus AudioBridge, side by side)
//   BENCH_JOINS_UNDER_LOAD  joins in a row for 'joins100', with both CPUs kept busy (default 100)
//   BENCH_GENERATOR_NICE  the load generator's nice (default 0; see bench/ipc.mjs)
//   BENCH_DEBUG_PLI  set: the generator prints each keyframe it makes on a PLI from the server
//   BENCH_DAMON     off: stop the kernel's DAMON monitors for the run, and start them again at exit
//                   (root; see bench/damon.mjs). By default the bench only says whether they run.
//   BENCH_LOG_LEVEL  the server's LOG_LEVEL (default warn)
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MediaStreamTrack, RtpPacket } from 'werift';
import { KEYFRAME_FRAMES, startGenerator } from './ipc.mjs';
import { startJanus } from './janus.mjs';
import { damonState, describeDamon, pauseDamon } from './damon.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { GstPipeline } = await import(path.join(ROOT, 'dist/gst/native.js'));
const { loopbackPeer, whipJoin } = await import(path.join(ROOT, 'test/helpers/loopbackPeer.mjs'));
const { LocalUdp } = await import(path.join(ROOT, 'dist/media/localUdp.js'));
const SECONDS = Number(process.env.BENCH_SECONDS ?? 20);
const sizes = (name, def) => (process.env[name] ?? def).split(',').map(Number);
const SIZES_A = sizes('BENCH_SIZES_A', '8,16,24,30');
const SIZES_B = sizes('BENCH_SIZES_B', '4,6,8,10,12');
const SIZES_AUDIO = sizes('BENCH_SIZES_AUDIO', '10,20,30,40');
const ONLY = new Set((process.env.BENCH_ONLY ?? 'a,b,rungs,audio,janus,bare,switch,latency,join,joins100').split(','));
const SIZES_RUNGS = sizes('BENCH_SIZES_RUNGS', '8');
const JOINS_UNDER_LOAD = Number(process.env.BENCH_JOINS_UNDER_LOAD ?? 100);
const JOINS = Number(process.env.BENCH_JOINS ?? 10);
const FPS = 30;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString()) || 100;
const cpuSeconds = (pid) => {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / TCK; // utime stime cutime cstime
};
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];

// The bench is a client like any other: the admin key for the operator's calls, and a join token
// per room (from POST /v1/tokens) for the people.
const BENCH_KEY = 'bench-admin-key-0123456789';
const api = (url, init = {}) => fetch(url, { ...init, headers: { ...init.headers, Authorization: `Bearer ${BENCH_KEY}` } });
const tokens = new Map();
async function roomToken(server, room) {
  if (!tokens.has(`${server.url} ${room}`)) {
    const res = await api(`${server.url}/v1/tokens`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ room }) });
    if (res.status !== 201) throw new Error(`token ${res.status} ${await res.text()}`);
    tokens.set(`${server.url} ${room}`, (await res.json()).token);
  }
  return tokens.get(`${server.url} ${room}`);
}

async function startServer(env = {}) {
  const proc = spawn(path.join(ROOT, 'bin/mcu'), [], {
    env: { ...process.env, NODE: process.execPath, HOST: '127.0.0.1', PORT: '0', MCU_ICE_ADDRESSES: '127.0.0.1', LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'warn', MCU_CACHE_DIR: path.join(os.tmpdir(), 'mcu-bench-cache'),
      MCU_API_KEY: BENCH_KEY, MCU_API_SECRET: `bench-secret-${process.pid}-0123456789abcdef0123456789`,
      // The bench measures capacity itself: no join-rate limit and no admission control in its way.
      MCU_JOINS_PER_SECOND: '100000', MCU_CPU_BUDGET: '0', MCU_MAX_PARTICIPANTS: '100',
      // For POST /v1/test/gc between sizes (settle, below).
      MCU_TEST_HOOKS: '1', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  // BENCH_SERVER_LOG=file keeps the server's standard output (for example with MCU_NODE_ARGS=--trace-gc).
  const log = process.env.BENCH_SERVER_LOG ? fs.createWriteStream(process.env.BENCH_SERVER_LOG, { flags: 'a' }) : undefined;
  proc.stdout.on('data', (d) => log?.write(d));
  const url = await new Promise((resolve, reject) => {
    let out = '';
    proc.stdout.on('data', (d) => {
      out += d;
      const m = /(http:\/\/[^/\s]+)\/\?room=/.exec(out);
      if (m) resolve(m[1]);
    });
    proc.once('exit', (c) => reject(new Error(`server exited ${c}`)));
  });
  return { proc, url };
}

/** One shared encoder feeds every publisher: the publishers cost the bench almost nothing. */
async function mediaSource() {
  const subscribers = { video: new Set(), audio: new Set() };
  const v = await LocalUdp.open((b) => subscribers.video.forEach((f) => f(b)));
  const a = await LocalUdp.open((b) => subscribers.audio.forEach((f) => f(b)));
  const p = new GstPipeline(
    `videotestsrc is-live=true pattern=ball ! video/x-raw,width=640,height=360,framerate=${FPS}/1 ! vp8enc deadline=1 cpu-used=-6 threads=1 end-usage=cbr target-bitrate=600000 keyframe-max-dist=60 lag-in-frames=0 ! rtpvp8pay pt=96 mtu=1200 ! udpsink host=127.0.0.1 port=${v.port} sync=false async=false ` +
      `audiotestsrc is-live=true wave=sine freq=440 volume=0.2 ! audio/x-raw,rate=48000,channels=1 ! opusenc frame-size=20 ! rtpopuspay pt=111 ! udpsink host=127.0.0.1 port=${a.port} sync=false async=false`,
  );
  p.play();
  return { subscribers, close: async () => { await p.close(); v.close(); a.close(); } };
}

async function joinPeer(url, room, name, source) {
  const pc = loopbackPeer();
  const stats = { frames: 0, audio: 0, lastAudio: 0, maxAudioGap: 0, measuring: false, frameTimes: null };
  const handle = {};
  const tracks = {};
  for (const kind of ['audio', 'video']) {
    tracks[kind] = new MediaStreamTrack({ kind });
    const t = pc.addTransceiver(tracks[kind], { direction: 'sendrecv' });
    t.onTrack.subscribe((tr) =>
      tr.onReceiveRtp.subscribe((rtp) => {
        if (!stats.measuring) return;
        handle.onRtp?.(kind, rtp);
        if (kind === 'video') {
          if (rtp.header.marker) {
            stats.frames++;
            stats.frameTimes?.push(performance.now());
          }
        } else {
          const now = performance.now();
          if (stats.lastAudio) stats.maxAudioGap = Math.max(stats.maxAudioGap, now - stats.lastAudio);
          stats.lastAudio = now;
          stats.audio++;
        }
      }),
    );
  }
  const location = await whipJoin(pc, url, room, name, BENCH_KEY);
  const feeders = {
    video: (b) => tracks.video.writeRtp(RtpPacket.deSerialize(b)),
    audio: (b) => tracks.audio.writeRtp(RtpPacket.deSerialize(b)),
  };
  source.subscribers.video.add(feeders.video);
  source.subscribers.audio.add(feeders.audio);
  Object.assign(handle, {
    stats,
    id: location.split('/').pop(),
    write: (kind, b) => feeders[kind](b),
    leave: async () => {
      source.subscribers.video.delete(feeders.video);
      source.subscribers.audio.delete(feeders.audio);
      await api(url + location, { method: 'DELETE' }).catch(() => undefined);
      await pc.close().catch(() => undefined);
    },
  });
  return handle;
}

/** How late output frames left the server against their composite's quickest (its own per-viewer
 * figures over the last 10 s): the latest, and the 99th percentile, which leaves out the odd
 * keyframe of every GOP. 0 when every frame takes the same time through. */
async function serverFrameLateness(server, room) {
  const r = await (await api(`${server.url}/v1/rooms/${room}`)).json();
  return {
    max: Math.max(0, ...r.participants.map((p) => p.stats.maxFrameLatenessMs ?? 0)),
    p99: Math.max(0, ...r.participants.map((p) => p.stats.p99FrameLatenessMs ?? 0)),
    maxDelta: Math.max(0, ...r.participants.map((p) => p.stats.maxDeltaFrameLatenessMs ?? 0)),
    keyframes: Math.max(0, ...r.participants.map((p) => p.stats.keyframesSent10s ?? 0)),
  };
}

/**
 * One room of n people, every one a publisher and a viewer. Case (a): one shared 1280x720 layout
 * with self-view, so one compositor and encoder serve everyone. Case (b): each viewer its own
 * 640x360 mix-minus composite. 'audio': audio-only people, mix-minus only.
 */
/**
 * The same audio-only room on Janus's AudioBridge, joined by the same generator: Janus's CPU per
 * participant and the largest gap at the receivers, over the same seconds.
 */
async function measureJanusRoom(janus, gen, n) {
  const room = 9000 + n;
  const talkers = Number(process.env.BENCH_AUDIO_TALKERS ?? n);
  for (let i = 0; i < n; i++) await gen.call({ cmd: 'join', janus: janus.url, room, name: `p${i}`, video: false, silent: i >= talkers });
  await sleep(11_000);
  await gen.call({ cmd: 'measure', on: true });
  const cpu0 = cpuSeconds(janus.proc.pid);
  const gcpu0 = cpuSeconds(gen.proc.pid);
  const t0 = performance.now();
  await sleep(SECONDS * 1000);
  const wall = (performance.now() - t0) / 1000;
  const cpu = cpuSeconds(janus.proc.pid) - cpu0;
  const gcpu = cpuSeconds(gen.proc.pid) - gcpu0;
  await gen.call({ cmd: 'measure', on: false });
  const stats = await gen.call({ cmd: 'stats' });
  await gen.call({ cmd: 'leaveAll' });
  await sleep(1500);
  return {
    case: 'janus-audio',
    participants: n,
    encoders: null,
    minFps: null,
    medianFps: null,
    maxAudioGapMs: Math.max(...stats.map((s) => s.maxAudioGapMs)),
    serverMaxFrameLateMs: null,
    serverP99FrameLateMs: null,
    serverCores: +(cpu / wall).toFixed(2),
    cpuPerParticipant: +(cpu / wall / n).toFixed(3),
    generatorCores: +(gcpu / wall).toFixed(2),
    receiving: stats.filter((s) => s.audio > 0).length,
    realTime: stats.every((s) => s.audio > 0) && Math.max(...stats.map((s) => s.maxAudioGapMs)) <= 100,
  };
}

async function stopServer(server) {
  server.proc.kill('SIGTERM');
  await new Promise((r) => server.proc.once('exit', r));
}

async function measureRoom(server, gen, n, kind) {
  const room = `bench-${kind}-${n}`;
  await api(`${server.url}/v1/rooms`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ id: room }) });
  if (kind === 'a') await api(`${server.url}/v1/rooms/${room}/layout`, { method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ selfView: true }) });
  const ids = [];
  const talkers = kind === 'audio' ? Number(process.env.BENCH_AUDIO_TALKERS ?? n) : n;
  for (let i = 0; i < n; i++) ids.push((await gen.call({ cmd: 'join', url: server.url, room, token: await roomToken(server, room), name: `p${i}`, video: kind !== 'audio', silent: i >= talkers })).id);
  if (kind === 'rungs') {
    // Case (b) with its viewers spread over three rungs: a third at full, a third at half the
    // bitrate, the rest at a quarter of the size (as a congested link or a small screen would put them).
    for (const [i, id] of ids.entries()) {
      const limits = i % 3 === 1 ? { maxBitrate: Math.round(800_000 / 2) } : i % 3 === 2 ? { maxWidth: 320, maxHeight: 180 } : null;
      if (limits) await api(`${server.url}/v1/rooms/${room}/participants/${id}/output`, { method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(limits) });
    }
  }
  // The room settles: every publisher's video decoded and every viewer on its final composition
  // (one composite for all in case (a), one each in case (b); the rungs case has its own count).
  // How long that took after the last join is printed: n joins in a row replace the composites up
  // to 2n times (each join, then each video going live), and on a saturated machine that took
  // 25 s in one run and under 11 s in others. Then the server's own frame-gap figure (the last
  // 10 s) no longer covers the joins.
  const joined = performance.now();
  const wanted = kind === 'a' ? 1 : kind === 'b' ? n : undefined;
  let settled = null;
  while (performance.now() - joined < 60_000) {
    const r = await (await api(`${server.url}/v1/rooms/${room}`)).json();
    if (r.participants.length === n && (kind === 'audio' || (r.participants.every((p) => p.videoLive) && (wanted === undefined || r.encoders === wanted)))) {
      settled = Math.round(performance.now() - joined);
      break;
    }
    await sleep(250);
  }
  console.error(`case ${kind}, ${n} participants: ${settled === null ? 'not settled 60 s after the last join (measured anyway)' : `settled ${(settled / 1000).toFixed(1)} s after the last join`}`);
  await sleep(11_000);
  await gen.call({ cmd: 'measure', on: true });
  const cpu0 = cpuSeconds(server.proc.pid);
  const gcpu0 = cpuSeconds(gen.proc.pid);
  const t0 = performance.now();
  let late = 0;
  let late99 = 0;
  let lateDelta = 0;
  let keyframes = 0;
  const samples = Math.max(1, Math.floor(SECONDS / 5));
  for (let i = 0; i < samples; i++) {
    await sleep((SECONDS * 1000) / samples);
    if (kind !== 'audio') {
      const l = await serverFrameLateness(server, room);
      late = Math.max(late, l.max);
      late99 = Math.max(late99, l.p99);
      lateDelta = Math.max(lateDelta, l.maxDelta);
      keyframes = Math.max(keyframes, l.keyframes);
    }
  }
  const wall = (performance.now() - t0) / 1000;
  const cpu = cpuSeconds(server.proc.pid) - cpu0;
  const gcpu = cpuSeconds(gen.proc.pid) - gcpu0;
  await gen.call({ cmd: 'measure', on: false });
  const stats = await gen.call({ cmd: 'stats' });
  const roomInfo = await (await api(`${server.url}/v1/rooms/${room}`)).json();
  const fps = stats.filter((s) => s.video).map((s) => s.frames / wall);
  const result = {
    case: kind,
    participants: n,
    encoders: roomInfo.encoders,
    minFps: fps.length ? +Math.min(...fps).toFixed(1) : null,
    medianFps: fps.length ? +pct(fps, 50).toFixed(1) : null,
    maxAudioGapMs: Math.max(...stats.map((s) => s.maxAudioGapMs)),
    serverMaxFrameLateMs: kind === 'audio' ? null : late,
    serverP99FrameLateMs: kind === 'audio' ? null : late99,
    // Diagnostics: the latest frame other than a keyframe, and the most keyframes a viewer got in 10 s.
    serverMaxDeltaFrameLateMs: kind === 'audio' ? null : lateDelta,
    keyframesPer10s: kind === 'audio' ? null : keyframes,
    serverCores: +(cpu / wall).toFixed(2),
    cpuPerParticipant: +(cpu / wall / n).toFixed(3),
    generatorCores: +(gcpu / wall).toFixed(2),
    receiving: stats.filter((s) => s.audio > 0).length,
    // Seconds from the last join until every video was decoded and every viewer on its final composite (null: not in 60 s).
    settledSeconds: settled === null ? null : +(settled / 1000).toFixed(1),
    // Publishers whose video the server decodes (a composite of placeholders also runs at 30 fps).
    videoLive: kind === 'audio' ? null : roomInfo.participants.filter((p) => p.videoLive).length,
    // Of the audio packets the server got, the share it did not decode (silent microphones).
    audioSkipped: +(
      roomInfo.participants.reduce((a, p) => a + (p.stats.audioPacketsSkipped ?? 0), 0) / Math.max(1, roomInfo.participants.reduce((a, p) => a + p.stats.audioPacketsIn, 0))
    ).toFixed(2),
  };
  // Real time: every viewer at 29 fps or more, every publisher's video decoded at the server, no
  // audio gap over 100 ms at any receiver, and at the server no output frame more than 20 ms late, but for the odd keyframe (the 99th
  // percentile: one keyframe in a 10 s GOP is a third of a percent of the frames; the largest
  // lateness is printed too).
  result.realTime =
    (kind === 'audio' || (result.minFps >= FPS - 1 && late99 <= 20 && result.videoLive === n)) && result.maxAudioGapMs <= 100 && stats.every((s) => s.audio > 0);
  await gen.call({ cmd: 'leaveAll' });
  await settle(server);
  return result;
}

/**
 * After a room's people have left: waits until the server has stopped every pipeline, then has it
 * hand memory back at once (POST /v1/test/gc: garbage collection, then malloc_trim). Otherwise the
 * next size's joins met this one's teardown (stopping 16 pipelines held the GStreamer worker for
 * 1.6 s), and the trim the server makes 30 s after the last pipeline stops (src/workers/gstWorker.ts)
 * landed in the next size's measurement: case (a) at 16 right after 12 had a peer that never
 * connected and frames 1.1 s late, and 16 alone was in real time with a p99 of 14 ms.
 */
async function settle(server) {
  const end = Date.now() + 60_000;
  let running = -1;
  while (Date.now() < end) {
    running = Number(/^mcu_pipelines (\d+)/m.exec(await (await api(`${server.url}/metrics`)).text())?.[1] ?? -1);
    if (running === 0) break;
    await sleep(250);
  }
  if (running !== 0) console.error(`settle: ${running} pipelines still running 60 s after everyone left`);
  const gc = await api(`${server.url}/v1/test/gc`, { method: 'POST' });
  if (gc.status !== 200) console.error(`settle: POST /v1/test/gc answered ${gc.status}`);
  else await gc.arrayBuffer();
  await sleep(1000);
}

/**
 * Joins in a row while every CPU is kept busy by other processes, in a room with 4 people in it:
 * each must complete ICE and DTLS within 10 s. (A werift DTLS bug once stalled such joins.)
 */
async function joinsUnderLoad(server, gen) {
  const room = 'bench-joins';
  for (let i = 0; i < 4; i++) await gen.call({ cmd: 'join', url: server.url, room, token: await roomToken(server, room), name: `r${i}`, video: true });
  const hogs = os.cpus().map(() => spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }));
  let ok = 0;
  const failures = [];
  const times = [];
  try {
    for (let i = 0; i < JOINS_UNDER_LOAD; i++) {
      const t0 = performance.now();
      try {
        const { id } = await gen.call({ cmd: 'join', url: server.url, room, token: await roomToken(server, room), name: `j${i}`, video: false, waitConnected: true });
        ok++;
        times.push(performance.now() - t0);
        await api(`${server.url}/v1/rooms/${room}/participants/${id}`, { method: 'DELETE' });
      } catch (err) {
        failures.push(String(err.message ?? err).slice(0, 120));
      }
    }
  } finally {
    hogs.forEach((h) => h.kill('SIGKILL'));
    await gen.call({ cmd: 'leaveAll' });
  }
  return { joins: JOINS_UNDER_LOAD, completed: ok, medianMs: times.length ? Math.round(pct(times, 50)) : null, p95Ms: times.length ? Math.round(pct(times, 95)) : null, failures: failures.slice(0, 5) };
}

/** The same decode, composite and encode work as plain gst-launch-1.0, no WebRTC, timed the same. */
async function bareRun(n) {
  // The generator's pictures, with its keyframe interval (bench/generator.mjs).
  const file = path.join(os.tmpdir(), `mcu-bench-kf${KEYFRAME_FRAMES}.webm`);
  if (!fs.existsSync(file)) {
    execFileSync('gst-launch-1.0', ['-q', ...`videotestsrc num-buffers=${FPS * 70} pattern=ball ! video/x-raw,width=640,height=360,framerate=${FPS}/1 ! vp8enc deadline=1 cpu-used=-6 threads=1 end-usage=cbr target-bitrate=600000 keyframe-max-dist=${KEYFRAME_FRAMES} ! webmmux ! filesink location=${file}`.split(' ')]);
  }
  const parts = [];
  for (let i = 0; i < n; i++) {
    parts.push(`filesrc location=${file} ! matroskademux ! identity sync=true ! vp8dec threads=1 ! videoconvert ! video/x-raw,format=I420,pixel-aspect-ratio=1/1 ! intervideosink sync=false channel=bare${i}`);
  }
  // Each viewer: the others, laid out as the grid does it, composited and encoded like the server.
  const { compose } = await import(path.join(ROOT, 'dist/core/composition.js'));
  const { LayoutRegistry } = await import(path.join(ROOT, 'dist/core/layouts.js'));
  const grid = LayoutRegistry.fromDirectory(path.join(ROOT, 'layouts')).get('grid');
  for (let v = 0; v < n; v++) {
    const others = Array.from({ length: n }, (_, i) => i).filter((i) => i !== v);
    const c = compose(others.map((i) => ({ id: String(i), name: String(i), hasVideo: true })), grid, { width: 640, height: 360, fps: FPS });
    const pads = c.tiles.map((t, k) => `sink_${k}::xpos=${t.x} sink_${k}::ypos=${t.y}`).join(' ');
    parts.push(`compositor name=c${v} background=black ${pads} ! video/x-raw,format=I420,width=640,height=360,framerate=${FPS}/1 ! vp8enc deadline=1 cpu-used=-6 threads=1 end-usage=cbr lag-in-frames=0 target-bitrate=800000 ! fakesink sync=false`);
    c.tiles.forEach((t, k) => parts.push(`intervideosrc channel=bare${t.participantId} ! videoscale ! video/x-raw,format=I420,width=${t.width},height=${t.height},pixel-aspect-ratio=1/1,framerate=${FPS}/1 ! c${v}.sink_${k}`));
    parts.push('audiotestsrc is-live=true ! audio/x-raw,rate=48000,channels=1 ! opusenc ! opusdec ! opusenc ! fakesink sync=false');
  }
  const proc = spawn('gst-launch-1.0', ['-q', ...parts.join(' ').split(' ')], { stdio: 'ignore' });
  await sleep(4000);
  const cpu0 = cpuSeconds(proc.pid);
  const t0 = performance.now();
  await sleep(SECONDS * 1000);
  const cores = (cpuSeconds(proc.pid) - cpu0) / ((performance.now() - t0) / 1000);
  proc.kill('SIGINT');
  await new Promise((r) => proc.once('exit', r));
  return +cores.toFixed(2);
}

/** Gaps in one viewer's output while its layout changes, 4 people, one encoder each. */
async function switchGaps(server, source) {
  const room = 'bench-switch';
  const peers = [];
  for (let i = 0; i < 4; i++) peers.push(await joinPeer(server.url, room, `s${i}`, source));
  await sleep(5000);
  const viewer = peers[0];
  viewer.stats.frameTimes = [];
  viewer.stats.measuring = true;
  const samples = [];
  for (const layout of ['speaker', 'grid', 'pip', 'side-by-side', 'presentation', 'grid', 'speaker', 'grid']) {
    await sleep(1500);
    const t0 = performance.now();
    await api(`${server.url}/v1/rooms/${room}/participants/${viewer.id}/layout`, { method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ layout }) });
    await sleep(1500);
    const times = viewer.stats.frameTimes.filter((t) => t >= t0 - 200);
    let gap = 0;
    for (let i = 1; i < times.length; i++) gap = Math.max(gap, times[i] - times[i - 1]);
    const info = await (await api(`${server.url}/v1/rooms/${room}/participants/${viewer.id}`)).json();
    samples.push({ layout, maxGapMs: Math.round(gap), switchMs: info.stats.lastSwitchMs });
  }
  viewer.stats.measuring = false;
  for (const p of peers) await p.leave();
  const gaps = samples.map((s) => s.maxGapMs);
  const sw = samples.map((s) => s.switchMs).filter((x) => x != null);
  return { switches: samples.length, maxGapMs: Math.max(...gaps), medianMaxGapMs: pct(gaps, 50), frameIntervalMs: Math.round(1000 / FPS), switchMedianMs: pct(sw, 50), switchP95Ms: pct(sw, 95), samples };
}

/**
 * Glass-to-glass through the server: a publisher's picture flashes white and its tone clicks on at
 * known instants; a viewer decodes what the server sends and notes when it sees and hears them.
 * The same loop without the server (encode, then decode directly) is the floor.
 */
async function latency(server) {
  const flashes = 12;
  const dgram = await import('node:dgram');
  const run = async (viaServer) => {
    let onVideo;
    let onAudio;
    const videoIn = new GstPipeline(
      'udpsrc name=src address=127.0.0.1 port=0 reuse=false caps="application/x-rtp,media=video,clock-rate=90000,encoding-name=VP8,payload=96" ! rtpjitterbuffer latency=0 ! rtpvp8depay ! vp8dec ! videoconvert ! videoscale ! video/x-raw,width=160,height=90 ! videoanalyse ! fakesink sync=false',
    );
    let bright = false;
    videoIn.play((e) => {
      if (e.type !== 'element' || typeof e.raw['luma-average'] !== 'number') return;
      const now = e.raw['luma-average'] > 0.4;
      if (now && !bright) onVideo?.(performance.now());
      bright = now;
    });
    let loud = false;
    const pcm = await LocalUdp.open((b) => {
      let e = 0;
      for (let i = 0; i + 1 < b.length; i += 2) e += b.readInt16LE(i) ** 2;
      const rms = Math.sqrt(e / (b.length / 2)) / 32768;
      if (rms > 0.05 && !loud) onAudio?.(performance.now());
      loud = rms > 0.05;
    });
    const audioIn = new GstPipeline(
      `udpsrc name=src address=127.0.0.1 port=0 reuse=false caps="application/x-rtp,media=audio,clock-rate=48000,encoding-name=OPUS,payload=111" ! rtpjitterbuffer latency=0 ! rtpopusdepay ! opusdec ! audioconvert ! audio/x-raw,format=S16LE,rate=48000,channels=1 ! udpsink host=127.0.0.1 port=${pcm.port} sync=false`,
    );
    audioIn.play();
    const vPort = Number(videoIn.get('src', 'port'));
    const aPort = Number(audioIn.get('src', 'port'));
    let out = { video: vPort, audio: aPort };
    const closers = [];
    let pub;
    let view;
    if (viaServer) {
      const room = 'bench-latency';
      const none = { subscribers: { video: new Set(), audio: new Set() } };
      pub = await joinPeer(server.url, room, 'flasher', none);
      view = await joinPeer(server.url, room, 'watcher', none);
      const sock = dgram.createSocket('udp4');
      view.stats.measuring = true;
      view.onRtp = (kind, rtp) => sock.send(rtp.serialize(), kind === 'video' ? vPort : aPort, '127.0.0.1');
      const inV = await LocalUdp.open((b) => pub.write('video', b));
      const inA = await LocalUdp.open((b) => pub.write('audio', b));
      closers.push(() => sock.close(), () => inV.close(), () => inA.close());
      out = { video: inV.port, audio: inA.port };
    }
    const src = new GstPipeline(
      `videotestsrc is-live=true pattern=white ! video/x-raw,width=640,height=360,framerate=${FPS}/1 ! videobalance name=flash brightness=-1 ! vp8enc deadline=1 cpu-used=-6 threads=1 end-usage=cbr target-bitrate=600000 keyframe-max-dist=60 lag-in-frames=0 ! rtpvp8pay pt=96 mtu=1200 ! udpsink host=127.0.0.1 port=${out.video} sync=false async=false ` +
        `audiotestsrc is-live=true wave=sine freq=1000 ! audio/x-raw,rate=48000,channels=1 ! volume name=click volume=0 ! opusenc frame-size=10 ! rtpopuspay pt=111 ! udpsink host=127.0.0.1 port=${out.audio} sync=false async=false`,
    );
    src.play();
    await sleep(viaServer ? 5000 : 2000);
    const v = [];
    const a = [];
    for (let k = 0; k < flashes; k++) {
      const t0 = performance.now();
      onVideo = (t) => v.push(t - t0);
      onAudio = (t) => a.push(t - t0);
      src.set('flash', 'brightness', 0);
      src.set('click', 'volume', 0.8);
      await sleep(400);
      onVideo = onAudio = undefined;
      src.set('flash', 'brightness', -1);
      src.set('click', 'volume', 0);
      await sleep(600);
    }
    await src.close();
    await videoIn.close();
    await audioIn.close();
    pcm.close();
    closers.forEach((c) => c());
    await pub?.leave();
    await view?.leave();
    return { video: v, audio: a };
  };
  const floor = await run(false);
  const through = await run(true);
  const med = (xs) => (xs.length ? Math.round(pct(xs, 50)) : null);
  const p95 = (xs) => (xs.length ? Math.round(pct(xs, 95)) : null);
  const summary = (k) => ({
    detected: through[k].length,
    medianMs: med(through[k]),
    p95Ms: p95(through[k]),
    floorMedianMs: med(floor[k]),
    addedMedianMs: through[k].length && floor[k].length ? med(through[k]) - med(floor[k]) : null,
  });
  return { flashes, video: summary('video'), audio: summary('audio') };
}

async function joinTimes(server, source) {
  if (JOINS <= 0) return null;
  const { chromium } = await import('playwright-core');
  const publisher = await joinPeer(server.url, 'bench-join', 'publisher', source);
  const browser = await chromium.launch({
    executablePath: path.join(ROOT, 'test/helpers/chromium.sh'),
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--allow-loopback-in-peer-connection', '--autoplay-policy=no-user-gesture-required', '--disable-features=WebRtcHideLocalIpsWithMdns'],
  });
  const times = [];
  try {
    for (let i = 0; i < JOINS; i++) {
      const page = await browser.newPage();
      await page.goto(server.url + '/');
      times.push(
        await page.evaluate(async (token) => {
          const pc = new RTCPeerConnection({ iceServers: [] });
          pc.addTransceiver('audio', { direction: 'recvonly' });
          pc.addTransceiver('video', { direction: 'recvonly' });
          const video = document.createElement('video');
          video.muted = true;
          video.autoplay = true;
          document.body.appendChild(video);
          const first = new Promise((resolve) => {
            pc.ontrack = (e) => {
              if (e.track.kind !== 'video') return;
              video.srcObject = new MediaStream([e.track]);
              video.requestVideoFrameCallback(() => resolve(performance.now()));
            };
          });
          await pc.setLocalDescription(await pc.createOffer());
          await new Promise((r) => {
            if (pc.iceGatheringState === 'complete') return r();
            pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && r();
          });
          const t0 = performance.now();
          const res = await fetch('/v1/rooms/bench-join/participants?name=viewer', { method: 'POST', headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${token}` }, body: pc.localDescription.sdp });
          const answer = await res.text();
          const tAnswer = performance.now();
          await pc.setRemoteDescription({ type: 'answer', sdp: answer });
          const connected = new Promise((resolve) => {
            const done = () => pc.connectionState === 'connected' && resolve(performance.now());
            pc.onconnectionstatechange = done;
            done();
          });
          const t1 = await first;
          const tConnected = await connected;
          await fetch(res.headers.get('Location'), { method: 'DELETE', headers: { Authorization: `Bearer ${token}` } });
          pc.close();
          return { total: Math.round(t1 - t0), answer: Math.round(tAnswer - t0), connected: Math.round(tConnected - t0) };
        }, await roomToken(server, 'bench-join')),
      );
      await page.close();
    }
  } finally {
    await browser.close();
    await publisher.leave();
  }
  const totals = times.map((t) => t.total);
  return {
    medianMs: pct(totals, 50),
    p95Ms: pct(totals, 95),
    answerMedianMs: pct(times.map((t) => t.answer), 50),
    connectedMedianMs: pct(times.map((t) => t.connected), 50),
    samples: times,
  };
}

// The machine's own memory monitor stalls the server periodically where it runs (bench/damon.mjs).
const damonSeen = damonState();
let damonNote = damonSeen.length === 0 ? 'not running' : describeDamon(damonSeen);
if (damonSeen.length > 0 && process.env.BENCH_DAMON === 'off') {
  pauseDamon();
  damonNote = `stopped for this run (BENCH_DAMON=off): ${damonSeen.map((k) => `kdamond ${k.id}`).join(', ')}`;
}
console.error(`DAMON: ${damonNote}`);

const server = await startServer();
const source = await mediaSource();
const gen = await startGenerator();
const rows = [];
const capacity = { a: 0, b: 0, audio: 0 };
let join = null;
let switching = null;
let lat = null;
let loaded = null;
try {
  for (const [kind, list] of [['a', SIZES_A], ['b', SIZES_B], ['rungs', SIZES_RUNGS], ['audio', SIZES_AUDIO]]) {
    if (!ONLY.has(kind)) continue;
    // Case (a) composes one 1280x720 picture for everyone: a server of its own with that canvas.
    const target = kind === 'a' ? await startServer({ MCU_CANVAS: '1280x720', MCU_VIDEO_BITRATE: '2000000' }) : server;
    for (const n of list) {
      const r = await measureRoom(target, gen, n, kind);
      rows.push(r);
      console.error(`measured case ${r.case}, ${n} participants: ${JSON.stringify(r)}`);
      if (r.realTime) capacity[r.case] = n;
      else break;
    }
    if (target !== server) await stopServer(target);
  }
  if (ONLY.has('janus')) {
    let janus = null;
    try {
      janus = await startJanus();
    } catch (err) {
      console.error(`janus: not measured: ${err.message}`);
    }
    if (janus) {
      try {
        for (const n of SIZES_AUDIO) {
          const r = await measureJanusRoom(janus, gen, n);
          rows.push(r);
          console.error(`measured janus audio, ${n} participants: ${JSON.stringify(r)}`);
        }
      } finally {
        await janus.stop();
      }
    }
  }
  for (const r of rows.filter((x) => x.case === 'rungs')) {
    const single = rows.find((x) => x.case === 'b' && x.participants === r.participants);
    console.error(`rungs: ${r.participants} viewers over three rungs use ${r.encoders} encoders and ${r.serverCores} cores; on one rung: ${single ? `${single.encoders} encoders, ${single.serverCores} cores` : 'not measured (BENCH_SIZES_B)'}`);
  }
  if (ONLY.has('bare')) for (const r of rows) if (r.case === 'b') r.bareCores = await bareRun(r.participants);
  for (const r of rows) if (r.bareCores) r.overheadRatio = +(r.serverCores / r.bareCores).toFixed(2);
  if (ONLY.has('switch')) switching = await switchGaps(server, source);
  if (switching) console.error(`layout switching: ${JSON.stringify(switching)}`);
  if (ONLY.has('latency')) lat = await latency(server);
  if (lat) console.error(`latency: ${JSON.stringify(lat)}`);
  if (ONLY.has('join')) join = await joinTimes(server, source);
  if (ONLY.has('joins100')) loaded = await joinsUnderLoad(server, gen);
  if (loaded) console.error(`joins under load: ${JSON.stringify(loaded)}`);
} finally {
  gen.close();
  await source.close();
  await stopServer(server);
}

const result = {
  date: new Date().toISOString(),
  machine: `${os.cpus().length} × ${os.cpus()[0].model}`,
  damon: damonNote,
  seconds: SECONDS,
  cases: {
    a: 'one shared 1280x720 layout with self-view: one compositor and encoder for everyone',
    b: 'per-viewer 640x360 mix-minus composition, one encoder each',
    audio: 'audio only: mix-minus, one Opus encoder per listener',
  },
  capacity,
  rows,
  layoutSwitch: switching,
  latency: lat,
  joinTime: join,
  joinsUnderLoad: loaded,
};
fs.mkdirSync(path.join(ROOT, 'bench/results'), { recursive: true });
fs.writeFileSync(path.join(ROOT, 'bench/results/latest.json'), JSON.stringify(result, null, 2));
const header = ['case', 'people', 'encoders', 'min fps', 'median fps', 'max audio gap ms', 'server frame late ms (max/p99)', 'server cores', 'cores/person', 'generator cores', 'bare cores', 'server/bare', 'real time'];
console.log(`\n${SECONDS} s per size on ${result.machine}; (a) ${result.cases.a}; (b) ${result.cases.b}; (audio) ${result.cases.audio}`);
console.log(`DAMON: ${damonNote}`);
console.log(header.join(' | '));
for (const r of rows) console.log([r.case, r.participants, r.encoders, r.minFps ?? '-', r.medianFps ?? '-', r.maxAudioGapMs, r.serverMaxFrameLateMs == null ? '-' : `${r.serverMaxFrameLateMs}/${r.serverP99FrameLateMs}`, r.serverCores, r.cpuPerParticipant, r.generatorCores, r.bareCores ?? '-', r.overheadRatio ?? '-', r.realTime ? 'yes' : 'no'].join(' | '));
console.log(`capacity (largest room kept in real time): case (a) ${capacity.a}, case (b) ${capacity.b}, audio only ${capacity.audio}`);
const audioRows = rows.filter((r) => r.case === 'audio');
if (audioRows.length) console.log(`audio only${process.env.BENCH_AUDIO_TALKERS ? ` (${process.env.BENCH_AUDIO_TALKERS} talking, the rest silent)` : ''}: ${audioRows.map((r) => `${r.participants} people ${(r.cpuPerParticipant * 1000).toFixed(0)} millicores each, largest gap ${r.maxAudioGapMs} ms`).join('; ')}`);
const janusRows = rows.filter((r) => r.case === 'janus-audio');
if (janusRows.length) console.log(`Janus AudioBridge, same rooms and generator: ${janusRows.map((r) => `${r.participants} people ${(r.cpuPerParticipant * 1000).toFixed(0)} millicores each, largest gap ${r.maxAudioGapMs} ms`).join('; ')}`);
if (switching) console.log(`layout switch (${switching.switches} switches): largest gap between frames at the viewer ${switching.maxGapMs} ms (median of per-switch maxima ${switching.medianMaxGapMs} ms; one frame is ${switching.frameIntervalMs} ms); switch done in median ${switching.switchMedianMs} ms, p95 ${switching.switchP95Ms} ms`);
if (lat) {
  for (const k of ['video', 'audio']) {
    const l = lat[k];
    console.log(`glass-to-glass ${k}: median ${l.medianMs} ms, p95 ${l.p95Ms} ms (${l.detected}/${lat.flashes} detected); without the server ${l.floorMedianMs} ms, so the server adds ${l.addedMedianMs} ms`);
  }
}
if (join) console.log(`join time, POST to first decoded frame in Chromium: median ${join.medianMs} ms, p95 ${join.p95Ms} ms (${join.samples.length} joins); the answer came at ${join.answerMedianMs} ms and the connection (ICE, DTLS) at ${join.connectedMedianMs} ms, medians`);
if (loaded) console.log(`joins with every CPU busy: ${loaded.completed} of ${loaded.joins} completed ICE and DTLS within 10 s (median ${loaded.medianMs} ms, p95 ${loaded.p95Ms} ms)`);
const atM = rows.find((r) => r.case === 'b' && r.participants === capacity.b);
const generatorCores = Math.max(0, ...rows.map((r) => r.generatorCores));
console.log(`summary: shared=${capacity.a} per-viewer=${capacity.b} ratio=${atM?.overheadRatio ?? '-'} generator-cores=${generatorCores}`);
process.exit(0);
