#!/usr/bin/env node
// Lip sync of a long recording: a publisher flashes its picture and clicks a 1 kHz tone at the
// same instants, once a second; a second participant joins 30 s in; the recording is analysed
// with GStreamer (videoanalyse, level) and the audio-minus-video offset of every flash is printed.
// From 30 s on, the recording's layout also changes every LIPSYNC_SWITCH_S seconds (grid, then
// picture-in-picture pinned on the flasher, and back): every change is a new composite.
//   LIPSYNC_MINUTES (default 10), LIPSYNC_SWITCH_S (default 20; 0: never)
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MediaStreamTrack, RtpPacket } from 'werift';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { GstPipeline } = await import(path.join(ROOT, 'dist/gst/native.js'));
const { loopbackPeer } = await import(path.join(ROOT, 'test/helpers/loopbackPeer.mjs'));
const { LocalUdp } = await import(path.join(ROOT, 'dist/media/localUdp.js'));
const { analysisArgs, parseFlashesAndClicks, offsetsMs } = await import(path.join(ROOT, 'test/helpers/flashes.mjs'));
const { startFlasher } = await import(path.join(ROOT, 'test/helpers/flasher.mjs'));
const MINUTES = Number(process.env.LIPSYNC_MINUTES ?? 10);
const SWITCH_S = Number(process.env.LIPSYNC_SWITCH_S ?? 20);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcu-lipsync-'));

// A client like any other: the admin key on every request.
const KEY = `lipsync-admin-key-${process.pid}-0123456789`;
const api = (u, init = {}) => fetch(u, { ...init, headers: { ...init.headers, Authorization: `Bearer ${KEY}` } });
const proc = spawn(path.join(ROOT, 'bin/mcu'), [], {
  env: { ...process.env, NODE: process.execPath, HOST: '127.0.0.1', PORT: '0', MCU_ICE_ADDRESSES: '127.0.0.1', LOG_LEVEL: 'warn', MCU_RECORDINGS_DIR: dir, MCU_CACHE_DIR: path.join(dir, 'cache'), MCU_SECRETS_FILE: path.join(dir, 'secrets.json'), MCU_API_KEY: KEY },
  stdio: ['ignore', 'pipe', 'inherit'],
});
const url = await new Promise((resolve) => {
  let out = '';
  proc.stdout.on('data', (d) => {
    out += d;
    const m = /(http:\/\/[^/\s]+\/)\?room=/.exec(out);
    if (m) resolve(m[1].replace(/\/$/, ''));
  });
});

const ids = {};
async function publish(name, launch) {
  const pc = loopbackPeer();
  const tracks = { audio: new MediaStreamTrack({ kind: 'audio' }), video: new MediaStreamTrack({ kind: 'video' }) };
  pc.addTransceiver(tracks.audio, { direction: 'sendonly' });
  pc.addTransceiver(tracks.video, { direction: 'sendonly' });
  await pc.setLocalDescription(await pc.createOffer());
  if (pc.iceGatheringState !== 'complete') await pc.iceGatheringStateChange.watch((s) => s === 'complete', 5000);
  const res = await api(`${url}/v1/rooms/lipsync/participants?name=${name}`, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
  await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
  ids[name] = res.headers.get('location').split('/').pop();
  const v = await LocalUdp.open((b) => tracks.video.writeRtp(RtpPacket.deSerialize(b)));
  const a = await LocalUdp.open((b) => tracks.audio.writeRtp(RtpPacket.deSerialize(b)));
  const made = launch(v.port, a.port);
  if (typeof made !== 'string') return made;
  const p = new GstPipeline(made);
  p.play();
  return p;
}

// Flashes of 300 ms, one a second, with a click over exactly the same span.
const flasher = await publish('Flasher', (v, a) => startFlasher(GstPipeline, v, a));
await sleep(2500);
const rec = await (await api(`${url}/v1/rooms/lipsync/recordings`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' })).json();
const started = performance.now();
let late;
let switches = 0;
let nextSwitch = 30_000 + SWITCH_S * 1000;
for (let k = 0; performance.now() - started < MINUTES * 60_000; k++) {
  if (SWITCH_S > 0 && late && performance.now() - started > nextSwitch) {
    nextSwitch += SWITCH_S * 1000;
    const body = ++switches % 2 ? { layout: 'pip', pin: ids.Flasher } : { layout: 'grid', pin: null };
    await api(`${url}/v1/rooms/lipsync/recordings/${rec.id}/layout`, { method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  }
  if (!late && performance.now() - started > 30_000) {
    late = await publish(
      'Late',
      (v, a) =>
        `videotestsrc is-live=true pattern=smpte ! video/x-raw,width=320,height=180,framerate=30/1 ! vp8enc deadline=1 ! rtpvp8pay pt=96 ! udpsink host=127.0.0.1 port=${v} sync=false async=false ` +
        `audiotestsrc is-live=true freq=300 volume=0.2 ! audio/x-raw,rate=48000,channels=1 ! opusenc ! rtpopuspay pt=111 ! udpsink host=127.0.0.1 port=${a} sync=false async=false`,
    );
  }
  await sleep(1000);
}
await api(`${url}/v1/rooms/lipsync/recordings/${rec.id}/stop`, { method: 'POST' });
const file = path.join(dir, fs.readdirSync(dir).find((f) => f.includes(rec.id) && f.endsWith('.webm')));
await flasher.close();
await late?.close();
proc.kill('SIGTERM');

// The flasher's tile, alone (centred, full), left of the late joiner, or full in picture-in-picture,
// covers this crop of the 1280x720 canvas.
const text = execFileSync('gst-launch-1.0', analysisArgs(file, 'videocrop left=200 right=780 top=240 bottom=240'), { maxBuffer: 2 * 1024 * 1024 * 1024 }).toString();
const { flashes, clicks } = parseFlashesAndClicks(text);
const offsets = offsetsMs(flashes, clicks);
const abs = offsets.map(Math.abs).sort((a, b) => a - b);
const summary = {
  minutes: MINUTES,
  flashes: flashes.length,
  clicks: clicks.length,
  meanMs: +(offsets.reduce((a, b) => a + b, 0) / offsets.length).toFixed(1),
  maxAbsMs: abs[abs.length - 1],
  p95AbsMs: abs[Math.floor(abs.length * 0.95)],
  within40: offsets.filter((o) => Math.abs(o) <= 40).length,
  layoutSwitches: switches,
  afterLateJoin: offsets.filter((_, i) => flashes[i] > 30).slice(0, 5),
};
fs.mkdirSync(path.join(ROOT, 'bench/results'), { recursive: true });
fs.writeFileSync(path.join(ROOT, 'bench/results/lipsync.json'), JSON.stringify({ ...summary, offsets }, null, 2));
console.log(`lip sync over ${MINUTES} min (audio minus video): mean ${summary.meanMs} ms, p95 |offset| ${summary.p95AbsMs} ms, max |offset| ${summary.maxAbsMs} ms; ${summary.within40}/${offsets.length} flashes within 40 ms (${clicks.length} clicks found; ${switches} layout switches)`);
process.exit(0);
