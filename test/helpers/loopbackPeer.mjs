// Shared by the werift test peers (test/helpers/weriftPeer.ts) and the benchmarks (bench/*.mjs):
// a werift peer connection that gathers on 127.0.0.1 only (no STUN, no mDNS) and offers Opus and
// one video codec, or several in the order given (['vp8', 'h264'] as a browser does).
import { RTCPeerConnection, RTCRtpCodecParameters, useAudioLevelIndication } from 'werift';

/** `audioLevel`: offer RFC 6464 audio levels (the sender then puts them in its packets itself). */
export function loopbackPeer(videoCodec = 'vp8', { audioLevel = false } = {}) {
  const feedback = [{ type: 'nack', parameter: 'pli' }];
  const codecs = {
    h264: () =>
      new RTCRtpCodecParameters({
        mimeType: 'video/H264',
        clockRate: 90000,
        payloadType: 102,
        rtcpFeedback: feedback,
        parameters: 'level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f',
      }),
    vp8: () => new RTCRtpCodecParameters({ mimeType: 'video/VP8', clockRate: 90000, payloadType: 96, rtcpFeedback: feedback }),
  };
  return new RTCPeerConnection({
    iceServers: [],
    iceAdditionalHostAddresses: ['127.0.0.1'],
    iceUseIpv6: false,
    codecs: {
      audio: [new RTCRtpCodecParameters({ mimeType: 'audio/opus', clockRate: 48000, channels: 2, payloadType: 111 })],
      video: [videoCodec].flat().map((c) => codecs[c]()),
    },
    ...(audioLevel ? { headerExtensions: { audio: [useAudioLevelIndication()] } } : {}),
  });
}

/**
 * Joins a room by WHIP with a werift peer whose transceivers are set up: offers (every candidate
 * gathered), POSTs the offer with `token` (a join token or the API key), applies the answer.
 * Returns the participant's Location.
 */
export async function whipJoin(pc, url, room, name, token) {
  await pc.setLocalDescription(await pc.createOffer());
  if (pc.iceGatheringState !== 'complete') await pc.iceGatheringStateChange.watch((s) => s === 'complete', 5000);
  const res = await fetch(`${url}/v1/rooms/${room}/participants?name=${name}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${token}` },
    body: pc.localDescription.sdp,
  });
  if (res.status !== 201) throw new Error(`join ${res.status} ${await res.text()}`);
  await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
  return res.headers.get('location');
}
