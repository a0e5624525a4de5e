/**
 * The typed messages between the control thread (HTTP, rooms, decisions) and the media workers.
 * Requests go from the control thread down; notifications come back up.
 */
import type { VideoCodec } from '../core/pipelines.js';
import type { RtcOptions, TrackInfo, MediaKind } from '../rtc/native.js';

export interface PeerStats {
  connected: boolean;
  /** Milliseconds since any RTP or RTCP came from the peer. */
  silentMs: number;
  /** Milliseconds since the last video RTP came from the peer (Infinity: never). */
  msSinceVideo: number;
  videoPacketsIn: number;
  audioPacketsIn: number;
  pliSent: number;
  framesSent: number;
  bytesSent: number;
  fps: number;
  maxFrameGapMs: number | null;
  /** How late frames left against their composite's quickest, in the last 10 s: the latest,
   * and the 99th percentile. */
  maxFrameLatenessMs: number | null;
  p99FrameLatenessMs: number | null;
  /** Largest gap between mix packets sent to the peer in the last ~10 s. */
  maxAudioGapMs: number | null;
  lastSwitchMs: number | null;
  droppedWaitingKeyframe: number;
}

export type RtcRequests = {
  init: [{ logLevel: string; nice: number }, { feedPort: number }];
  /** Answers a WHIP offer; opens the socket the peer's encoded mix comes back on. */
  'peer.open': [{ id: string; offer: string; rtc: RtcOptions; label: Record<string, string> }, { answer: string; tracks: Partial<Record<MediaKind, TrackInfo>>; audioOutPort?: number }];
  /** Where the peer's RTP goes: its ingest pipeline's sockets. */
  'peer.targets': [{ id: string; videoInPort?: number; audioInPort?: number }, void];
  /** The peer's video follows this composite (switching on its first keyframe). */
  'peer.follow': [{ id: string; key: string }, void];
  /** Ask the peer (a publisher) for a keyframe. */
  'peer.pli': [{ id: string }, void];
  'peer.close': [{ id: string }, void];
  /** A composite's pipeline (re)started and sends with this SSRC. */
  'view.generation': [{ key: string; codec: VideoCodec; ssrc: number }, void];
  /** That pipeline plays from `startMs` (nowMs clock): each picture's composition instant follows. */
  'view.started': [{ key: string; ssrc: number; startMs: number }, void];
  'view.forget': [{ key: string }, void];
  /** Test mode only: the worker exits as if it had crashed. */
  'test.crash': [Record<string, never>, void];
};

export type RtcEvents = {
  'peer.state': { id: string; state: string };
  /** A viewer (PLI/FIR) or a switch needs a keyframe from this composite. */
  'view.keyframe': { key: string };
  /** The peer's picture is now this composite's. */
  'peer.switched': { id: string; key: string; ms: number };
  /** Four times a second: every peer's figures, and this thread's longest event-loop stall. */
  stats: { peers: Array<[string, PeerStats]>; maxLoopLagMs: number };
};

export type MixerRequests = {
  init: [{ logLevel: string; nice: number }, void];
  /** Decoded PCM of `id` arrives on the returned port. */
  'input.add': [{ room: string; id: string }, { port: number }];
  'input.remove': [{ room: string; id: string }, void];
  /** `l16`: RTP L16 for the listener's encoder; `pcm-at`: the full mix with the instant each frame
   * stands for, for a recording. */
  'output.add': [{ room: string; id: string; port: number; format: 'l16' | 'pcm-at' }, void];
  'output.remove': [{ room: string; id: string }, void];
  'room.close': [{ room: string }, void];
};

export type MixerEvents = {
  /** Each input's RMS level (dBFS) since the last report, for the active speaker. */
  levels: { room: string; levels: Array<[string, number]> };
  /** Four times a second: this thread's longest event-loop stall. */
  load: { maxLoopLagMs: number };
};

export type NoRequests = Record<never, [unknown, unknown]>;
export type NoEvents = Record<never, unknown>;
