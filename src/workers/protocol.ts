/**
 * The typed messages between the control thread (HTTP, rooms, decisions) and the media workers.
 * Requests go from the control thread down; notifications come back up.
 */
import type { VideoCodec } from '../core/pipelines.js';
import type { LinkReport, RtcOptions, TrackInfo, MediaKind } from '../rtc/native.js';
import type { PlainLegSpec } from '../rtc/plain.js';
import type { OutputWhen } from '../media/audioMixer.js';

export interface PeerStats {
  connected: boolean;
  /** Milliseconds since any RTP or RTCP came from the peer. */
  silentMs: number;
  /** Milliseconds since the last video RTP came from the peer (Infinity: never). */
  msSinceVideo: number;
  videoPacketsIn: number;
  audioPacketsIn: number;
  /** Of those, not decoded: the microphone was silent, or could not be heard in a full mix (InputGate). */
  audioPacketsSkipped: number;
  /** The smoothed audio level its packets carry (RFC 6464: -dBov); null without levels. */
  audioLevel: number | null;
  pliSent: number;
  framesSent: number;
  bytesSent: number;
  fps: number;
  maxFrameGapMs: number | null;
  /** How late frames left against their composite's quickest, in the last 10 s: the latest,
   * and the 99th percentile. */
  maxFrameLatenessMs: number | null;
  p99FrameLatenessMs: number | null;
  /** Keyframes sent in those 10 s, and the latest of the other frames (a keyframe is many packets
   * sent back to back to every viewer of the composite, so it leaves later than a delta frame). */
  keyframesSent10s: number | null;
  maxDeltaFrameLatenessMs: number | null;
  /** Largest gap between mix packets sent to the peer in the last ~10 s. */
  maxAudioGapMs: number | null;
  lastSwitchMs: number | null;
  droppedWaitingKeyframe: number;
  /** A viewer's downlink as its transport sees it (estimate, loss, repairs); null for one that receives no video. */
  link: LinkReport | null;
}

export type RtcRequests = {
  init: [{ logLevel: string; nice: number }, { feedPort: number }];
  /**
   * Answers a WHIP offer (WebRTC, or plain RTP/AVP for SIP gateways and room systems), or opens an
   * SDP-less plain leg (`leg`); opens the socket the peer's encoded mix comes back on. A plain leg's
   * answer names its RTP port (`rtpPort`) and the address it is announced on (`host`).
   */
  'peer.open': [
    { id: string; offer?: string; leg?: PlainLegSpec; rtc: RtcOptions; label: Record<string, string> },
    { answer: string; tracks: Partial<Record<MediaKind, TrackInfo>>; audioOutPort?: number; plain?: { host: string; rtpPort?: number } },
  ];
  /** Where the peer's RTP goes: its ingest pipeline's sockets. */
  'peer.targets': [{ id: string; videoInPort?: number; audioInPort?: number }, void];
  /**
   * The peer's video follows this composite (switching on its first keyframe). Answers what the
   * peer shows and waits for once that is done: it may have switched already to a view the room
   * has since replaced, and that one must keep running.
   */
  'peer.follow': [{ id: string; key: string }, { shown?: string; pending?: string }];
  /** Ask the peer (a publisher) for a keyframe. */
  'peer.pli': [{ id: string }, void];
  /** The room's cutoff for this peer's microphone while the mix is full without it (InputGate). */
  'peer.gate': [{ id: string; cutoff?: number }, void];
  'peer.close': [{ id: string }, void];
  /** A composite's pipeline (re)started and sends with this SSRC. */
  'view.generation': [{ key: string; codec: VideoCodec; ssrc: number }, void];
  /** That pipeline plays from `startMs` (nowMs clock): each picture's composition instant follows. */
  'view.started': [{ key: string; ssrc: number; startMs: number }, void];
  'view.forget': [{ key: string }, void];
  /** The room's shared mix (re)started and sends with this SSRC. */
  'mix.generation': [{ room: string; ssrc: number }, void];
  'mix.forget': [{ room: string }, void];
  /** The peer hears the room's shared mix whenever its own mix-minus is not flowing. */
  'peer.mix': [{ id: string; room: string }, void];
  /** Test mode only: the worker exits as if it had crashed. */
  'test.crash': [Record<string, never>, void];
  /** Test mode only: the worker's thread loops for ever (the control thread's watchdog ends it). */
  'test.hang': [Record<string, never>, void];
  /** Test mode only: an exception thrown in a timer and a promise rejected that nobody awaits. */
  'test.stray': [Record<string, never>, void];
} & TestRequests;

/** Test mode only, answered by every worker: a full garbage collection in its thread. */
export type TestRequests = {
  'test.gc': [Record<string, never>, { heapMb: number; externalMb: number }];
  /** A heap snapshot of the worker's thread, written to `file` (for investigating what it holds). */
  'test.heapSnapshot': [{ file: string }, string];
};

export type RtcEvents = {
  'peer.state': { id: string; state: string };
  /** The peer sent a DTMF digit (RFC 4733 telephone-event). */
  'peer.dtmf': { id: string; digit: string; durationMs: number };
  /** A viewer (PLI/FIR) or a switch needs a keyframe from this composite. */
  'view.keyframe': { key: string };
  /** The peer's picture is now this composite's. */
  'peer.switched': { id: string; key: string; ms: number };
  /** Four times a second: every peer's figures, and this thread's longest event-loop stall. */
  stats: { peers: Array<[string, PeerStats]>; maxLoopLagMs: number; strayErrors: number };
};

export type MixerRequests = {
  /** `mixSpeakers`: how many talkers each room's mix carries (0: every input). */
  init: [{ logLevel: string; nice: number; mixSpeakers: number }, void];
  /** Decoded PCM of `id` arrives on the returned port. */
  'input.add': [{ room: string; id: string }, { port: number }];
  'input.remove': [{ room: string; id: string }, void];
  /** `l16`: RTP L16 for the listener's encoder; `pcm-at`: the full mix with the instant each frame
   * stands for, for a recording. `when`: `speaking` sends only while the listener is among the mixed
   * talkers (the rest of the time it hears the room's shared mix). */
  'output.add': [{ room: string; id: string; port: number; format: 'l16' | 'pcm-at'; when?: OutputWhen }, void];
  'output.remove': [{ room: string; id: string }, void];
  'room.close': [{ room: string }, void];
} & TestRequests;

export type MixerEvents = {
  /** Each input's RMS level (dBFS) since the last report, for the active speaker. */
  levels: { room: string; levels: Array<[string, number]>; mixed: string[] };
  /** Four times a second: this thread's longest event-loop stall. */
  load: { maxLoopLagMs: number; strayErrors: number };
};

export type NoRequests = Record<never, [unknown, unknown]>;
export type NoEvents = Record<never, unknown>;

export type GstRequests = {
  init: [{ logLevel: string }, void];
  /** Builds and plays a pipeline; returns when it went to PLAYING (nowMs clock) and the ports
   * the named udpsrcs bound. */
  'pipeline.start': [{ id: string; launch: string; ports?: string[] }, { startMs: number; ports: Record<string, number> }];
  'pipeline.get': [{ id: string; element: string; prop: string }, string | number | boolean | null];
  'pipeline.set': [{ id: string; element: string; prop: string; value: string | number | boolean }, void];
  /** A keyframe from the encoder upstream of `element`. */
  'pipeline.keyframe': [{ id: string; element: string }, void];
  'pipeline.close': [{ id: string }, void];
  /** A recording's recorder: returns the ports its composites' video and the mix come in on. */
  'recorder.start': [{ id: string; launch: string }, { feedPort: number; mixPort: number }];
  'recorder.generation': [{ id: string; key: string; codec: VideoCodec; ssrc: number }, void];
  'recorder.started': [{ id: string; key: string; ssrc: number; startMs: number }, void];
  'recorder.follow': [{ id: string; key: string }, void];
  'recorder.forget': [{ id: string; key: string }, void];
  'recorder.videoPackets': [{ id: string }, number];
  /** Finalises the file; false when the muxer did not finish in time. */
  'recorder.stop': [{ id: string }, boolean];
  'recorder.close': [{ id: string }, void];
  /** Stops every pipeline still running, before the thread ends (a bus callback that fires in
   * a thread being torn down takes the process with it). */
  shutdown: [Record<string, never>, void];
} & TestRequests;

export type GstEvents = {
  /** An error, warning, EOS or element message from a pipeline's bus. */
  'pipeline.bus': { id: string; type: string; element: string; message?: string };
  /** Four times a second: this thread's longest stall and the pipelines it runs. */
  load: { maxLoopLagMs: number; strayErrors: number; pipelines: number };
  'recorder.failed': { id: string; reason: string };
  'recorder.switched': { id: string; to: string; from?: string };
  'recorder.keyframe': { id: string; key: string };
};
