import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import type { ImpairedLink } from './impairedLink.js';
import { joinToken } from './server.js';

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-ui-for-media-stream',
  '--use-fake-device-for-media-stream',
  '--allow-loopback-in-peer-connection',
  '--autoplay-policy=no-user-gesture-required',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
  '--disable-background-timer-throttling',
  '--disable-renderer-backgrounding',
  '--disable-backgrounding-occluded-windows',
];

export async function launchBrowser(extraArgs: string[] = []): Promise<Browser> {
  return chromium.launch({ executablePath: path.resolve(import.meta.dirname, 'chromium.sh'), args: [...CHROMIUM_ARGS, ...extraArgs], headless: true });
}

export interface SyntheticPeer {
  page: Page;
  id: string;
  location: string;
  name: string;
  color: [number, number, number];
  freq: number;
  /** The join token it joined with. */
  token: string;
}

export interface JoinOptions {
  room: string;
  name: string;
  color: [number, number, number];
  /** Tone the peer sends, in Hz. */
  freq: number;
  codec?: 'vp8' | 'h264';
  /** Offer only this audio codec (default: the browser's list, Opus first). */
  audioCodec?: 'pcmu' | 'pcma';
  direction?: RTCRtpTransceiverDirection;
  video?: boolean;
  /** Draw the received video in a <video> element (default). Without it the page only times the
   * frames it receives (MediaStreamTrackProcessor), which costs a headless browser far less than
   * drawing in software; pixel sampling then has nothing to sample. */
  render?: boolean;
  /** The join token (default: a fresh participant token for the room). */
  token?: string;
  /** Extra query parameters for the join, e.g. "maxWidth=320&maxHeight=180&maxFps=15". */
  query?: string;
  /** Connects only through the TURN servers the server announces, over this transport. */
  relayOnly?: 'tcp' | 'udp';
  /** Sends video no encoder can squeeze (noise in its bottom third), so that its composites need all their bitrate. */
  busy?: boolean;
  /** Join through this link that misbehaves (test/helpers/impairedLink.ts): the answer's candidates move to it. */
  link?: ImpairedLink;
}

/**
 * Joins a room from a page: a canvas of one colour as the camera, an oscillator as the microphone.
 * The page keeps the remote stream in a <video> and an AnalyserNode, and exposes helpers on
 * window.mcuTest to sample pixels, read the spectrum and read getStats().
 */
export async function joinSynthetic(browser: Browser, baseUrl: string, opts: JoinOptions): Promise<SyntheticPeer> {
  const page = await browser.newPage();
  page.on('pageerror', (e) => console.error(`[page ${opts.name}]`, e.message));
  await page.goto(baseUrl + '/');
  const token = opts.token ?? (await joinToken(opts.room));
  if (opts.link) {
    const link = opts.link;
    await page.exposeFunction('mcuRewriteAnswer', (sdp: string) => link.rewriteAnswer(sdp));
  }
  const result = await page.evaluate(async (o) => {
    const w = window as any;
    const ctx = new AudioContext();
    await ctx.resume();
    const tracks: MediaStreamTrack[] = [];
    let audioTrack: MediaStreamTrack | undefined;
    if (o.direction !== 'recvonly') {
      const osc = ctx.createOscillator();
      osc.frequency.value = o.freq;
      const gain = ctx.createGain();
      gain.gain.value = 0.3;
      const dest = ctx.createMediaStreamDestination();
      osc.connect(gain).connect(dest);
      osc.start();
      audioTrack = dest.stream.getAudioTracks()[0];
    }
    let videoTrack: MediaStreamTrack | undefined;
    if (o.direction !== 'recvonly' && o.video !== false) {
      const canvas = document.createElement('canvas');
      // 320x180 at 15 fps: light on the shared test machine; the server still sends 640x360 at 30 fps.
      canvas.width = 320;
      canvas.height = 180;
      const g = canvas.getContext('2d')!;
      let n = 0;
      const paint = () => {
        g.fillStyle = `rgb(${o.color.join(',')})`;
        g.fillRect(0, 0, 320, 180);
        // A small moving square keeps the encoder busy like a real camera would.
        g.fillStyle = 'rgb(128,128,128)';
        g.fillRect((n++ * 4) % 300, 4, 6, 6);
        // Busy: random blocks in the bottom third (the tile's centre keeps its colour), which no
        // encoder can squeeze: the composite then needs all of its bitrate, as a real camera's does.
        if (o.busy) {
          for (let y = 124; y < 180; y += 4) {
            for (let x = 0; x < 320; x += 4) {
              const v = (Math.random() * 255) | 0;
              g.fillStyle = `rgb(${v},${255 - v},${(v * 7) & 255})`;
              g.fillRect(x, y, 4, 4);
            }
          }
        }
      };
      paint();
      w.__paint = setInterval(paint, 66);
      videoTrack = (canvas as any).captureStream(15).getVideoTracks()[0];
    }
    void tracks;
    // Relay only: the ICE servers the server announces (RFC 9725: Link headers on OPTIONS), TCP ones.
    let pcConfig: RTCConfiguration = { iceServers: [] };
    if (o.relayOnly) {
      const opt = await fetch(`/v1/rooms/${o.room}/participants`, { method: 'OPTIONS', headers: { Authorization: `Bearer ${o.token}` } });
      const servers = (opt.headers.get('Link') ?? '')
        .split(/,\s*(?=<)/)
        .map((l) => {
          const url = /^<([^>]+)>/.exec(l)?.[1] ?? '';
          const param = (k: string) => new RegExp(`;\\s*${k}="((?:[^"\\\\]|\\\\.)*)"`).exec(l)?.[1]?.replace(/\\(.)/g, '$1');
          return { urls: url, username: param('username'), credential: param('credential') };
        })
        .filter((x) => x.urls.includes(`transport=${o.relayOnly}`));
      if (!servers.length) throw new Error(`no ICE server with transport=${o.relayOnly} in ${opt.headers.get('Link')}`);
      pcConfig = { iceServers: servers, iceTransportPolicy: 'relay' };
    }
    const pc = new RTCPeerConnection(pcConfig);
    const dir = o.direction ?? 'sendrecv';
    const at = pc.addTransceiver(audioTrack ?? 'audio', { direction: audioTrack ? dir : 'recvonly' });
    if (o.audioCodec) {
      const caps = RTCRtpReceiver.getCapabilities('audio')!.codecs;
      at.setCodecPreferences(caps.filter((c) => c.mimeType.toLowerCase() === `audio/${o.audioCodec}`));
    }
    const vt = pc.addTransceiver(videoTrack ?? 'video', { direction: videoTrack ? dir : 'recvonly' });
    if (o.codec === 'h264') {
      const caps = RTCRtpReceiver.getCapabilities('video')!.codecs;
      vt.setCodecPreferences(caps.filter((c) => /h264/i.test(c.mimeType) && /packetization-mode=1/.test(c.sdpFmtpLine ?? '') && /42e01f/.test(c.sdpFmtpLine ?? '')));
    }
    const presented: number[] = [];
    const remote = new MediaStream();
    const video = document.createElement('video');
    video.muted = true;
    video.autoplay = true;
    (video as any).playsInline = true;
    document.body.appendChild(video);
    const audioEl = document.createElement('audio');
    audioEl.muted = true;
    audioEl.autoplay = true;
    document.body.appendChild(audioEl);
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 8192;
    analyser.smoothingTimeConstant = 0.5;
    pc.ontrack = (e) => {
      remote.addTrack(e.track);
      if (e.track.kind === 'video' && o.render !== false) video.srcObject = new MediaStream([e.track]);
      if (e.track.kind === 'video' && o.render === false) {
        const reader = new (w.MediaStreamTrackProcessor)({ track: e.track }).readable.getReader();
        const pump = async () => {
          for (;;) {
            const { value, done } = await reader.read();
            if (done) return;
            presented.push(performance.now());
            if (presented.length > 6000) presented.splice(0, 3000);
            value.close();
          }
        };
        void pump();
      }
      if (e.track.kind === 'audio') {
        const s = new MediaStream([e.track]);
        audioEl.srcObject = s; // Chromium feeds WebAudio from a remote track only while an element plays it
        ctx.createMediaStreamSource(s).connect(analyser);
      }
    };
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise<void>((r) => {
      if (pc.iceGatheringState === 'complete') return r();
      pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && r();
      setTimeout(r, 3000);
    });
    const url = `/v1/rooms/${o.room}/participants?name=${encodeURIComponent(o.name)}${o.query ? `&${o.query}` : ''}`;
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${o.token}` },
      // Through a link: the server learns the page's address from the link's own sockets only.
      body: o.viaLink ? pc.localDescription!.sdp.replace(/^a=candidate:.*\r?\n/gm, '') : pc.localDescription!.sdp,
    });
    if (res.status !== 201) throw new Error(`join failed ${res.status}: ${await res.text()}`);
    const location = res.headers.get('Location')!;
    const answer = await res.text();
    await pc.setRemoteDescription({ type: 'answer', sdp: o.viaLink ? await w.mcuRewriteAnswer(answer) : answer });
    const sampler = document.createElement('canvas');
    // When each frame of the remote video was presented (or, not drawn, delivered), for the
    // largest gap a person saw.
    const onFrame = (now: number) => {
      presented.push(now);
      if (presented.length > 6000) presented.splice(0, 3000);
      (video as any).requestVideoFrameCallback(onFrame);
    };
    if (o.render !== false) (video as any).requestVideoFrameCallback(onFrame);
    w.mcuTest = {
      pc,
      video,
      size: () => [video.videoWidth, video.videoHeight],
      /** Mean RGB of a 9x9 block around (x, y) in the video's own pixels. */
      sample(x: number, y: number) {
        sampler.width = video.videoWidth;
        sampler.height = video.videoHeight;
        const g = sampler.getContext('2d', { willReadFrequently: true })!;
        g.drawImage(video, 0, 0);
        const d = g.getImageData(Math.max(0, x - 4), Math.max(0, y - 4), 9, 9).data;
        const sum = [0, 0, 0];
        for (let i = 0; i < d.length; i += 4) for (let c = 0; c < 3; c++) sum[c] += d[i + c];
        return sum.map((v) => Math.round(v / (d.length / 4)));
      },
      /** Peak level in dB around each frequency. */
      levels(freqs: number[]) {
        const bins = new Float32Array(analyser.frequencyBinCount);
        analyser.getFloatFrequencyData(bins);
        const hz = ctx.sampleRate / analyser.fftSize;
        return freqs.map((f) => {
          const c = Math.round(f / hz);
          let m = -Infinity;
          for (let i = c - 3; i <= c + 3; i++) m = Math.max(m, bins[i]);
          return m;
        });
      },
      async videoStats() {
        const r = await pc.getStats();
        let out: any = null;
        r.forEach((s: any) => {
          if (s.type === 'inbound-rtp' && s.kind === 'video') out = { framesDecoded: s.framesDecoded ?? 0, freezeCount: s.freezeCount ?? 0, framesPerSecond: s.framesPerSecond ?? 0, frameWidth: s.frameWidth, frameHeight: s.frameHeight, framesReceived: s.framesReceived ?? 0, codecId: s.codecId, packetsLost: s.packetsLost ?? 0, nackCount: s.nackCount ?? 0, pliCount: s.pliCount ?? 0, keyFramesDecoded: s.keyFramesDecoded ?? 0, framesDropped: s.framesDropped ?? 0 };
        });
        return out;
      },
      state: () => pc.connectionState,
      /** The candidate pair in use: its local candidate's type and, for a relay, how the page reaches the relay. */
      async route() {
        const r = await pc.getStats();
        let pair: any;
        r.forEach((x: any) => {
          if (x.type === 'transport' && x.selectedCandidatePairId) pair = r.get(x.selectedCandidatePairId);
        });
        const local = pair && r.get(pair.localCandidateId);
        return local ? { type: local.candidateType, relayProtocol: local.relayProtocol, protocol: local.protocol } : null;
      },
      now: () => performance.now(),
      /** Frames presented since `from` (page clock) and the largest gap between them, up to now. */
      presented(from: number) {
        const t = presented.filter((x) => x >= from);
        let gap = t.length ? performance.now() - t[t.length - 1] : performance.now() - from;
        for (let i = 1; i < t.length; i++) gap = Math.max(gap, t[i] - t[i - 1]);
        return { frames: t.length, maxGapMs: Math.round(gap) };
      },
      async audioStats() {
        const r = await pc.getStats();
        let out: any = null;
        r.forEach((s: any) => {
          if (s.type === 'inbound-rtp' && s.kind === 'audio') out = { concealmentEvents: s.concealmentEvents ?? 0, concealedSamples: s.concealedSamples ?? 0, silentConcealedSamples: s.silentConcealedSamples ?? 0, totalSamplesReceived: s.totalSamplesReceived ?? 0 };
        });
        return out;
      },
    };
    return { location };
  }, { ...opts, link: undefined, viaLink: !!opts.link, token });
  const id = result.location.split('/').pop()!;
  return { page, id, location: result.location, name: opts.name, color: opts.color, freq: opts.freq, token };
}

export async function waitFor<T>(fn: () => Promise<T>, pred: (v: T) => boolean, timeoutMs: number, what: string): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: T | undefined;
  while (Date.now() < end) {
    last = await fn();
    if (pred(last)) return last;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last value: ${JSON.stringify(last)}`);
}
