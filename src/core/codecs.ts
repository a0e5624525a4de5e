import type { Caps, Element, Link, Props } from './pipelines.js';

/**
 * Encoder and decoder presets, as typed elements: per codec, the elements that encode, payload,
 * depayload and decode it, and its RTP caps. src/core/pipelines.ts renders them into launch
 * strings. Settings measured on GStreamer 1.22: see README's performance section.
 */

export type VideoCodec = 'vp8' | 'h264';
/** Opus for WebRTC; G.711 (PCMU, PCMA) and G.722 for legacy endpoints such as SIP phones. */
export type AudioCodec = 'opus' | 'pcmu' | 'pcma' | 'g722';

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
  /**
   * What encodes it: a video encoder takes I420, an audio encoder the mixer's mono 48 kHz raw audio
   * (an encoder at another rate resamples first).
   */
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

/** The largest RTP packet the video payloaders make, header included. */
export const RTP_MTU = 1200;

/**
 * x264's limit on a slice in bytes (its estimate of the NAL unit, header included): under RTP_MTU
 * less the 12-byte RTP header, with room to spare (measured: the largest packet was 1104 bytes).
 */
export const SLICE_MAX_BYTES = 1100;

/**
 * H.264: x264 at its fastest preset with no frames held back (tune=zerolatency), constrained
 * baseline; x264enc takes its bitrate in kbit/s.
 *
 * Every RTP packet carries exactly one whole NAL unit (RFC 6184 single NAL unit mode), so that
 * endpoints that take only packetization-mode=0 (H.264 room systems) can decode it, and
 * packetization-mode=1 receivers (browsers) take it as well: x264 cuts each picture into slices of
 * at most SLICE_MAX_BYTES, which fits the payloader's MTU with room for the RTP header, so the
 * payloader never fragments (FU-A); and nothing is aggregated (aggregate-mode=none, where
 * zero-latency put SPS and PPS together in a STAP-A).
 *
 * SPS and PPS go before every IDR, so a receiver can start at any keyframe: x264 writes them
 * itself in a byte-stream (as AUD, SPS, PPS, then the IDR slices), keyframes asked for included.
 * The payloader adds none (config-interval=0): with -1 it put another SPS and PPS before every
 * IDR *slice* (measured on 1.22: 35 pairs in a 1280x720 keyframe), between the slices of one
 * picture, where they start a new access unit.
 * test/gst/h264SingleNal.test.ts checks the packets of real composites.
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
        'option-string': `slice-max-size=${SLICE_MAX_BYTES}`,
      },
      name,
    ),
    { type: 'video/x-h264', fields: { profile: 'constrained-baseline', 'stream-format': 'byte-stream' } },
  ],
  payloader: payloader('rtph264pay', 102, { mtu: RTP_MTU, 'config-interval': 0, 'aggregate-mode': 'none' }),
  depayloader: () => el('rtph264depay', { 'request-keyframe': false, 'wait-for-keyframe': true }),
  decoder: () => el('avdec_h264', { 'max-threads': 1 }),
};

/**
 * The mix reaches its encoder over UDP, so each frame's timestamp is when it arrived: the mixer's
 * 20 ms grid plus up to a few ms of scheduling jitter. An encoder that tracks those timestamps puts
 * the jitter into the RTP timestamps (steps of 700-1230 instead of 960 were measured), and a
 * browser's jitter buffer then conceals the gaps and drops the overlaps: 30 % of the samples a
 * Chromium listener played were concealment. The encoders count samples instead, and follow the
 * arrival times again only when they drift further than the tolerance (40 ms, a real gap).
 */
const PERFECT_TIMESTAMPS = { 'perfect-timestamp': true };

/**
 * Opus for a voice mix at complexity 5 (Janus uses 4): about 4 millicores less per listener than
 * the default 10, at 32 kbit/s. 20 ms frames, in-band FEC for a lost packet, no DTX (the mix is
 * continuous).
 */
export const opus: AudioCodecPreset = {
  caps: rtpCaps('audio', 48000, 'OPUS'),
  payloadType: 111,
  encoder: ({ bitrate, name }) => [
    el('opusenc', { bitrate, complexity: 5, 'frame-size': 20, 'audio-type': 'voice', 'inband-fec': true, dtx: false, ...PERFECT_TIMESTAMPS }, name),
  ],
  payloader: payloader('rtpopuspay', 111, { mtu: 1200 }),
  depayloader: () => el('rtpopusdepay'),
  decoder: () => el('opusdec', { plc: true, 'use-inband-fec': true }),
};

/** 20 ms of audio in every packet (the payloaders would otherwise follow the sizes of the buffers they get). */
const PTIME_20MS = { 'min-ptime': 20_000_000, 'max-ptime': 20_000_000 };

/** The mixer's 48 kHz resampled to a codec's rate, mono. */
const resampleTo = (rate: number): Link[] => [el('audioresample'), { type: 'audio/x-raw', fields: { rate, channels: 1 } }];

/** G.711 µ-law (RFC 3551 PCMU, static payload type 0): 8 kHz, 64 kbit/s whatever `bitrate` says. */
export const pcmu: AudioCodecPreset = {
  caps: rtpCaps('audio', 8000, 'PCMU'),
  payloadType: 0,
  encoder: ({ name }) => [...resampleTo(8000), el('mulawenc', PERFECT_TIMESTAMPS, name)],
  payloader: payloader('rtppcmupay', 0, PTIME_20MS),
  depayloader: () => el('rtppcmudepay'),
  decoder: () => el('mulawdec'),
};

/** G.711 A-law (RFC 3551 PCMA, static payload type 8): 8 kHz, 64 kbit/s. */
export const pcma: AudioCodecPreset = {
  caps: rtpCaps('audio', 8000, 'PCMA'),
  payloadType: 8,
  encoder: ({ name }) => [...resampleTo(8000), el('alawenc', PERFECT_TIMESTAMPS, name)],
  payloader: payloader('rtppcmapay', 8, PTIME_20MS),
  depayloader: () => el('rtppcmadepay'),
  decoder: () => el('alawdec'),
};

/**
 * G.722 (static payload type 9): 16 kHz audio at 64 kbit/s, but its RTP clock runs at 8 kHz
 * (RFC 3551 4.5.2, kept for compatibility with RFC 1890): a 20 ms packet advances the timestamp by 160.
 */
export const g722: AudioCodecPreset = {
  caps: rtpCaps('audio', 8000, 'G722'),
  payloadType: 9,
  encoder: ({ name }) => [...resampleTo(16000), el('avenc_g722', PERFECT_TIMESTAMPS, name)],
  payloader: payloader('rtpg722pay', 9, PTIME_20MS),
  depayloader: () => el('rtpg722depay'),
  decoder: () => el('avdec_g722'),
};

export const CODECS: Presets = {
  video: { vp8, h264 },
  audio: { opus, pcmu, pcma, g722 },
};
