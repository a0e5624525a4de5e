#!/usr/bin/env node
// Benchmark: capacity, cost per participant, overhead against bare GStreamer, join time.
// Runs the real server (bin/mcu.cjs) and lightweight werift publishers on loopback only; prints a
// table and writes bench/results/latest.json. Run it with `npm run bench` (inside `unshare -n`).
//   BENCH_SECONDS   measured seconds per room size (default 20)
//   BENCH_SIZES     room sizes to try, e.g. "2,4,8" (default 2,4,6,8,10,12 until real time is lost)
//   BENCH_JOINS     Chromium joins timed for the join-time figure (default 10; 0 skips it)
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MediaStreamTrack, RTCPeerConnection, RTCRtpCodecParameters, RtpPacket } from 'werift';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { GstPipeline } = await import(path.join(ROOT, 'dist/gst/native.js'));
const { LocalUdp } = await import(path.join(ROOT, 'dist/media/localUdp.js'));
const SECONDS = Number(process.env.BENCH_SECONDS ?? 20);
const SIZES = (process.env.BENCH_SIZES ?? '2,4,6,8,10,12').split(',').map(Number);
const JOINS = Number(process.env.BENCH_JOINS ?? 10);
const FPS = 30;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString()) || 100;
const cpuSeconds = (pid) => {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / TCK; // utime stime cutime cstime
};
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];

async function startServer() {
  const proc = spawn(process.execPath, [path.join(ROOT, 'bin/mcu.cjs')], {
    env: { ...process.env, HOST: '127.0.0.1', PORT: '0', MCU_ICE_ADDRESSES: '127.0.0.1', LOG_LEVEL: 'warn', MCU_CACHE_DIR: path.join(os.tmpdir(), 'mcu-bench-cache') },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise((resolve, reject) => {
    let out = '';
    proc.stdout.on('data', (d) => {
      out += d;
      const m = /Open (http:\/\/\S+) in/.exec(out);
      if (m) resolve(m[1].replace(/\/$/, ''));
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
  const pc = new RTCPeerConnection({
    iceServers: [],
    iceAdditionalHostAddresses: ['127.0.0.1'],
    iceUseIpv6: false,
    codecs: {
      audio: [new RTCRtpCodecParameters({ mimeType: 'audio/opus', clockRate: 48000, channels: 2, payloadType: 111 })],
      video: [new RTCRtpCodecParameters({ mimeType: 'video/VP8', clockRate: 90000, payloadType: 96, rtcpFeedback: [{ type: 'nack', parameter: 'pli' }] })],
    },
  });
  const stats = { frames: 0, audio: 0, lastAudio: 0, maxAudioGap: 0, measuring: false };
  const tracks = {};
  for (const kind of ['audio', 'video']) {
    tracks[kind] = new MediaStreamTrack({ kind });
    const t = pc.addTransceiver(tracks[kind], { direction: 'sendrecv' });
    t.onTrack.subscribe((tr) =>
      tr.onReceiveRtp.subscribe((rtp) => {
        if (!stats.measuring) return;
        if (kind === 'video') {
          if (rtp.header.marker) stats.frames++;
        } else {
          const now = performance.now();
          if (stats.lastAudio) stats.maxAudioGap = Math.max(stats.maxAudioGap, now - stats.lastAudio);
          stats.lastAudio = now;
          stats.audio++;
        }
      }),
    );
  }
  await pc.setLocalDescription(await pc.createOffer());
  if (pc.iceGatheringState !== 'complete') await pc.iceGatheringStateChange.watch((s) => s === 'complete', 5000);
  const res = await fetch(`${url}/v1/rooms/${room}/participants?name=${name}`, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
  if (res.status !== 201) throw new Error(`join ${res.status} ${await res.text()}`);
  await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
  const location = res.headers.get('location');
  const feeders = {
    video: (b) => tracks.video.writeRtp(RtpPacket.deSerialize(b)),
    audio: (b) => tracks.audio.writeRtp(RtpPacket.deSerialize(b)),
  };
  source.subscribers.video.add(feeders.video);
  source.subscribers.audio.add(feeders.audio);
  return {
    stats,
    leave: async () => {
      source.subscribers.video.delete(feeders.video);
      source.subscribers.audio.delete(feeders.audio);
      await fetch(url + location, { method: 'DELETE' }).catch(() => undefined);
      await pc.close().catch(() => undefined);
    },
  };
}

async function measureRoom(server, source, n) {
  const room = `bench-${n}`;
  const peers = [];
  for (let i = 0; i < n; i++) peers.push(await joinPeer(server.url, room, `p${i}`, source));
  await sleep(6000); // every decoder and composite up, every viewer on its final composition
  peers.forEach((p) => (p.stats.measuring = true));
  const cpu0 = cpuSeconds(server.proc.pid);
  const t0 = performance.now();
  await sleep(SECONDS * 1000);
  const wall = (performance.now() - t0) / 1000;
  const cpu = cpuSeconds(server.proc.pid) - cpu0;
  peers.forEach((p) => (p.stats.measuring = false));
  const roomInfo = await (await fetch(`${server.url}/v1/rooms/${room}`)).json();
  const fps = peers.map((p) => p.stats.frames / wall);
  const result = {
    participants: n,
    encoders: roomInfo.encoders,
    minFps: +Math.min(...fps).toFixed(1),
    medianFps: +pct(fps, 50).toFixed(1),
    maxAudioGapMs: Math.round(Math.max(...peers.map((p) => p.stats.maxAudioGap))),
    serverCores: +(cpu / wall).toFixed(2),
    cpuPerParticipant: +(cpu / wall / n).toFixed(3),
  };
  result.realTime = result.minFps >= FPS - 1 && result.maxAudioGapMs < 100;
  for (const p of peers) await p.leave();
  await sleep(1500);
  return result;
}

/** The same decode, composite and encode work as plain gst-launch-1.0, no WebRTC, timed the same. */
async function bareRun(n) {
  const file = path.join(os.tmpdir(), 'mcu-bench.webm');
  if (!fs.existsSync(file)) {
    execFileSync('gst-launch-1.0', ['-q', ...`videotestsrc num-buffers=${FPS * 70} pattern=ball ! video/x-raw,width=640,height=360,framerate=${FPS}/1 ! vp8enc deadline=1 cpu-used=-6 threads=1 end-usage=cbr target-bitrate=600000 keyframe-max-dist=60 ! webmmux ! filesink location=${file}`.split(' ')]);
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
        await page.evaluate(async () => {
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
          const res = await fetch('/v1/rooms/bench-join/participants?name=viewer', { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
          await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
          const t1 = await first;
          await fetch(res.headers.get('Location'), { method: 'DELETE' });
          pc.close();
          return Math.round(t1 - t0);
        }),
      );
      await page.close();
    }
  } finally {
    await browser.close();
    await publisher.leave();
  }
  return { medianMs: pct(times, 50), p95Ms: pct(times, 95), samples: times };
}

const server = await startServer();
const source = await mediaSource();
const rows = [];
let capacity = 0;
try {
  for (const n of SIZES) {
    const r = await measureRoom(server, source, n);
    rows.push(r);
    console.error(`measured ${n} participants: ${JSON.stringify(r)}`);
    if (r.realTime) capacity = n;
    else break;
  }
  for (const r of rows) if (r.participants <= 8 || r.participants === rows[rows.length - 1].participants) r.bareCores = await bareRun(r.participants);
  for (const r of rows) if (r.bareCores) r.overheadRatio = +(r.serverCores / r.bareCores).toFixed(2);
  var join = await joinTimes(server, source);
} finally {
  await source.close();
  server.proc.kill('SIGTERM');
  await new Promise((r) => server.proc.once('exit', r));
}

const result = {
  date: new Date().toISOString(),
  machine: `${os.cpus().length} × ${os.cpus()[0].model}`,
  seconds: SECONDS,
  case: 'per-viewer mix-minus composition, one encoder each (case b)',
  capacity,
  rows,
  joinTime: join,
};
fs.mkdirSync(path.join(ROOT, 'bench/results'), { recursive: true });
fs.writeFileSync(path.join(ROOT, 'bench/results/latest.json'), JSON.stringify(result, null, 2));
const header = ['people', 'encoders', 'min fps', 'median fps', 'max audio gap ms', 'server cores', 'cores/person', 'bare cores', 'server/bare', 'real time'];
console.log(`\n${result.case}; ${SECONDS} s per size on ${result.machine}`);
console.log(header.join(' | '));
for (const r of rows) console.log([r.participants, r.encoders, r.minFps, r.medianFps, r.maxAudioGapMs, r.serverCores, r.cpuPerParticipant, r.bareCores ?? '-', r.overheadRatio ?? '-', r.realTime ? 'yes' : 'no'].join(' | '));
console.log(`capacity (largest room kept in real time): ${capacity}`);
if (join) console.log(`join time, POST to first decoded frame in Chromium: median ${join.medianMs} ms, p95 ${join.p95Ms} ms (${join.samples.length} joins)`);
process.exit(0);
