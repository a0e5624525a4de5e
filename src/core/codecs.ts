import type { Caps, Element, Link, Props } from './pipelines.js';

/**
 * Encoder and decoder presets, as typed elements: per codec, the elements that encode, payload,
 * depayload and decode it, and its RTP caps. src/core/pipelines.ts renders them into launch
 * strings. Settings measured on GStreamer 1.22: see README's performance section.
 */

export type VideoCodec = 'vp8' | 'h264';
export type AudioCodec = 'opus';

export interface EncodeOptions {
  /** Bits per second. */
  bitrate: number;
  /** Frames between keyframes the encoder makes unasked (video). */
  gop?: number;
  /** Encoder threads (video). */
  threads?: number;
  /** The encoder element's name, for the runtime to find it (EL.videoEnc, EL.audioEnc). */
  name?: string;
}

export interface PayloadOptions {
  name?: string;
  /** The payload type; the codec's own (`payloadType`) when not given. */
  pt?: number;
  /** Set before the codec's own properties. */
  props?: Props;
}

export interface Codec {
  /** The RTP caps of the stream, without its payload type. */
  caps: Caps;
  /** The payload type the payloader stamps unless told another. */
  payloadType: number;
  /** What encodes it. A video encoder takes I420, an audio encoder mono 48 kHz raw audio. */
  encoder(o: EncodeOptions): Link[];
  payloader(o?: PayloadOptions): Element;
  depayloader(): Element;
  decoder(): Element;
}

export type VideoCodecPreset = Codec;
export type AudioCodecPreset = Codec;

/** The typed codec table every pipeline is built from (the `presets` the rooms pass around). */
export interface Presets {
  video: Record<VideoCodec, VideoCodecPreset>;
  audio: Record<AudioCodec, AudioCodecPreset>;
}

/** An element: its factory, its properties in order, and a name when the runtime looks it up. */
export const el = (factory: string, props?: Props, name?: string): Element => ({ factory, ...(name !== undefined ? { name } : {}), ...(props ? { props } : {}) });

const payloader =
  (factory: string, payloadType: number, own: Props) =>
  (o: PayloadOptions = {}): Element =>
    el(factory, { ...o.props, pt: o.pt ?? payloadType, ...own }, o.name);

const rtpCaps = (media: 'audio' | 'video', clockRate: number, encodingName: string): Caps => ({
  type: 'application/x-rtp',
  fields: { media, 'clock-rate': clockRate, 'encoding-name': encodingName },
});

/**
 * VP8 for live viewers: realtime (deadline=1, cpu-used=-6), constant bitrate with no frames held
 * back (lag-in-frames=0), a buffer of about a second, error-resilient partitions.
 */
export const vp8: VideoCodecPreset = {
  caps: rtpCaps('video', 90000, 'VP8'),
  payloadType: 96,
  encoder: ({ bitrate, gop = 300, threads = 1, name }) => [
    el(
      'vp8enc',
      {
        deadline: 1,
        'cpu-used': -6,
        threads,
        'end-usage': 'cbr',
        'lag-in-frames': 0,
        undershoot: 95,
        'buffer-size': 1000,
        'buffer-initial-size': 500,
        'buffer-optimal-size': 600,
        'keyframe-max-dist': gop,
        'error-resilient': 'partitions',
        'target-bitrate': bitrate,
      },
      name,
    ),
  ],
  payloader: payloader('rtpvp8pay', 96, { mtu: 1200, 'picture-id-mode': '15-bit' }),
  depayloader: () => el('rtpvp8depay', { 'request-keyframe': false, 'wait-for-keyframe': true }),
  decoder: () => el('vp8dec', { threads: 1 }),
};

/**
 * H.264: x264 at its fastest preset with no frames held back (tune=zerolatency), constrained
 * baseline; x264enc takes its bitrate in kbit/s. SPS and PPS go before every IDR
 * (config-interval=-1), so a receiver can start at any keyframe.
 */
export const h264: VideoCodecPreset = {
  caps: rtpCaps('video', 90000, 'H264'),
  payloadType: 102,
  encoder: ({ bitrate, gop = 300, threads = 1, name }) => [
    el(
      'x264enc',
      {
        'speed-preset': 'ultrafast',
        tune: 'zerolatency',
        threads,
        'key-int-max': gop,
        bitrate: Math.round(bitrate / 1000),
        'vbv-buf-capacity': 600,
      },
      name,
    ),
    { type: 'video/x-h264', fields: { profile: 'constrained-baseline', 'stream-format': 'byte-stream' } },
  ],
  payloader: payloader('rtph264pay', 102, { mtu: 1200, 'config-interval': -1, 'aggregate-mode': 'zero-latency' }),
  depayloader: () => el('rtph264depay', { 'request-keyframe': false, 'wait-for-keyframe': true }),
  decoder: () => el('avdec_h264', { 'max-threads': 1 }),
};

/**
 * Opus for a voice mix at complexity 5 (Janus uses 4): about 4 millicores less per listener than
 * the default 10, at 32 kbit/s. 20 ms frames, in-band FEC for a lost packet, no DTX (the mix is
 * continuous).
 */
export const opus: AudioCodecPreset = {
  caps: rtpCaps('audio', 48000, 'OPUS'),
  payloadType: 111,
  encoder: ({ bitrate, name }) => [
    el('opusenc', { bitrate, complexity: 5, 'frame-size': 20, 'audio-type': 'voice', 'inband-fec': true, dtx: false }, name),
  ],
  payloader: payloader('rtpopuspay', 111, { mtu: 1200 }),
  depayloader: () => el('rtpopusdepay'),
  decoder: () => el('opusdec', { plc: true, 'use-inband-fec': true }),
};

export const CODECS: Presets = {
  video: { vp8, h264 },
  audio: { opus },
};
