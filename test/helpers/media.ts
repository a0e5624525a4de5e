import dgram from 'node:dgram';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import type { RtpPacket } from 'werift';
import { GstPipeline } from '../../src/gst/native.js';
import { LocalUdp } from '../../src/media/localUdp.js';

/** Power of one frequency in a block of samples (Goertzel), in dB relative to full scale. */
export function toneDb(samples: Int16Array, freq: number, rate = 48000): number {
  const k = (2 * Math.PI * freq) / rate;
  const coeff = 2 * Math.cos(k);
  let s1 = 0;
  let s2 = 0;
  for (let i = 0; i < samples.length; i++) {
    const s0 = samples[i] / 32768 + coeff * s1 - s2;
    s2 = s1;
    s1 = s0;
  }
  const power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
  const amplitude = (2 * Math.sqrt(Math.max(power, 1e-20))) / samples.length;
  return 20 * Math.log10(amplitude);
}

export function pcmFrom(buffers: Buffer[]): Int16Array {
  const all = Buffer.concat(buffers);
  const out = new Int16Array(all.length >> 1);
  for (let i = 0; i < out.length; i++) out[i] = all.readInt16LE(i * 2);
  return out;
}

/** A GStreamer VP8 (or H.264) publisher of one solid colour, sending RTP to a port on 127.0.0.1. */
export function colourSender(rgb: [number, number, number], port: number, size = '320x180', codec: 'vp8' | 'h264' = 'vp8'): GstPipeline {
  const [w, h] = size.split('x');
  const argb = (0xff << 24) | (rgb[0] << 16) | (rgb[1] << 8) | rgb[2];
  const enc =
    codec === 'vp8'
      ? 'vp8enc deadline=1 keyframe-max-dist=30 ! rtpvp8pay pt=96'
      : 'x264enc speed-preset=ultrafast tune=zerolatency key-int-max=30 ! video/x-h264,profile=constrained-baseline ! rtph264pay pt=102 config-interval=-1';
  const p = new GstPipeline(
    `videotestsrc is-live=true pattern=solid-color foreground-color=${argb >>> 0} ! video/x-raw,width=${w},height=${h},framerate=30/1 ! ` +
      `${enc} ! udpsink host=127.0.0.1 port=${port} sync=false async=false`,
  );
  p.play();
  return p;
}

/** A GStreamer Opus publisher of one sine tone. */
export function toneSender(freq: number, port: number): GstPipeline {
  const p = new GstPipeline(
    `audiotestsrc is-live=true wave=sine freq=${freq} volume=0.25 ! audio/x-raw,rate=48000,channels=1 ! ` +
      `opusenc ! rtpopuspay pt=111 ! udpsink host=127.0.0.1 port=${port} sync=false async=false`,
  );
  p.play();
  return p;
}

/** Decodes VP8 RTP arriving on a free port into PNG frames in `dir`. Read `port` after creating. */
export function frameGrabber(dir: string, codec: 'vp8' | 'h264' = 'vp8'): { pipeline: GstPipeline; port: number } {
  fs.mkdirSync(dir, { recursive: true });
  const [enc, depay, dec] = codec === 'vp8' ? ['VP8', 'rtpvp8depay', 'vp8dec'] : ['H264', 'rtph264depay', 'avdec_h264'];
  const p = new GstPipeline(
    `udpsrc name=src address=127.0.0.1 port=0 reuse=false caps="application/x-rtp,media=video,clock-rate=90000,encoding-name=${enc}" ! ` +
      `rtpjitterbuffer latency=50 ! ${depay} ! ${dec} ! videoconvert ! video/x-raw,format=RGB ! pngenc compression-level=1 ! ` +
      `multifilesink location=${path.join(dir, 'f%05d.png')} max-files=4`,
  );
  p.play();
  return { pipeline: p, port: Number(p.get('src', 'port')) };
}

/** The newest complete frame in `dir` (the last one may still be being written). */
export async function latestFrame(dir: string): Promise<{ width: number; height: number; px: (x: number, y: number) => number[] }> {
  // The newest file may be half written, and multifilesink deletes old ones as it writes new
  // ones: read the second newest at once, and look again if it went meanwhile (a loaded machine).
  let png: Buffer | undefined;
  for (let attempt = 0; !png; attempt++) {
    const files = fs.readdirSync(dir).filter((f) => f.endsWith('.png')).sort();
    if (files.length < 2) throw new Error(`no complete frame in ${dir} yet`);
    try {
      png = fs.readFileSync(path.join(dir, files[files.length - 2]));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || attempt >= 10) throw err;
    }
  }
  const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return {
    width: info.width,
    height: info.height,
    px: (x: number, y: number) => {
      const i = (Math.round(y) * info.width + Math.round(x)) * 3;
      return [data[i], data[i + 1], data[i + 2]];
    },
  };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export const near = (a: number[], b: number[], tol: number) => a.every((v, i) => Math.abs(v - b[i]) <= tol);

/**
 * What a werift peer hears (its Opus, payload type 111), decoded into PCM by an independent
 * GStreamer pipeline. Returns a function that listens for `ms` and gives the level of each of
 * `freqs` in dBFS. What it opens is closed by `cleanup`.
 */
export async function ears(
  peer: { onRtp: (kind: 'audio', fn: (p: RtpPacket) => void) => void },
  cleanup: Array<() => unknown>,
): Promise<(ms: number, freqs: number[]) => Promise<Record<number, number>>> {
  const pcm: Buffer[] = [];
  const out = await LocalUdp.open((b) => pcm.push(b));
  const dec = new GstPipeline(
    'udpsrc name=src address=127.0.0.1 port=0 reuse=false caps="application/x-rtp,media=audio,clock-rate=48000,encoding-name=OPUS,payload=111" ! ' +
      `rtpjitterbuffer latency=60 ! rtpopusdepay ! opusdec ! audioconvert ! audioresample ! audio/x-raw,format=S16LE,rate=48000,channels=1 ! udpsink host=127.0.0.1 port=${out.port} sync=false`,
  );
  dec.play();
  const port = Number(dec.get('src', 'port'));
  const sock = dgram.createSocket('udp4');
  peer.onRtp('audio', (rtp) => {
    const b = rtp.serialize();
    b[1] = (b[1] & 0x80) | 111;
    sock.send(b, port, '127.0.0.1');
  });
  cleanup.push(() => dec.close(), () => out.close(), () => sock.close());
  return async (ms, freqs) => {
    pcm.length = 0;
    await sleep(ms);
    const samples = pcmFrom(pcm.splice(0));
    if (samples.length <= (48 * ms) / 2) throw new Error(`heard only ${samples.length} samples in ${ms} ms`);
    return Object.fromEntries(freqs.map((f) => [f, toneDb(samples, f)]));
  };
}
