#!/usr/bin/env node
// The benchmark's load generator, in a process of its own so that the meter is not the load it
// measures: publishers and viewers are werift peers spread over worker threads, all fed by one
// shared GStreamer encoder (VP8 640x360 at 30 fps, and Opus). The bench (bench/run.mjs) drives it
// over the IPC channel of child_process.fork and reads its CPU from /proc.
//   join { url, room, name, token, video, waitConnected, silent, janus }  -> { id }   a peer that sends
//                                    and receives (video optional; waitConnected: once ICE and DTLS
//                                    are done; silent: its microphone sends Opus of silence, not the
//                                    tone; janus: join Janus's AudioBridge at this API URL instead,
//                                    room being its numeric room id; see bench/janus.mjs)
//   measure { on }                                   start (resetting counters) or stop counting
//   stats                             -> [{ frames, audio, maxAudioGapMs, maxFrameGapMs }]
//   leaveAll
import path from 'node:path';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { KEYFRAME_FRAMES, requester } from './ipc.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const FPS = 30;
/** The video codecs each peer offers, in order (BENCH_VIDEO_CODECS, default vp8). */
const CODECS = (process.env.BENCH_VIDEO_CODECS ?? 'vp8').split(',').filter((c) => c === 'vp8' || c === 'h264');

if (isMainThread) {
  const { GstPipeline } = await import(path.join(ROOT, 'dist/gst/native.js'));
  const n = Number(process.env.BENCH_GENERATOR_THREADS ?? Math.max(1, os.availableParallelism()));
  const workers = [];
  for (let i = 0; i < n; i++) {
    const w = new Worker(fileURLToPath(import.meta.url), { workerData: { index: i } });
    const ports = new Promise((r) => w.on('message', (m) => m.ports && r(m.ports)));
    const call = requester((m) => w.postMessage(m), (fn) => w.on('message', fn));
    w.on('message', (m) => m.pli && keyframe(m.pli));
    workers.push({ call, ports: await ports, peers: 0 });
  }
  // One shared encoder feeds every publisher in every thread.
  const clients = (kind) => workers.map((w) => `127.0.0.1:${w.ports[kind]}`).join(',');
  // With BENCH_VIDEO_CODECS=vp8,h264 the peers offer both, as a browser does, and publish in
  // whichever the server answers with: the same pictures encoded once in each.
  const h264 = CODECS.includes('h264')
    ? `v. ! queue ! x264enc speed-preset=ultrafast tune=zerolatency threads=1 key-int-max=${KEYFRAME_FRAMES} bitrate=600 ! video/x-h264,profile=constrained-baseline ! rtph264pay name=hpay pt=102 mtu=1200 config-interval=-1 aggregate-mode=zero-latency ! multiudpsink clients=${clients('h264')} sync=false async=false `
    : '';
  const source = new GstPipeline(
    `videotestsrc is-live=true pattern=ball ! video/x-raw,width=640,height=360,framerate=${FPS}/1 ! tee name=v ! queue ! vp8enc deadline=1 cpu-used=-6 threads=1 end-usage=cbr target-bitrate=600000 keyframe-max-dist=${KEYFRAME_FRAMES} lag-in-frames=0 ! rtpvp8pay name=vpay pt=96 mtu=1200 ! multiudpsink clients=${clients('video')} sync=false async=false ` +
      h264 +
      `audiotestsrc is-live=true wave=sine freq=440 volume=0.2 ! audio/x-raw,rate=48000,channels=1 ! opusenc frame-size=20 ! rtpopuspay pt=111 ! multiudpsink clients=${clients('audio')} sync=false async=false ` +
      `audiotestsrc is-live=true wave=silence ! audio/x-raw,rate=48000,channels=1 ! opusenc frame-size=20 ! rtpopuspay pt=111 ! multiudpsink clients=${clients('silent')} sync=false async=false`,
  );
  source.play();
  // A publisher answers the server's keyframe requests (PLI), as a browser does: the server's
  // decoder of a publisher whose packets were lost, or that paused, waits for one. The encoder is
  // shared, so the requests of all peers are served together, at most one keyframe every 500 ms
  // per codec (a browser's encoder also spaces them).
  const lastKeyframe = { vp8: 0, h264: 0 };
  function keyframe(codec) {
    const now = performance.now();
    if (now - lastKeyframe[codec] < 500) return;
    lastKeyframe[codec] = now;
    source.forceKeyUnit(codec === 'h264' ? 'hpay' : 'vpay');
    if (process.env.BENCH_DEBUG_PLI) console.error(`generator: keyframe (${codec}) on PLI`);
  }
  process.on('message', async (m) => {
    try {
      let result;
      if (m.cmd === 'join') {
        const w = workers.reduce((a, b) => (b.peers < a.peers ? b : a));
        w.peers++;
        result = await w.call(m);
      } else if (m.cmd === 'stats') {
        result = (await Promise.all(workers.map((w) => w.call(m)))).flat();
      } else {
        await Promise.all(workers.map((w) => w.call(m)));
        if (m.cmd === 'leaveAll') workers.forEach((w) => (w.peers = 0));
      }
      process.send({ id: m.id, result });
    } catch (err) {
      process.send({ id: m.id, error: String(err?.message ?? err) });
    }
  });
  process.on('disconnect', async () => {
    await source.close();
    process.exit(0);
  });
  process.send({ ready: true });
} else {
  const { MediaStreamTrack, RtpPacket } = await import('werift');
  const { isKeyframeRequest } = await import(path.join(ROOT, 'dist/rtc/native.js'));
  const { loopbackPeer, whipJoin } = await import(path.join(ROOT, 'test/helpers/loopbackPeer.mjs'));
  const { LocalUdp } = await import(path.join(ROOT, 'dist/media/localUdp.js'));
  const peers = [];
  let measuring = false;
  const feed = { video: new Set(), h264: new Set(), audio: new Set(), silent: new Set() };
  const udp = {};
  for (const kind of ['video', 'h264', 'audio', 'silent']) {
    // The level a browser would put in each audio packet (RFC 6464, -dBov): the tone's RMS is
    // -17 dBov, silence is 127.
    const level = kind === 'audio' ? 17 : kind === 'silent' ? 127 : undefined;
    udp[kind] = await LocalUdp.open((b) => {
      // Each sender rewrites the header it is given: every track gets its own copy.
      for (const track of feed[kind]) {
        const rtp = RtpPacket.deSerialize(b);
        if (level !== undefined && track.levelExtId !== undefined) rtp.header.extensions.push({ id: track.levelExtId, payload: Buffer.from([level]) });
        track.writeRtp(rtp);
      }
    });
  }

  // What a failed run needs to be read: this thread's stalls, and every peer that lost its connection.
  let lastTick = performance.now();
  setInterval(() => {
    const now = performance.now();
    if (now - lastTick > 300) console.error(`generator thread ${workerData.index}: event loop blocked ${Math.round(now - lastTick - 100)} ms`);
    lastTick = now;
  }, 100).unref();

  async function join({ url, room, name, token, video = true, waitConnected = false, silent = false, janus }) {
    const pc = loopbackPeer(CODECS, { audioLevel: true });
    pc.connectionStateChange.subscribe((st) => {
      if (st === 'disconnected' || st === 'failed') console.error(`generator: ${name} ${st} (ICE ${pc.iceConnectionState}) at ${new Date().toISOString()}`);
    });
    const s = { frames: 0, audio: 0, lastAudio: 0, maxAudioGapMs: 0, lastFrame: 0, maxFrameGapMs: 0 };
    const tracks = {};
    for (const kind of video ? ['audio', 'video'] : ['audio']) {
      tracks[kind] = new MediaStreamTrack({ kind });
      const t = pc.addTransceiver(tracks[kind], { direction: 'sendrecv' });
      t.onTrack.subscribe((tr) =>
        tr.onReceiveRtp.subscribe((rtp) => {
          if (!measuring) return;
          const now = performance.now();
          if (kind === 'video') {
            if (!rtp.header.marker) return;
            if (s.lastFrame) s.maxFrameGapMs = Math.max(s.maxFrameGapMs, now - s.lastFrame);
            s.lastFrame = now;
            s.frames++;
          } else {
            if (s.lastAudio) s.maxAudioGapMs = Math.max(s.maxAudioGapMs, now - s.lastAudio);
            s.lastAudio = now;
            s.audio++;
          }
        }),
      );
    }
    let location;
    let bye;
    if (janus) {
      const { janusJoin } = await import('./janus.mjs');
      const j = await janusJoin(pc, janus, room, name);
      location = `/janus/${room}/${name}`;
      bye = j.leave;
    } else {
      location = await whipJoin(pc, url, room, name, token);
      bye = () => fetch(url + location, { method: 'DELETE', headers: { Authorization: `Bearer ${token}` } }).catch(() => undefined);
    }
    // ICE and DTLS done, within 10 s (or the join counts as failed).
    if (waitConnected && pc.connectionState !== 'connected') {
      await pc.connectionStateChange.watch((st) => st === 'connected', 10_000).catch(async () => {
        await bye();
        await pc.close().catch(() => undefined);
        throw new Error(`not connected within 10 s (${pc.connectionState})`);
      });
    }
    // Each track is fed the source in the codec its sender negotiated.
    const sent = (kind) => pc.getTransceivers().find((t) => t.sender.track === tracks[kind])?.sender.codec?.mimeType.toLowerCase();
    const feedOf = (kind) => (kind === 'video' && sent(kind) === 'video/h264' ? 'h264' : kind === 'audio' && silent ? 'silent' : kind);
    const audioT = pc.getTransceivers().find((t) => t.sender.track === tracks.audio);
    tracks.audio.levelExtId = audioT?.headerExtensions.find((e) => e.uri === 'urn:ietf:params:rtp-hdrext:ssrc-audio-level')?.id;
    for (const [kind, track] of Object.entries(tracks)) feed[feedOf(kind)].add(track);
    // On a sendrecv m-line werift routes a PLI by its sender SSRC, which finds this peer's receiver,
    // not its sender (src/rtc/native.ts reads it there too): listen on both.
    const videoT = pc.getTransceivers().find((t) => t.sender.track === tracks.video);
    const onRtcp = (p) => {
      if (isKeyframeRequest(p)) parentPort.postMessage({ pli: feedOf('video') === 'h264' ? 'h264' : 'vp8' });
    };
    videoT?.receiver.onRtcp.subscribe(onRtcp);
    videoT?.sender.onRtcp.subscribe(onRtcp);
    const feeds = Object.fromEntries(Object.keys(tracks).map((k) => [k, feedOf(k)]));
    peers.push({ pc, s, tracks, feeds, bye });
    return { id: location.split('/').pop() };
  }

  parentPort.on('message', async (m) => {
    try {
      let result;
      if (m.cmd === 'join') result = await join(m);
      else if (m.cmd === 'measure') {
        measuring = m.on;
        if (m.on) for (const p of peers) Object.assign(p.s, { frames: 0, audio: 0, lastAudio: 0, maxAudioGapMs: 0, lastFrame: 0, maxFrameGapMs: 0 });
      } else if (m.cmd === 'stats') {
        result = peers.map((p) => ({ frames: p.s.frames, audio: p.s.audio, maxAudioGapMs: Math.round(p.s.maxAudioGapMs), maxFrameGapMs: Math.round(p.s.maxFrameGapMs), video: !!p.tracks.video }));
      } else if (m.cmd === 'leaveAll') {
        const all = peers.splice(0);
        for (const p of all) for (const [kind, track] of Object.entries(p.tracks)) feed[p.feeds[kind]].delete(track);
        await Promise.all(all.map(async (p) => {
          await p.bye();
          await p.pc.close().catch(() => undefined);
        }));
      }
      parentPort.postMessage({ id: m.id, result });
    } catch (err) {
      parentPort.postMessage({ id: m.id, error: String(err?.message ?? err) });
    }
  });
  parentPort.postMessage({ ports: { video: udp.video.port, h264: udp.h264.port, audio: udp.audio.port, silent: udp.silent.port } });
}
