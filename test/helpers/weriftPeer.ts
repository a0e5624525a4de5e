import { MediaStreamTrack, type RTCPeerConnection, type RtpPacket } from 'werift';
// @ts-expect-error plain JS shared with bench/*.mjs
import { loopbackPeer } from './loopbackPeer.mjs';
import { authFetch, joinToken } from './server.js';
import dgram from 'node:dgram';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { frameGrabber } from './media.js';

export interface WeriftPeer {
  pc: RTCPeerConnection;
  location: string;
  id: string;
  answer: string;
  received: { audio: number; video: number };
  onRtp: (kind: 'audio' | 'video', fn: (p: RtpPacket) => void) => void;
  send: Partial<Record<'audio' | 'video', MediaStreamTrack>>;
  /** The join token it joined with: its own later requests carry it. */
  token: string;
  /** WHIP DELETE of its own resource, with its own token; resolves to the status. */
  leave(): Promise<number>;
  close(): Promise<void>;
}

export interface PeerOptions {
  audio?: RTCRtpTransceiverDirection;
  video?: RTCRtpTransceiverDirection;
  /** One codec, or several in this order (a browser offers VP8 first, then H.264). */
  videoCodec?: 'vp8' | 'h264' | Array<'vp8' | 'h264'>;
  /** Offer RFC 6464 audio levels, as browsers do (the test then puts them in its packets). */
  audioLevel?: boolean;
}

type RTCRtpTransceiverDirection = 'sendrecv' | 'sendonly' | 'recvonly' | 'inactive';

/** Builds a werift offer on 127.0.0.1 only (no STUN, no mDNS), with every candidate in it. */
export async function makeOffer(opts: PeerOptions) {
  const pc: RTCPeerConnection = loopbackPeer(opts.videoCodec, { audioLevel: opts.audioLevel ?? false });
  const send: WeriftPeer['send'] = {};
  const handlers: Record<'audio' | 'video', Array<(p: RtpPacket) => void>> = { audio: [], video: [] };
  const received = { audio: 0, video: 0 };
  for (const kind of ['audio', 'video'] as const) {
    const dir = opts[kind];
    if (!dir) continue;
    const sending = dir === 'sendrecv' || dir === 'sendonly';
    const track = sending ? new MediaStreamTrack({ kind }) : undefined;
    if (track) send[kind] = track;
    const t = pc.addTransceiver(track ?? kind, { direction: dir });
    t.onTrack.subscribe((tr) =>
      tr.onReceiveRtp.subscribe((rtp) => {
        received[kind]++;
        handlers[kind].forEach((h) => h(rtp));
      }),
    );
  }
  await pc.setLocalDescription(await pc.createOffer());
  if (pc.iceGatheringState !== 'complete') await pc.iceGatheringStateChange.watch((s) => s === 'complete', 5000);
  return { pc, sdp: pc.localDescription!.sdp, send, received, handlers };
}

/**
 * Joins by WHIP with a join token for the room (a fresh one, or `opts.token`); `query` adds join
 * parameters, `editOffer` changes the offer as sent (werift keeps its own).
 */
export async function joinWerift(
  baseUrl: string,
  room: string,
  name: string,
  opts: PeerOptions & { token?: string; query?: string; editOffer?: (sdp: string) => string },
): Promise<WeriftPeer> {
  const token = opts.token ?? (await joinToken(room));
  const o = await makeOffer(opts);
  const res = await authFetch(
    `${baseUrl}/v1/rooms/${room}/participants?name=${encodeURIComponent(name)}${opts.query ? `&${opts.query}` : ''}`,
    { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: opts.editOffer ? opts.editOffer(o.sdp) : o.sdp },
    token,
  );
  return completeJoin(o, res, baseUrl, token);
}

/**
 * Finishes a WHIP join with the server's answer: `res` is the POST's response (201 or it throws),
 * `resourceBase` the server the participant's resource is on (for its own DELETE).
 */
export async function completeJoin(o: Awaited<ReturnType<typeof makeOffer>>, res: Response, resourceBase: string, token: string): Promise<WeriftPeer> {
  if (res.status !== 201) {
    await o.pc.close();
    throw new Error(`join failed ${res.status}: ${await res.text()}`);
  }
  const answer = await res.text();
  await o.pc.setRemoteDescription({ type: 'answer', sdp: answer });
  const location = res.headers.get('location')!;
  return {
    pc: o.pc,
    location,
    id: location.split('/').pop()!,
    answer,
    received: o.received,
    send: o.send,
    token,
    leave: async () => (await authFetch(resourceBase + location, { method: 'DELETE' }, token)).status,
    onRtp: (kind, fn) => o.handlers[kind].push(fn),
    close: () => o.pc.close(),
  };
}

/**
 * Forwards a werift peer's received video RTP into a GStreamer decoder that writes PNG frames to a
 * fresh directory (read them with latestFrame); `cleanup` gets what stops it.
 */
export function grabVideo(peer: WeriftPeer, cleanup: Array<() => unknown>, codec: 'vp8' | 'h264' = 'vp8'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcu-grab-'));
  const grab = frameGrabber(dir, codec);
  const sock = dgram.createSocket('udp4');
  peer.onRtp('video', (rtp) => sock.send(rtp.serialize(), grab.port, '127.0.0.1'));
  cleanup.push(() => grab.pipeline.close(), () => sock.close());
  return dir;
}
