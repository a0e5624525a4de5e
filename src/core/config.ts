import path from 'node:path';
import { BadRequestError } from './errors.js';
import type { VideoCodec } from './codecs.js';

/** Server configuration. Every field comes from an environment variable with a documented default. */
export interface McuConfig {
  /** HOST: address the HTTP server listens on. Default 0.0.0.0. */
  host: string;
  /** PORT: HTTP port. Default 8080. 0 picks a free port. */
  port: number;
  /** MCU_ICE_ADDRESSES: addresses announced as ICE host candidates (comma separated). Default: none extra. */
  iceAddresses: string[];
  /** MCU_RTC_PORTS: UDP port range for ICE, "min-max". Default 40000-40999. */
  rtcPorts: [number, number];
  /** MCU_RECORDINGS_DIR: where recordings go. Default ./recordings. */
  recordingsDir: string;
  /** MCU_CACHE_DIR: rendered placeholders and name plates. Default ./.cache. */
  cacheDir: string;
  /** LOG_LEVEL: debug | info | warn | error | silent. Default info. */
  logLevel: string;
  /** MCU_CANVAS: default composite size, WIDTHxHEIGHT. Default 640x360. */
  width: number;
  height: number;
  /** MCU_FPS: composite frame rate. Default 30. */
  fps: number;
  /** MCU_VIDEO_BITRATE: composite video bitrate in bits/s. Default 800000. */
  videoBitrate: number;
  /** MCU_AUDIO_BITRATE: Opus bitrate in bits/s. Default 32000. */
  audioBitrate: number;
  /** MCU_STALL_MS: a video input silent this long shows its placeholder. Default 2000. */
  stallMs: number;
  /** MCU_VIDEO_CODEC: `h264` or `vp8` is taken whenever a peer offers it, whatever the offer's
   * order; unset, the offer's order decides (browsers put VP8 first). */
  preferVideo?: VideoCodec;
  /** MCU_INPUT_GATE: 0 decodes every microphone always. Default on: by the RFC 6464 audio level in
   * its packets, a microphone under -60 dBov for 2 s, or (while the mix is full) one not loud
   * enough to take a talker's place, is not decoded (src/media/inputGate.ts). */
  inputGate: boolean;
  /** MCU_MIX_SPEAKERS: how many talkers the mix carries at once, the loudest (0: everyone, with one
   * encoder per listener). Everyone else shares one encoded mix per room. Default 4. */
  mixSpeakers: number;
  /** MCU_SPEAKER_HOLD_MS: a new active speaker must hold the floor this long. Default 1500. */
  speakerHoldMs: number;
  /** MCU_PEER_TIMEOUT_MS: a peer silent (no RTP or RTCP) this long is removed. Default 5000. */
  peerTimeoutMs: number;
  /** MCU_RTP_TIMEOUT_MS: a plain RTP leg silent (no RTP or RTCP) this long is removed. Default 30000:
   * phones with voice activity detection send nothing in silence but RTCP every few seconds. */
  rtpTimeoutMs: number;
  /** MCU_RTC_WORKERS: threads that carry the peers' WebRTC sessions. Default 0: one per core. */
  rtcWorkers: number;
  /** MCU_MEDIA_NICE: the nice value of the threads that carry packets (RTC and mixer workers),
   * from -20 to 0. Default -10. 0 leaves them as they are. */
  mediaNice: number;
  /** MCU_TILE_SCALERS: 1 scales each participant once per tile size for all viewer composites,
   * 0 scales in each composite. Default 0: sharing saves CPU (case (b) with 8 people: 0.85-0.93
   * cores instead of 1.16) but the scaler's own sampling step adds about 60 ms of video latency
   * (glass-to-glass 125 ms instead of 65), which puts video behind audio at every viewer. */
  tileScalers: boolean;
  /** ICE servers announced to peers (RFC 9725 Link headers on the WHIP answer and on OPTIONS). */
  ice: {
    /** MCU_TURN_URLS: TURN (and STUN) URLs, comma separated, e.g. turn:turn.example.com:443?transport=tcp. Default: none. */
    urls: string[];
    /** MCU_TURN_SECRET: coturn's static-auth-secret; each peer gets credentials made from it (TURN REST API). */
    secret?: string;
    /** MCU_TURN_TTL: how long those credentials work, in seconds. Default 86400. */
    ttlSeconds: number;
  };
  /** MCU_NACK=0: negotiate neither NACK nor RTX (losses are then repaired by keyframes only), to compare. Default 1. */
  nack: boolean;
  /** MCU_TEST_HOOKS=1: test-only routes (e.g. stalling the control thread on purpose). Default off. */
  testHooks: boolean;
  /** Credentials (README, Security). */
  auth: {
    /** MCU_API_KEY: the admin key, sent as `Authorization: Bearer <key>`. Default: generated into the secrets file. */
    apiKey?: string;
    /** MCU_API_SECRET: signs join tokens (HS256). Default: generated into the secrets file. */
    apiSecret?: string;
    /** MCU_SECRETS_FILE: where a generated key and secret are kept, readable by its owner only. Default ./.mcu/secrets.json. */
    secretsFile: string;
    /** MCU_METRICS_PUBLIC=1: /metrics without credentials. Default off. */
    metricsPublic: boolean;
    /** MCU_CORS_ORIGINS: origins (comma separated, or "*") whose pages may call the API. Default: none. */
    corsOrigins: string[];
  };
  /** Clustering (README, Clustering): set only with MCU_REDIS_URL; without it the node stands alone. */
  cluster?: ClusterConfig;
  /** Limits; a refusal names the one it hit. */
  limits: {
    /** MCU_MAX_PARTICIPANTS: people in one room. Default 30. */
    participantsPerRoom: number;
    /** MCU_MAX_ROOMS: rooms on this node. Default 100. */
    rooms: number;
    /** MCU_JOINS_PER_SECOND: joins per second from one client address. Default 5. */
    joinsPerSecond: number;
    /** MCU_MAX_NAME_LENGTH: characters in a participant's name. Default 64. */
    nameLength: number;
    /** MCU_MAX_ROOM_ID_LENGTH: characters in a room id, up to 64. Default 64. */
    roomIdLength: number;
    /** MCU_CPU_BUDGET: fraction of this process's cores past which joins are refused with 503. Default 0.8; 0 turns admission control off. */
    cpuBudget: number;
    /** MCU_PARTICIPANT_COST: what one more participant with video costs, in cores (from `npm run bench`). Default 0.16. */
    participantCost: number;
    /** MCU_AUDIO_PARTICIPANT_COST: what one more audio-only participant costs, in cores. Default 0.04. */
    audioParticipantCost: number;
  };
}

export interface ClusterConfig {
  /** MCU_REDIS_URL: the Redis that holds the node registry and room placement, e.g. redis://10.0.0.5:6379. */
  redisUrl: string;
  /** MCU_PUBLIC_URL: this node's base URL as clients reach it (redirects point there). Default: http://HOST:PORT as listened on. */
  publicUrl?: string;
  /** MCU_NODE_ID: this node's id in the registry. Default: from the public URL's host and port (stable across restarts). */
  nodeId?: string;
  /** MCU_DRAIN_SECONDS: on SIGTERM, how long running rooms may go on before the node closes them. Default 300. */
  drainSeconds: number;
  /** MCU_ROOM_GRACE_SECONDS: a room stays placed on its node this long after it closes there. Default 30. */
  roomGraceSeconds: number;
}

function num(name: string, value: string | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n < min || n > max) {
    throw new BadRequestError(`${name} must be a number from ${min} to ${max}, got "${value}"`, 'bad_config');
  }
  return n;
}

function int(name: string, value: string | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new BadRequestError(`${name} must be an integer from ${min} to ${max}, got "${value}"`, 'bad_config');
  }
  return n;
}

function videoCodecPreference(value: string | undefined): VideoCodec | undefined {
  if (value === undefined || value === '' || value === 'offer') return undefined;
  if (value === 'h264' || value === 'vp8') return value;
  throw new BadRequestError(`MCU_VIDEO_CODEC must be h264, vp8 or offer, got "${value}"`, 'bad_config');
}

function publicUrl(value: string | undefined): string | undefined {
  if (!value) return undefined;
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    throw new BadRequestError(`MCU_PUBLIC_URL must be an absolute http(s) URL, got "${value}"`, 'bad_config');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new BadRequestError(`MCU_PUBLIC_URL must be http or https, got "${value}"`, 'bad_config');
  return u.origin + u.pathname.replace(/\/+$/, '');
}

function nodeId(value: string | undefined): string | undefined {
  if (!value) return undefined;
  if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(value)) throw new BadRequestError(`MCU_NODE_ID is 1-64 letters, digits, "_", ".", ":" or "-", got "${value}"`, 'bad_config');
  return value;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): McuConfig {
  const ports = (env.MCU_RTC_PORTS ?? '40000-40999').split('-').map((s) => Number(s.trim()));
  if (ports.length !== 2 || ports.some((p) => !Number.isInteger(p) || p < 1 || p > 65535) || ports[0] > ports[1]) {
    throw new BadRequestError(`MCU_RTC_PORTS must look like 40000-40999, got "${env.MCU_RTC_PORTS}"`, 'bad_config');
  }
  const canvas = (env.MCU_CANVAS ?? '640x360').split('x').map(Number);
  if (canvas.length !== 2 || canvas.some((v) => !Number.isInteger(v) || v < 64 || v > 3840 || v % 2 !== 0)) {
    throw new BadRequestError(`MCU_CANVAS must be WIDTHxHEIGHT with even sizes, got "${env.MCU_CANVAS}"`, 'bad_config');
  }
  return {
    host: env.HOST ?? '0.0.0.0',
    port: int('PORT', env.PORT, 8080, 0, 65535),
    iceAddresses: (env.MCU_ICE_ADDRESSES ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
    rtcPorts: [ports[0], ports[1]],
    recordingsDir: path.resolve(env.MCU_RECORDINGS_DIR ?? 'recordings'),
    cacheDir: path.resolve(env.MCU_CACHE_DIR ?? '.cache'),
    logLevel: env.LOG_LEVEL ?? 'info',
    width: canvas[0],
    height: canvas[1],
    fps: int('MCU_FPS', env.MCU_FPS, 30, 1, 60),
    videoBitrate: int('MCU_VIDEO_BITRATE', env.MCU_VIDEO_BITRATE, 800_000, 50_000, 20_000_000),
    audioBitrate: int('MCU_AUDIO_BITRATE', env.MCU_AUDIO_BITRATE, 32_000, 6_000, 510_000),
    stallMs: int('MCU_STALL_MS', env.MCU_STALL_MS, 2000, 200, 60_000),
    preferVideo: videoCodecPreference(env.MCU_VIDEO_CODEC),
    mixSpeakers: int('MCU_MIX_SPEAKERS', env.MCU_MIX_SPEAKERS, 4, 0, 64),
    speakerHoldMs: int('MCU_SPEAKER_HOLD_MS', env.MCU_SPEAKER_HOLD_MS, 1500, 0, 60_000),
    peerTimeoutMs: int('MCU_PEER_TIMEOUT_MS', env.MCU_PEER_TIMEOUT_MS, 5000, 1000, 120_000),
    rtpTimeoutMs: int('MCU_RTP_TIMEOUT_MS', env.MCU_RTP_TIMEOUT_MS, 30_000, 1000, 3_600_000),
    rtcWorkers: int('MCU_RTC_WORKERS', env.MCU_RTC_WORKERS, 0, 0, 64),
    mediaNice: int('MCU_MEDIA_NICE', env.MCU_MEDIA_NICE, -10, -20, 0),
    tileScalers: env.MCU_TILE_SCALERS === '1',
    testHooks: env.MCU_TEST_HOOKS === '1',
    nack: env.MCU_NACK !== '0',
    inputGate: env.MCU_INPUT_GATE !== '0',
    ice: {
      urls: (env.MCU_TURN_URLS ?? '')
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
        .map((u) => {
          if (!/^(turns?|stuns?):[^\s<>"]+$/.test(u)) throw new BadRequestError(`MCU_TURN_URLS: "${u}" is not a turn:, turns:, stun: or stuns: URL`, 'bad_config');
          return u;
        }),
      secret: env.MCU_TURN_SECRET || undefined,
      ttlSeconds: int('MCU_TURN_TTL', env.MCU_TURN_TTL, 86_400, 60, 30 * 86_400),
    },
    auth: {
      apiKey: env.MCU_API_KEY || undefined,
      apiSecret: env.MCU_API_SECRET || undefined,
      secretsFile: path.resolve(env.MCU_SECRETS_FILE ?? '.mcu/secrets.json'),
      metricsPublic: env.MCU_METRICS_PUBLIC === '1',
      corsOrigins: (env.MCU_CORS_ORIGINS ?? '')
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    },
    cluster: env.MCU_REDIS_URL
      ? {
          redisUrl: env.MCU_REDIS_URL,
          publicUrl: publicUrl(env.MCU_PUBLIC_URL),
          nodeId: nodeId(env.MCU_NODE_ID),
          drainSeconds: int('MCU_DRAIN_SECONDS', env.MCU_DRAIN_SECONDS, 300, 0, 86_400),
          roomGraceSeconds: int('MCU_ROOM_GRACE_SECONDS', env.MCU_ROOM_GRACE_SECONDS, 30, 1, 86_400),
        }
      : undefined,
    limits: {
      participantsPerRoom: int('MCU_MAX_PARTICIPANTS', env.MCU_MAX_PARTICIPANTS, 30, 1, 1000),
      rooms: int('MCU_MAX_ROOMS', env.MCU_MAX_ROOMS, 100, 1, 100_000),
      joinsPerSecond: int('MCU_JOINS_PER_SECOND', env.MCU_JOINS_PER_SECOND, 5, 1, 100_000),
      nameLength: int('MCU_MAX_NAME_LENGTH', env.MCU_MAX_NAME_LENGTH, 64, 1, 256),
      roomIdLength: int('MCU_MAX_ROOM_ID_LENGTH', env.MCU_MAX_ROOM_ID_LENGTH, 64, 1, 64),
      cpuBudget: num('MCU_CPU_BUDGET', env.MCU_CPU_BUDGET, 0.8, 0, 1),
      participantCost: num('MCU_PARTICIPANT_COST', env.MCU_PARTICIPANT_COST, 0.16, 0.001, 64),
      audioParticipantCost: num('MCU_AUDIO_PARTICIPANT_COST', env.MCU_AUDIO_PARTICIPANT_COST, 0.04, 0.001, 64),
    },
  };
}
