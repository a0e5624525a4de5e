import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { L16_CAPS } from '../media/l16.js';
import { CODECS, el, type AudioCodec, type Codec, type Presets, type VideoCodec } from './codecs.js';

/**
 * Pure pipeline descriptions: plain data in, GStreamer launch strings out.
 * Nothing here touches GStreamer; src/gst/native.ts runs what these functions return.
 * A pipeline is described as typed elements and caps (codec presets in ./codecs.ts), and one small
 * renderer below writes them out: every value through q() or word(), so no value can end a
 * property and start another property, link or element.
 */

export type { AudioCodec, AudioCodecPreset, Codec, EncodeOptions, PayloadOptions, Presets, VideoCodec, VideoCodecPreset } from './codecs.js';

export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The codec table pipelines are built from (typed data in ./codecs.ts; nothing is read from disk). */
export function loadPresets(): Presets {
  return CODECS;
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

/** Caps: a media type and its fields, e.g. `video/x-raw,format=I420,width=640`. */
export interface Caps {
  type: string;
  fields?: Record<string, string | number>;
}

/** A string value that is always quoted (q()): a file path, a list. */
export interface Quoted {
  quoted: string;
}

/** A value of this code's own written as it is though it is not one plain word (an IP address). */
export interface Bare {
  bare: string;
}

/**
 * A property's value. A string is written through word() (enum nicks and ids stay as they are when
 * they are one plain word); caps as a property value are quoted; numbers and booleans as they are.
 */
export type Value = string | number | boolean | bigint | Caps | Quoted | Bare;

/** An element's properties, written in this order; an undefined one is left out. */
export type Props = Record<string, Value | undefined>;

export interface Element {
  factory: string;
  name?: string;
  props?: Props;
}

/** A link to a named element: to one of its pads (`comp.sink_0`) or to whichever fits (`mux.`). */
export interface PadRef {
  element: string;
  pad?: string;
}

/** One step of a chain. */
export type Link = Element | Caps | PadRef;

export const quoted = (value: string): Quoted => ({ quoted: value });
export const bare = (value: string): Bare => ({ bare: value });
export const padRef = (element: string, pad?: string): PadRef => ({ element, pad });

const TOKEN = /^[A-Za-z][A-Za-z0-9_:-]*$/;
const CAPS_TYPE = /^[a-z-]+\/[A-Za-z0-9.+-]+$/;
const CAPS_VALUE = /^[A-Za-z0-9_./+-]+$/;

function check(ok: boolean, what: string, value: string): void {
  if (!ok) throw new TypeError(`not a valid ${what} for a launch string: ${JSON.stringify(value)}`);
}

/** Caps as text: `type,field=value,...`. The fields are this code's own constants and numbers. */
export function renderCaps(c: Caps): string {
  check(CAPS_TYPE.test(c.type), 'caps type', c.type);
  const fields = Object.entries(c.fields ?? {}).map(([k, v]) => {
    check(TOKEN.test(k), 'caps field', k);
    check(CAPS_VALUE.test(String(v)), 'caps value', String(v));
    return `${k}=${v}`;
  });
  return [c.type, ...fields].join(',');
}

/** Parses caps text of the form renderCaps() writes (no quoting, no nested structures). */
export function parseCaps(text: string): Caps {
  const [type, ...rest] = text.split(',');
  const fields = Object.fromEntries(
    rest.map((f) => {
      const i = f.indexOf('=');
      check(i > 0, 'caps field', f);
      return [f.slice(0, i), f.slice(i + 1)];
    }),
  );
  const c: Caps = rest.length > 0 ? { type, fields } : { type };
  renderCaps(c);
  return c;
}

/** The caps with more fields (or some replaced), in the same order. */
export const withFields = (c: Caps, fields: Record<string, string | number>): Caps => ({ ...c, fields: { ...c.fields, ...fields } });

function isCaps(v: object): v is Caps {
  return 'type' in v;
}

function renderValue(v: Value): string {
  switch (typeof v) {
    case 'string':
      return word(v);
    case 'number':
      check(Number.isFinite(v), 'number', String(v));
      return String(v);
    case 'bigint':
    case 'boolean':
      return String(v);
  }
  if ('quoted' in v) return q(v.quoted);
  if ('bare' in v) {
    check(/^[A-Za-z0-9_.:/+-]+$/.test(v.bare), 'bare value', v.bare);
    return v.bare;
  }
  return q(renderCaps(v));
}

/** `factory name=... key=value ...` */
export function renderElement(e: Element): string {
  check(/^[A-Za-z][A-Za-z0-9_-]*$/.test(e.factory), 'element factory', e.factory);
  const props = Object.entries(e.props ?? {})
    .filter((kv): kv is [string, Value] => kv[1] !== undefined)
    .map(([k, v]) => {
      check(TOKEN.test(k), 'property name', k);
      return `${k}=${renderValue(v)}`;
    });
  return [e.factory, ...(e.name !== undefined ? [`name=${word(e.name)}`] : []), ...props].join(' ');
}

export function render(l: Link): string {
  if ('factory' in l) return renderElement(l);
  if (isCaps(l)) return renderCaps(l);
  check(TOKEN.test(l.element) && (l.pad === undefined || TOKEN.test(l.pad)), 'pad reference', `${l.element}.${l.pad ?? ''}`);
  return `${l.element}.${l.pad ?? ''}`;
}

/** `a ! b ! c`: links in order (nested lists are flattened). */
export function chain(...links: Array<Link | Link[]>): string {
  return links.flat().map(render).join(' ! ');
}

/** Separate chains of one pipeline. */
export const branches = (...chains: string[]): string => chains.join('  ');

/** The RTP caps of a codec's stream with its payload type. */
export const rtpCaps = (codec: Codec, payloadType: number): Caps => withFields(codec.caps, { payload: payloadType });

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
  /** A room's shared mix's multiudpsink. */
  audioOut: 'aout',
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

/** The threads' sockets a multiudpsink sends to, once each and in order: from its followers' ports. */
export const distinctPorts = (ports: Iterable<number>): number[] => [...new Set(ports)].sort((a, b) => a - b);

const LOOPBACK = bare('127.0.0.1');

const udpSink = (port: number) => el('udpsink', { host: LOOPBACK, port, sync: false, async: false });

/**
 * A udpsrc on a free loopback port (read its `port` after play) for RTP of these caps. reuse=false:
 * with SO_REUSEADDR (udpsrc's default) Linux's port-0 bind may hand out a port that another
 * reusing socket already holds (measured: 155 of 3000 such binds landed on a taken port), and the
 * later socket then takes the earlier one's packets: two participants' pipelines could swap or lose
 * each other's media. Without it the kernel only gives a port that nobody holds.
 */
const udpSrc = (name: string, bufferSize: number, caps: Caps) =>
  el('udpsrc', { address: LOOPBACK, port: 0, reuse: false, 'buffer-size': bufferSize, caps }, name);

/** The PCM the mixer takes and gives: mono S16LE at 48 kHz. */
export const RAW_AUDIO: Caps = { type: 'audio/x-raw', fields: { format: 'S16LE', rate: 48000, channels: 1, layout: 'interleaved' } };
export const RAW_AUDIO_CAPS = renderCaps(RAW_AUDIO);

export interface IngestSpec {
  video?: { codec: VideoCodec; payloadType: number; channel: string };
  audio?: { codec: AudioCodec; payloadType: number; pcmPort: number };
  /** Mix-minus audio to encode and send back to this participant: it comes from the mixer as
   * RTP L16 on the `mixin` udpsrc (read its port after play), and goes to `rtpPort` in `codec`,
   * with `payloadType` (default: the codec's own, e.g. 111 for Opus, 0 PCMU, 8 PCMA, 9 G.722).
   * `bitrate` is the Opus bitrate; G.711 and G.722 have a fixed one (64 kbit/s). */
  mix?: { codec: AudioCodec; bitrate: number; rtpPort: number; payloadType?: number };
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
      chain(
        udpSrc(EL.videoIn, 4194304, rtpCaps(p, spec.video.payloadType)),
        el('rtpjitterbuffer', { latency: 60, 'do-lost': true, 'drop-on-latency': true }, EL.videoJitter),
        p.depayloader(),
        p.decoder(),
        el('videoconvert'),
        // intervideosrc renegotiates to exactly these caps when this producer (re)starts: keep them
        // fixed and explicit, or the tile's videoscale gets an unfixed aspect ratio and draws black.
        { type: 'video/x-raw', fields: { format: 'I420', 'pixel-aspect-ratio': '1/1', 'interlace-mode': 'progressive' } },
        el('intervideosink', { sync: false, channel: spec.video.channel }, EL.videoSink),
      ),
    );
  }
  if (spec.audio) {
    const p = presets.audio[spec.audio.codec];
    parts.push(
      chain(
        udpSrc(EL.audioIn, 1048576, rtpCaps(p, spec.audio.payloadType)),
        el('rtpjitterbuffer', { latency: 40, 'do-lost': true, 'drop-on-latency': true }, EL.audioJitter),
        p.depayloader(),
        p.decoder(),
        el('audioconvert'),
        el('audioresample'),
        RAW_AUDIO,
        udpSink(spec.audio.pcmPort),
      ),
    );
  }
  if (spec.mix) {
    const p = presets.audio[spec.mix.codec];
    parts.push(
      chain(
        udpSrc(EL.mixIn, 262144, parseCaps(L16_CAPS)),
        el('rtpL16depay'),
        el('audioconvert'),
        p.encoder({ bitrate: spec.mix.bitrate, name: EL.audioEnc }),
        p.payloader({ pt: spec.mix.payloadType }),
        udpSink(spec.mix.rtpPort),
      ),
    );
  }
  return branches(...parts);
}

/**
 * A room's shared mix: what every listener outside the mixed talkers hears (they are not in it, so
 * it is their mix-minus too), encoded once. It comes from the mixer as RTP L16 on the `mixin` udpsrc
 * and goes with `ssrc` to the sockets in `rtpPorts` (one in each RTC worker with listeners), where
 * each listener's peer takes it.
 */
export interface SharedMixSpec {
  codec: AudioCodec;
  bitrate: number;
  ssrc: number;
  rtpPorts: number[];
}

export function sharedMixLaunch(spec: SharedMixSpec, presets: Presets): string {
  const p = presets.audio[spec.codec];
  return chain(
    udpSrc(EL.mixIn, 262144, parseCaps(L16_CAPS)),
    el('rtpL16depay'),
    el('audioconvert'),
    p.encoder({ bitrate: spec.bitrate, name: EL.audioEnc }),
    p.payloader({ props: { ssrc: spec.ssrc } }),
    el('multiudpsink', { clients: quoted(udpClients(spec.rtpPorts)), sync: false, async: false }, EL.audioOut),
  );
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
  const raw = (w: number, h: number): Caps => ({
    type: 'video/x-raw',
    fields: { format: 'I420', width: w, height: h, 'pixel-aspect-ratio': '1/1', framerate: `${spec.fps}/1` },
  });
  const tiles: Array<CompositeTile> =
    spec.tiles.length > 0
      ? spec.tiles
      : [{ x: 0, y: 0, width: spec.width, height: spec.height, source: { kind: 'image', path: spec.background } }];

  const pads: Props = Object.fromEntries(
    tiles.flatMap((t, i) => [
      [`sink_${i}::xpos`, t.x],
      [`sink_${i}::ypos`, t.y],
      [`sink_${i}::zorder`, i + 1],
    ]),
  );
  const pay = p.payloader({
    name: EL.videoPay,
    // timestamp-offset=0: the RTP timestamp is the picture's running time at 90 kHz, which is how a
    // recording places each picture on its timeline. (Viewers get rewritten timestamps anyway.)
    props: { 'timestamp-offset': 0, ssrc: spec.ssrc },
  });
  const head = chain(
    // start-time-selection=first: output timestamps continue the inputs' running time. (With the
    // default, "zero", a live compositor's pictures came out stamped up to a frame ahead of when
    // they were composed, by a different amount each run: measured, 0 to 26 ms.)
    el(
      'compositor',
      { background: 'black', 'start-time-selection': 'first', latency: spec.steadyTiles ? Math.round(1e9 / spec.fps) : undefined, ...pads },
      'comp',
    ),
    raw(spec.width, spec.height),
    tiles.flatMap((t) => (t.plate ? [el('gdkpixbufoverlay', { location: quoted(t.plate.path), 'offset-x': t.plate.x, 'offset-y': t.plate.y })] : [])),
    // A viewer wants the newest picture: drop what the encoder cannot keep up with. A recording
    // (steadyTiles) wants every picture, late or not, each with its own timestamp: it queues up
    // to a second before dropping.
    queue(spec.steadyTiles ? spec.fps : 2, EL.encoderQueue),
    p.encoder({
      bitrate: spec.bitrate,
      gop: Math.round(spec.fps * (spec.gopSeconds ?? 10)),
      threads: spec.threads ?? 1,
      name: EL.videoEnc,
    }),
    pay,
    el('multiudpsink', { clients: quoted(udpClients(spec.rtpPorts)), sync: false, async: false }, EL.videoOut),
  );

  const branchesOfTiles = tiles.map((t, i) => {
    const src: Link[] =
      t.source.kind === 'video'
        ? [el('intervideosrc', { channel: t.source.channel, timeout: spec.inputTimeoutNs }), ...(spec.steadyTiles ? [queue(1)] : [])]
        : [el('filesrc', { location: quoted(t.source.path) }), el('pngdec'), el('imagefreeze', { 'is-live': true }), el('videoconvert')];
    return chain(src, el('videoscale'), raw(t.width, t.height), padRef('comp', `sink_${i}`));
  });
  return branches(head, ...branchesOfTiles);
}

/** A queue of at most `buffers` pictures (no byte or time limit) that drops the oldest. */
const queue = (buffers: number, name?: string) =>
  el('queue', { 'max-size-buffers': buffers, 'max-size-bytes': 0, 'max-size-time': 0, leaky: 'downstream' }, name);

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
  return chain(
    el('intervideosrc', { channel: spec.source, timeout: spec.inputTimeoutNs }, 'scale'),
    el('videoscale'),
    { type: 'video/x-raw', fields: { format: 'I420', width: spec.width, height: spec.height, 'pixel-aspect-ratio': '1/1', framerate: `${spec.fps}/1` } },
    el('intervideosink', { sync: false, channel: spec.channel }, 'out'),
  );
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
  const muxQueue = el('queue', { 'max-size-buffers': 0, 'max-size-bytes': 0, 'max-size-time': 3000000000 });
  const video = chain(
    el('appsrc', { 'is-live': false, format: 'time', 'max-bytes': 4000000, caps: rtpCaps(p, p.payloadType) }, EL.videoRtpIn),
    // A picture with a lost packet is dropped, not written broken: the depayloader waits for the
    // next keyframe (which the recording asks the encoder for).
    p.depayloader(),
    codec === 'h264' ? [el('h264parse')] : [],
    muxQueue,
    padRef('mux'),
  );
  const audio = chain(
    el('appsrc', { 'is-live': false, format: 'time', 'max-bytes': 960000, caps: RAW_AUDIO }, EL.mixIn),
    el('audioconvert'),
    el('audioresample'),
    spec.format === 'webm' ? [el('opusenc', { bitrate: spec.audioBitrate })] : [el('voaacenc', { bitrate: spec.audioBitrate }), el('aacparse')],
    muxQueue,
    padRef('mux'),
  );
  const mux =
    spec.format === 'webm'
      ? el('webmmux', { 'writing-app': 'webrtc-mcu', 'min-cluster-duration': 1000000000, 'max-cluster-duration': 1000000000 }, 'mux')
      : el('mp4mux', { 'fragment-duration': 1000 }, 'mux');
  return branches(chain(mux, el('filesink', { location: quoted(spec.file), 'buffer-mode': 'unbuffered' }, 'file')), video, audio);
}
