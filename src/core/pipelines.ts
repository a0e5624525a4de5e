import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Pure pipeline descriptions: plain data in, GStreamer launch strings out.
 * Nothing here touches GStreamer; src/gst/native.ts runs what these functions return.
 */

export type VideoCodec = 'vp8' | 'h264';
export type AudioCodec = 'opus';

export interface CodecPreset {
  encoder: string;
  payloader: string;
  depayloader: string;
  decoder: string;
  caps: string;
}

export interface Presets {
  video: Record<VideoCodec, CodecPreset>;
  audio: Record<AudioCodec, CodecPreset>;
}

export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export function loadPresets(file = path.join(PROJECT_ROOT, 'pipelines', 'presets.json')): Presets {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as Presets;
}

/** Quotes a value for a launch string (file paths may hold spaces). */
export function q(value: string): string {
  return `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

function fill(template: string, vars: Record<string, string | number>): string {
  return template.replace(/\{(\w+)\}/g, (m, k: string) => (k in vars ? String(vars[k]) : m));
}

/** Names of elements that the runtime finds with findChild. */
export const EL = {
  videoIn: 'vin',
  audioIn: 'ain',
  mixIn: 'mixin',
  /** The decoded-video sink of a participant; its `stats` count frames decoded. */
  videoSink: 'vsink',
  /** The payloader after a video encoder: forceKeyUnit on it travels upstream to the encoder. */
  videoPay: 'vpay',
  videoEnc: 'venc',
  audioEnc: 'aenc',
} as const;

const udpSink = (port: number) => `udpsink host=127.0.0.1 port=${port} sync=false async=false`;

export const RAW_AUDIO_CAPS = 'audio/x-raw,format=S16LE,rate=48000,channels=1,layout=interleaved';

export interface IngestSpec {
  video?: { codec: VideoCodec; payloadType: number; channel: string };
  audio?: { codec: AudioCodec; payloadType: number; pcmPort: number };
  /** Mix-minus audio to encode and send back to this participant. */
  mix?: { codec: AudioCodec; bitrate: number; rtpPort: number };
}

/**
 * One pipeline per participant: RTP comes in on udpsrc (bound to a free port on 127.0.0.1; read its
 * `port` after play), decode its video once into an inter-pipeline channel that every
 * composite reads, decode its audio once into PCM for the mixer, and encode the mix it hears.
 */
export function participantLaunch(spec: IngestSpec, presets: Presets): string {
  const parts: string[] = [];
  if (spec.video) {
    const p = presets.video[spec.video.codec];
    parts.push(
      [
        `udpsrc name=${EL.videoIn} address=127.0.0.1 port=0 buffer-size=4194304 caps=${q(`${p.caps},payload=${spec.video.payloadType}`)}`,
        'rtpjitterbuffer latency=60 do-lost=true drop-on-latency=true',
        p.depayloader,
        p.decoder,
        'videoconvert',
        // intervideosrc renegotiates to exactly these caps when this producer (re)starts: keep them
        // fixed and explicit, or the tile's videoscale gets an unfixed aspect ratio and draws black.
        'video/x-raw,format=I420,pixel-aspect-ratio=1/1,interlace-mode=progressive',
        `intervideosink name=${EL.videoSink} sync=false channel=${spec.video.channel}`,
      ].join(' ! '),
    );
  }
  if (spec.audio) {
    const p = presets.audio[spec.audio.codec];
    parts.push(
      [
        `udpsrc name=${EL.audioIn} address=127.0.0.1 port=0 buffer-size=1048576 caps=${q(`${p.caps},payload=${spec.audio.payloadType}`)}`,
        'rtpjitterbuffer latency=40 do-lost=true drop-on-latency=true',
        p.depayloader,
        p.decoder,
        'audioconvert',
        'audioresample',
        RAW_AUDIO_CAPS,
        udpSink(spec.audio.pcmPort),
      ].join(' ! '),
    );
  }
  if (spec.mix) {
    const p = presets.audio[spec.mix.codec];
    parts.push(
      [
        `appsrc name=${EL.mixIn} is-live=true format=time max-bytes=192000 caps=${q(RAW_AUDIO_CAPS)}`,
        'audioconvert',
        fill(p.encoder, { bitrate: spec.mix.bitrate }).replace(/^opusenc/, `opusenc name=${EL.audioEnc}`),
        p.payloader,
        udpSink(spec.mix.rtpPort),
      ].join(' ! '),
    );
  }
  return parts.join('  ');
}

export type TileSource = { kind: 'video'; channel: string } | { kind: 'image'; path: string };

export interface CompositeTile {
  x: number;
  y: number;
  width: number;
  height: number;
  source: TileSource;
  /** A name plate PNG drawn over the tile at (x, y) of the canvas. */
  plate?: { path: string; x: number; y: number };
}

export interface CompositeSpec {
  width: number;
  height: number;
  fps: number;
  codec: VideoCodec;
  bitrate: number;
  tiles: CompositeTile[];
  /** Shown full-canvas when there are no tiles, so the output never stops. */
  background: string;
  /** A video input silent this long turns black in intervideosrc; we switch to the placeholder first. */
  inputTimeoutNs: bigint;
  rtpPort: number;
  /** Instead of encoding, hand the raw picture to this inter-pipeline channel (a recording's view). */
  rawChannel?: string;
}

/**
 * One composite: each tile is scaled by its own videoscale (cheaper than compositor pad scaling),
 * with pixel-aspect-ratio=1/1 so compositor does not convert twice, on a black background.
 */
export function compositeLaunch(spec: CompositeSpec, presets: Presets): string {
  const p = presets.video[spec.codec];
  const raw = (w: number, h: number) =>
    `video/x-raw,format=I420,width=${w},height=${h},pixel-aspect-ratio=1/1,framerate=${spec.fps}/1`;
  const tiles: Array<CompositeTile> =
    spec.tiles.length > 0
      ? spec.tiles
      : [{ x: 0, y: 0, width: spec.width, height: spec.height, source: { kind: 'image', path: spec.background } }];

  const pads = tiles.map((t, i) => `sink_${i}::xpos=${t.x} sink_${i}::ypos=${t.y} sink_${i}::zorder=${i + 1}`);
  const head = [
    `compositor name=comp background=black ${pads.join(' ')}`,
    raw(spec.width, spec.height),
    ...tiles
      .filter((t) => t.plate)
      .map((t) => `gdkpixbufoverlay location=${q(t.plate!.path)} offset-x=${t.plate!.x} offset-y=${t.plate!.y}`),
    ...(spec.rawChannel
      ? [`intervideosink sync=false channel=${spec.rawChannel}`]
      : [
          'queue max-size-buffers=2 max-size-bytes=0 max-size-time=0 leaky=downstream',
          fill(p.encoder, { bitrate: spec.bitrate, kbps: Math.round(spec.bitrate / 1000), gop: spec.fps * 10 }).replace(/^(\w+)/, `$1 name=${EL.videoEnc}`),
          `${p.payloader.replace(/^(\w+)/, `$1 name=${EL.videoPay}`)}`,
          udpSink(spec.rtpPort),
        ]),
  ].join(' ! ');

  const branches = tiles.map((t, i) => {
    const src =
      t.source.kind === 'video'
        ? `intervideosrc channel=${t.source.channel} timeout=${spec.inputTimeoutNs}`
        : `filesrc location=${q(t.source.path)} ! pngdec ! imagefreeze is-live=true ! videoconvert`;
    return `${src} ! videoscale ! ${raw(t.width, t.height)} ! comp.sink_${i}`;
  });
  return [head, ...branches].join('  ');
}

export type RecordingFormat = 'webm' | 'mp4';

export interface RecorderSpec {
  format: RecordingFormat;
  /** The recording's composite writes its picture here. */
  channel: string;
  width: number;
  height: number;
  fps: number;
  videoBitrate: number;
  audioBitrate: number;
  file: string;
}

/**
 * The recorder: one pipeline that lives as long as the recording, so the file is one continuous
 * stream while the composite in front of it is rebuilt. The picture comes from the recording's
 * channel (repeated if the composite is being swapped, never black), the full mix from the mixer
 * with exact timestamps. WebM (VP8 + Opus) is written in 1 s clusters, MP4 (H.264 + AAC) in 1 s
 * fragments, so a file cut short by a crash still plays up to its last cluster or fragment.
 */
export function recorderLaunch(spec: RecorderSpec): string {
  const video = [
    `intervideosrc channel=${spec.channel} timeout=18446744073709551614`,
    // intervideosrc starts on default caps and renegotiates when the composite arrives, and again
    // whenever a composite is swapped in; muxers refuse caps changes, so pin every field here.
    'videoconvert',
    'videoscale',
    `video/x-raw,format=I420,width=${spec.width},height=${spec.height},pixel-aspect-ratio=1/1,framerate=${spec.fps}/1,interlace-mode=progressive,colorimetry=bt601`,
    // Leaky: when the encoder cannot keep up, pictures are dropped and the timeline stays true to
    // the clock (a blocking queue would stall intervideosrc and slow the whole timeline down).
    'queue max-size-buffers=5 max-size-bytes=0 max-size-time=0 leaky=downstream',
    spec.format === 'webm'
      ? `vp8enc deadline=1 cpu-used=-6 threads=2 end-usage=cbr lag-in-frames=0 target-bitrate=${spec.videoBitrate} keyframe-max-dist=${spec.fps * 2}`
      : `x264enc speed-preset=ultrafast tune=zerolatency threads=2 bitrate=${Math.round(spec.videoBitrate / 1000)} key-int-max=${spec.fps * 2} ! video/x-h264,profile=constrained-baseline ! h264parse`,
    'queue',
    'mux.',
  ].join(' ! ');
  const audio = [
    `appsrc name=${EL.mixIn} is-live=true format=time max-bytes=960000 caps=${q(RAW_AUDIO_CAPS)}`,
    'audioconvert',
    'audioresample',
    spec.format === 'webm' ? `opusenc bitrate=${spec.audioBitrate}` : `voaacenc bitrate=${spec.audioBitrate} ! aacparse`,
    'queue',
    'mux.',
  ].join(' ! ');
  const mux =
    spec.format === 'webm'
      ? 'webmmux name=mux writing-app=webrtc-mcu min-cluster-duration=1000000000 max-cluster-duration=1000000000'
      : 'mp4mux name=mux fragment-duration=1000';
  return `${mux} ! filesink name=file location=${q(spec.file)} buffer-mode=unbuffered  ${video}  ${audio}`;
}
