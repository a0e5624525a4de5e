import { BadRequestError } from './errors.js';

/**
 * What one viewer can take: the most it may receive. Set at join (query), during the call (PUT
 * .../output), and by its offer (b=AS / b=TIAS cap the bitrate; an H.264 profile-level-id caps the
 * frame size and rate). Every field is optional: absent means "what the server sends by default".
 */
export interface OutputLimits {
  maxWidth?: number;
  maxHeight?: number;
  maxFps?: number;
  /** bits/s */
  maxBitrate?: number;
}

/** A concrete stream to encode: what a composite's encoder is set to. */
export interface OutputProfile {
  width: number;
  height: number;
  fps: number;
  /** bits/s */
  bitrate: number;
}

const LIMITS: Record<keyof OutputLimits, [min: number, max: number]> = {
  maxWidth: [64, 3840],
  maxHeight: [64, 2160],
  maxFps: [1, 60],
  maxBitrate: [30_000, 20_000_000],
};

/** Reads limits from query parameters or a JSON body; 400 names the field that is wrong. */
export function parseLimits(raw: Record<string, unknown>): OutputLimits {
  const out: OutputLimits = {};
  for (const key of Object.keys(LIMITS) as Array<keyof OutputLimits>) {
    const v = raw[key];
    if (v === undefined || v === null || v === '') continue;
    const n = typeof v === 'number' ? v : typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : NaN;
    const [min, max] = LIMITS[key];
    if (!Number.isInteger(n) || n < min || n > max) throw new BadRequestError(`${key} must be an integer from ${min} to ${max}`, 'bad_output');
    out[key] = n;
  }
  return out;
}

/** The tighter of two sets of limits, field by field. */
export function tighten(a: OutputLimits, b: OutputLimits): OutputLimits {
  const out: OutputLimits = {};
  for (const key of Object.keys(LIMITS) as Array<keyof OutputLimits>) {
    const v = [a[key], b[key]].filter((x): x is number => x !== undefined);
    if (v.length) out[key] = Math.min(...v);
  }
  return out;
}

/**
 * H.264 levels (ITU-T H.264 Table A-1): macroblocks per second, macroblocks per frame, and the
 * frame a level is known for (so that a level 1.2 device, made for CIF, never gets wider than 352).
 */
const H264_LEVELS: Record<string, { mbps: number; fs: number; frame: [number, number] }> = {
  '1': { mbps: 1485, fs: 99, frame: [176, 144] },
  '1b': { mbps: 1485, fs: 99, frame: [176, 144] },
  '1.1': { mbps: 3000, fs: 396, frame: [352, 288] },
  '1.2': { mbps: 6000, fs: 396, frame: [352, 288] },
  '1.3': { mbps: 11880, fs: 396, frame: [352, 288] },
  '2': { mbps: 11880, fs: 396, frame: [352, 288] },
  '2.1': { mbps: 19800, fs: 792, frame: [352, 576] },
  '2.2': { mbps: 20250, fs: 1620, frame: [720, 576] },
  '3': { mbps: 40500, fs: 1620, frame: [720, 576] },
  '3.1': { mbps: 108000, fs: 3600, frame: [1280, 720] },
  '3.2': { mbps: 216000, fs: 5120, frame: [1280, 1024] },
  '4': { mbps: 245760, fs: 8192, frame: [2048, 1024] },
  '4.1': { mbps: 245760, fs: 8192, frame: [2048, 1024] },
  '4.2': { mbps: 522240, fs: 8704, frame: [2048, 1080] },
  '5': { mbps: 589824, fs: 22080, frame: [3672, 1536] },
  '5.1': { mbps: 983040, fs: 36864, frame: [4096, 2304] },
  '5.2': { mbps: 2073600, fs: 36864, frame: [4096, 2304] },
};

/** The level in an H.264 profile-level-id (RFC 6184): "42e00c" is level 1.2, "42e01e" 3.0. */
export function h264Level(profileLevelId: string): string | undefined {
  if (!/^[0-9a-f]{6}$/i.test(profileLevelId)) return undefined;
  const profileIdc = parseInt(profileLevelId.slice(0, 2), 16);
  const constraints = parseInt(profileLevelId.slice(2, 4), 16);
  const idc = parseInt(profileLevelId.slice(4, 6), 16);
  // Level 1b: level_idc 11 with constraint_set3 in the Baseline/Main/Extended profiles, or idc 9.
  if (idc === 9 || (idc === 11 && (constraints & 0x10) !== 0 && [66, 77, 88].includes(profileIdc))) return '1b';
  const level = idc % 10 === 0 ? String(idc / 10) : (idc / 10).toFixed(1);
  return H264_LEVELS[level] ? level : undefined;
}

/** What an H.264 level allows, as limits on a stream of the given shape (aspect ratio). */
export function h264LevelLimits(level: string, aspect: number): OutputLimits {
  const l = H264_LEVELS[level];
  if (!l) return {};
  const [fw, fh] = l.frame;
  // The largest frame of this aspect within the level's known frame and its macroblocks per frame.
  let w = Math.min(fw, fh * aspect);
  while (w > 16 && mbs(w, w / aspect) > l.fs) w -= 16;
  const width = even(w);
  const height = even(Math.min(fh, width / aspect));
  return { maxWidth: width, maxHeight: height, maxFps: Math.max(1, Math.floor(l.mbps / mbs(width, height))) };
}

const mbs = (w: number, h: number) => Math.ceil(w / 16) * Math.ceil(h / 16);
const even = (n: number) => Math.max(2, Math.floor(n / 2) * 2);

/** Limits an SDP offer carries for what it receives: b=AS / b=TIAS in the video section, and the H.264 level it offers. */
export function offerLimits(offerVideoSection: string, aspect: number, chosenCodec?: string): OutputLimits {
  const out: OutputLimits = {};
  const tias = /^b=TIAS:(\d+)\s*$/m.exec(offerVideoSection);
  const as = /^b=AS:(\d+)\s*$/m.exec(offerVideoSection);
  // TIAS is the transport-independent rate in bits/s; AS is in kbit/s and includes overheads.
  if (tias) out.maxBitrate = Number(tias[1]);
  else if (as) out.maxBitrate = Number(as[1]) * 1000 * 0.95;
  if (out.maxBitrate !== undefined) out.maxBitrate = Math.max(LIMITS.maxBitrate[0], Math.round(out.maxBitrate));
  if (chosenCodec === 'h264') {
    // The highest level among the H.264 formats offered is what the device decodes.
    const levels = [...offerVideoSection.matchAll(/profile-level-id=([0-9a-fA-F]{6})/g)].map((m) => h264Level(m[1])).filter((l): l is string => !!l);
    if (levels.length) {
      const best = levels.sort((a, b) => H264_LEVELS[b].fs * H264_LEVELS[b].mbps - H264_LEVELS[a].fs * H264_LEVELS[a].mbps)[0];
      Object.assign(out, tighten(out, h264LevelLimits(best, aspect)));
    }
  }
  return out;
}

/**
 * The stream a viewer gets at the top of its ladder: the server's default canvas scaled down (its
 * aspect kept, sizes even) to fit the limits, the frame rate and bitrate capped.
 */
export function fitProfile(base: OutputProfile, limits: OutputLimits): OutputProfile {
  const scale = Math.min(1, (limits.maxWidth ?? Infinity) / base.width, (limits.maxHeight ?? Infinity) / base.height);
  const width = even(base.width * scale);
  const height = even(base.height * scale);
  // A smaller picture needs fewer bits: scale the default bitrate with the area, then cap it.
  const areaBitrate = Math.round(base.bitrate * Math.max(0.25, (width * height) / (base.width * base.height)));
  return {
    width,
    height,
    fps: Math.min(base.fps, limits.maxFps ?? Infinity),
    bitrate: Math.min(areaBitrate, limits.maxBitrate ?? Infinity),
  };
}

/** A short stable key for a profile, for sharing encoders: "640x360@30/800k". */
export const profileKey = (p: OutputProfile) => `${p.width}x${p.height}@${p.fps}/${Math.round(p.bitrate / 1000)}k`;
