/**
 * The mix a listener hears goes from the mixer's thread to that listener's Opus encoder as RTP
 * L16 (RFC 3551: big-endian 16-bit PCM), so the mixer needs no GStreamer object of its own and
 * no other thread has to be awake for audio to flow.
 */
import crypto from 'node:crypto';

export const L16_PAYLOAD_TYPE = 96;
export const L16_CAPS = `application/x-rtp,media=audio,clock-rate=48000,encoding-name=L16,channels=1,payload=${L16_PAYLOAD_TYPE}`;

export class L16Packetizer {
  #seq = crypto.randomInt(0x10000);
  readonly #ssrc = crypto.randomInt(0xffffffff);

  /** One RTP packet of mono S16LE PCM that starts `ptsNs` into the stream (48 kHz). */
  packet(pcmLE: Buffer, ptsNs: bigint): Buffer {
    const out = Buffer.allocUnsafe(12 + pcmLE.length);
    out[0] = 0x80;
    out[1] = L16_PAYLOAD_TYPE;
    out.writeUInt16BE(this.#seq, 2);
    this.#seq = (this.#seq + 1) & 0xffff;
    out.writeUInt32BE(Number(((ptsNs * 48000n) / 1_000_000_000n) & 0xffffffffn), 4);
    out.writeUInt32BE(this.#ssrc, 8);
    pcmLE.copy(out, 12);
    out.subarray(12).swap16();
    return out;
  }
}

/** A mix frame for a recording: the nowMs() instant it stands for (float64 LE), then the PCM. */
export function pcmAtPacket(pcmLE: Buffer, atMs: number): Buffer {
  const out = Buffer.allocUnsafe(8 + pcmLE.length);
  out.writeDoubleLE(atMs, 0);
  pcmLE.copy(out, 8);
  return out;
}

export function readPcmAt(packet: Buffer): { atMs: number; pcm: Buffer } | undefined {
  if (packet.length < 8) return undefined;
  return { atMs: packet.readDoubleLE(0), pcm: packet.subarray(8) };
}
