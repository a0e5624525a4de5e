import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { L16_CAPS } from '../media/l16.js';

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

/**
 * Quotes a value for a launch string (file paths may hold spaces, quotes, "!" or newlines):
 * GStreamer's parser takes everything up to the closing quote as the value and drops the
 * backslash before an escaped character. A NUL cannot pass: the launch string is a C string.
 */
export function q(value: string): string {
  if (value.includes('\0')) throw new TypeError('a launch-string value cannot hold a NUL character');
  return `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/**
 * A string property's value: as it is when it is one plain word (the channels' ids are), else
 * quoted, so that no id can end the value and start another property, link or element.
 */
export function word(value: string): string {
  return /^[A-Za-z0-9_-]+$/.test(value) ? value : q(value);
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
  videoJitter: 'vjb',
  audioJitter: 'ajb',
  /** The queue in front of a composite's encoder: the encoder runs in its thread. */
  encoderQueue: 'venq',
  /** A composite's multiudpsink. */
  videoOut: 'vout',
  /** The recorder's appsrc for the recording composite's RTP. */
  videoRtpIn: 'vrtpin',
} as const;

/**
 * The priority of each kind of GStreamer streaming thread (named "element:pad" after the elements
 * above): audio first, then the video that viewers are watching; setup and everything else after.
 */
export const threadRules = (mediaNice: number) => [
  { pattern: /^(mixin|ain|ajb):src$/, nice: mediaNice },
  { pattern: /^(vin|vjb|comp|venq|scale):src$/, nice: Math.round(mediaNice / 2) },
];

/** multiudpsink's `clients`: loopback ports as host:port pairs. */
export const udpClients = (ports: number[]) => ports.map((p) => `127.0.0.1:${p}`).join(',');

const udpSink = (port: number) => `udpsink host=127.0.0.1 port=${port} sync=false async=false`;

export const RAW_AUDIO_CAPS = 'audio/x-raw,format=S16LE,rate=48000,channels=1,layout=interleaved';

export interface IngestSpec {
  video?: { codec: VideoCodec; payloadType: number; channel: string };
  audio?: { codec: AudioCodec; payloadType: number; pcmPort: number };
  /** Mix-minus audio to encode and send back to this participant: it comes from the mixer as
   * RTP L16 on the `mixin` udpsrc (read its port after play), and goes to `rtpPort` as Opus. */
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
        `rtpjitterbuffer name=${EL.videoJitter} latency=60 do-lost=true drop-on-latency=true`,
        p.depayloader,
        p.decoder,
        'videoconvert',
        // intervideosrc renegotiates to exactly these caps when this producer (re)starts: keep them
        // fixed and explicit, or the tile's videoscale gets an unfixed aspect ratio and draws black.
        'video/x-raw,format=I420,pixel-aspect-ratio=1/1,interlace-mode=progressive',
        `intervideosink name=${EL.videoSink} sync=false channel=${word(spec.video.channel)}`,
      ].join(' ! '),
    );
  }
  if (spec.audio) {
    const p = presets.audio[spec.audio.codec];
    parts.push(
      [
        `udpsrc name=${EL.audioIn} address=127.0.0.1 port=0 buffer-size=1048576 caps=${q(`${p.caps},payload=${spec.audio.payloadType}`)}`,
        `rtpjitterbuffer name=${EL.audioJitter} latency=40 do-lost=true drop-on-latency=true`,
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
        `udpsrc name=${EL.mixIn} address=127.0.0.1 port=0 buffer-size=262144 caps=${q(L16_CAPS)}`,
        'rtpL16depay',
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
  /** Loopback ports the encoded video goes to (multiudpsink; changed at run time as followers
   * come and go). */
  rtpPorts: number[];
  /** The RTP SSRC, fresh for each run of the pipeline: receivers tell composites apart by it. */
  ssrc: number;
  /** Seconds between keyframes the encoder makes unasked. Default 10 (viewers ask with PLI). */
  gopSeconds?: number;
  /** Encoder threads. Default 1: with many encoders, one thread each is cheapest. */
  threads?: number;
  /**
   * Every picture shown a fixed time after it reached its channel (to within the frame period),
   * for a recording's lip sync. A one-picture queue behind each tile's source keeps the source
   * from waiting on the compositor, so it takes each picture from its channel at a fixed point of
   * its frame period, not whenever the compositor frees its pad; and the compositor waits a frame
   * longer for its inputs, so a tile scaled a little late is still in time for its own frame
   * instead of showing up one frame later. (Measured: without these, a picture's delay varied by
   * up to two frames from one composite to the next.) The encoder's queue also holds up to a
   * second instead of two pictures, so a busy machine delays pictures rather than dropping them.
   * Costs a thread per tile and some latency, which a recording does not mind.
   */
  steadyTiles?: boolean;
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
    // start-time-selection=first: output timestamps continue the inputs' running time. (With the
    // default, "zero", a live compositor's pictures came out stamped up to a frame ahead of when
    // they were composed, by a different amount each run: measured, 0 to 26 ms.)
    `compositor name=comp background=black start-time-selection=first${spec.steadyTiles ? ` latency=${Math.round(1e9 / spec.fps)}` : ''} ${pads.join(' ')}`,
    raw(spec.width, spec.height),
    ...tiles
      .filter((t) => t.plate)
      .map((t) => `gdkpixbufoverlay location=${q(t.plate!.path)} offset-x=${t.plate!.x} offset-y=${t.plate!.y}`),
    // A viewer wants the newest picture: drop what the encoder cannot keep up with. A recording
    // (steadyTiles) wants every picture, late or not, each with its own timestamp: it queues up
    // to a second before dropping.
    `queue name=${EL.encoderQueue} max-size-buffers=${spec.steadyTiles ? spec.fps : 2} max-size-bytes=0 max-size-time=0 leaky=downstream`,
    fill(p.encoder, {
      bitrate: spec.bitrate,
      kbps: Math.round(spec.bitrate / 1000),
      gop: Math.round(spec.fps * (spec.gopSeconds ?? 10)),
      threads: spec.threads ?? 1,
    }).replace(/^(\w+)/, `$1 name=${EL.videoEnc}`),
    // timestamp-offset=0: the RTP timestamp is the picture's running time at 90 kHz, which is how a
    // recording places each picture on its timeline. (Viewers get rewritten timestamps anyway.)
    `${p.payloader.replace(/^(\w+)/, `$1 name=${EL.videoPay} timestamp-offset=0 ssrc=${spec.ssrc}`)}`,
    `multiudpsink name=${EL.videoOut} clients=${q(udpClients(spec.rtpPorts))} sync=false async=false`,
  ].join(' ! ');

  const branches = tiles.map((t, i) => {
    const src =
      t.source.kind === 'video'
        ? `intervideosrc channel=${word(t.source.channel)} timeout=${spec.inputTimeoutNs}` +
          (spec.steadyTiles ? ' ! queue max-size-buffers=1 max-size-bytes=0 max-size-time=0 leaky=downstream' : '')
        : `filesrc location=${q(t.source.path)} ! pngdec ! imagefreeze is-live=true ! videoconvert`;
    return `${src} ! videoscale ! ${raw(t.width, t.height)} ! comp.sink_${i}`;
  });
  return [head, ...branches].join('  ');
}

export interface ScalerSpec {
  /** The participant's decoded channel, and the channel the scaled picture goes to. */
  source: string;
  channel: string;
  width: number;
  height: number;
  fps: number;
  inputTimeoutNs: bigint;
}

/** One participant's video at one tile size, for every composite that shows it at that size. */
export function scalerLaunch(spec: ScalerSpec): string {
  return [
    `intervideosrc name=scale channel=${word(spec.source)} timeout=${spec.inputTimeoutNs}`,
    'videoscale',
    `video/x-raw,format=I420,width=${spec.width},height=${spec.height},pixel-aspect-ratio=1/1,framerate=${spec.fps}/1`,
    `intervideosink name=out sync=false channel=${word(spec.channel)}`,
  ].join(' ! ');
}

export type RecordingFormat = 'webm' | 'mp4';

export interface RecorderSpec {
  format: RecordingFormat;
  audioBitrate: number;
  file: string;
}

/** The video codec a recording format carries. */
export const recordingCodec = (format: RecordingFormat): VideoCodec => (format === 'webm' ? 'vp8' : 'h264');

/**
 * The recorder: a muxer that lives as long as the recording, so the file is one continuous stream
 * while the composite that feeds it is rebuilt. Both inputs are pushed with their timestamps on
 * the recording's timeline: the composite's encoded video as RTP (its pictures carry the instant
 * they were composed, so no sampling step adds jitter), and the full mix from the mixer. WebM
 * (VP8 + Opus) is written in 1 s clusters, MP4 (H.264 + AAC) in 1 s fragments, so a file cut short
 * by a crash still plays up to its last cluster or fragment.
 * The sources are not live: a live muxer stops waiting for a stream that is late to start (the
 * composite takes a moment to build) and writes a file header without it.
 */
export function recorderLaunch(spec: RecorderSpec, presets: Presets): string {
  const codec = recordingCodec(spec.format);
  const p = presets.video[codec];
  const pt = /\bpt=(\d+)/.exec(p.payloader)?.[1] ?? '96';
  const video = [
    `appsrc name=${EL.videoRtpIn} is-live=false format=time max-bytes=4000000 caps=${q(`${p.caps},payload=${pt}`)}`,
    // A picture with a lost packet is dropped, not written broken: the depayloader waits for the
    // next keyframe (which the recording asks the encoder for).
    p.depayloader,
    ...(codec === 'h264' ? ['h264parse'] : []),
    'queue max-size-buffers=0 max-size-bytes=0 max-size-time=3000000000',
    'mux.',
  ].join(' ! ');
  const audio = [
    `appsrc name=${EL.mixIn} is-live=false format=time max-bytes=960000 caps=${q(RAW_AUDIO_CAPS)}`,
    'audioconvert',
    'audioresample',
    spec.format === 'webm' ? `opusenc bitrate=${spec.audioBitrate}` : `voaacenc bitrate=${spec.audioBitrate} ! aacparse`,
    'queue max-size-buffers=0 max-size-bytes=0 max-size-time=3000000000',
    'mux.',
  ].join(' ! ');
  const mux =
    spec.format === 'webm'
      ? 'webmmux name=mux writing-app=webrtc-mcu min-cluster-duration=1000000000 max-cluster-duration=1000000000'
      : 'mp4mux name=mux fragment-duration=1000';
  return `${mux} ! filesink name=file location=${q(spec.file)} buffer-mode=unbuffered  ${video}  ${audio}`;
}
