// A werift peer in its own process that joins a room and then just stays, so that a test can
// SIGKILL it: a peer that vanishes without DELETE or DTLS close, like a crashed browser.
import { RTCPeerConnection, RTCRtpCodecParameters } from 'werift';

const [base, room, token] = process.argv.slice(2);
const pc = new RTCPeerConnection({
  iceServers: [],
  iceAdditionalHostAddresses: ['127.0.0.1'],
  iceUseIpv6: false,
  codecs: { audio: [new RTCRtpCodecParameters({ mimeType: 'audio/opus', clockRate: 48000, channels: 2, payloadType: 111 })] },
});
pc.addTransceiver('audio', { direction: 'recvonly' });
await pc.setLocalDescription(await pc.createOffer());
if (pc.iceGatheringState !== 'complete') await pc.iceGatheringStateChange.watch((s) => s === 'complete', 5000);
const res = await fetch(`${base}/v1/rooms/${room}/participants?name=Doomed`, {
  method: 'POST',
  headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${token}` },
  body: pc.localDescription.sdp,
});
await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
await pc.connectionStateChange.watch((s) => s === 'connected', 10_000);
console.log(res.headers.get('location'));
setInterval(() => undefined, 1000);
