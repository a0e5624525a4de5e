/**
 * The frame size a VP8 keyframe declares (RFC 7741 payload descriptor, then the VP8 frame header),
 * from the RTP payload of a frame's first packet; undefined for anything else.
 */
export function vp8KeyframeSize(payload: Buffer): { width: number; height: number } | undefined {
  let i = 0;
  const b0 = payload[i++];
  if (!(b0 & 0x10)) return undefined; // S: not the start of a partition
  if (b0 & 0x80) {
    const x = payload[i++];
    if (x & 0x80) i += payload[i] & 0x80 ? 2 : 1; // I: picture id, 7 or 15 bits
    if (x & 0x40) i++; // L: TL0PICIDX
    if (x & 0x30) i++; // T or K
  }
  if (payload[i] & 0x01) return undefined; // an interframe
  if (payload[i + 3] !== 0x9d || payload[i + 4] !== 0x01 || payload[i + 5] !== 0x2a) return undefined;
  return { width: payload.readUInt16LE(i + 6) & 0x3fff, height: payload.readUInt16LE(i + 8) & 0x3fff };
}
