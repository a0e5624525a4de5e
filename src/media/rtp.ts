/** Minimal RTP helpers: header fields, keyframe detection, and an SSRC/sequence/timestamp rewriter. */

export interface RtpView {
  marker: boolean;
  payloadType: number;
  sequenceNumber: number;
  timestamp: number;
  ssrc: number;
  payloadOffset: number;
}

export function parseRtp(buf: Buffer): RtpView | undefined {
  if (buf.length < 12 || buf[0] >> 6 !== 2) return undefined;
  const cc = buf[0] & 0x0f;
  let off = 12 + cc * 4;
  if (buf[0] & 0x10) {
    if (buf.length < off + 4) return undefined;
    off += 4 + buf.readUInt16BE(off + 2) * 4;
  }
  if (off > buf.length) return undefined;
  let end = buf.length;
  if (buf[0] & 0x20) end -= buf[buf.length - 1];
  if (end < off) return undefined;
  return {
    marker: (buf[1] & 0x80) !== 0,
    payloadType: buf[1] & 0x7f,
    sequenceNumber: buf.readUInt16BE(2),
    timestamp: buf.readUInt32BE(4),
    ssrc: buf.readUInt32BE(8),
    payloadOffset: off,
  };
}

/** True when this packet starts a VP8 keyframe (RFC 7741 section 4.3). */
export function isVp8KeyframeStart(payload: Buffer): boolean {
  if (payload.length < 1) return false;
  const b0 = payload[0];
  const start = (b0 & 0x10) !== 0 && (b0 & 0x07) === 0;
  if (!start) return false;
  let i = 1;
  if (b0 & 0x80) {
    const x = payload[i++];
    if (x & 0x80) i += payload[i] & 0x80 ? 2 : 1;
    if (x & 0x40) i++;
    if (x & 0x30) i++;
  }
  return i < payload.length && (payload[i] & 0x01) === 0;
}

/**
 * True when this packet starts a keyframe (RFC 6184): an SPS, or the first slice of an IDR picture
 * (first_mb_in_slice 0, whose Exp-Golomb code is the single bit "1"). A keyframe cut into slices for
 * single NAL unit mode has many IDR slices; a switch must not start at a later one.
 */
export function isH264KeyframeStart(payload: Buffer): boolean {
  if (payload.length < 1) return false;
  const type = payload[0] & 0x1f;
  if (type === 7) return true;
  if (type === 5) return payload.length > 1 && (payload[1] & 0x80) !== 0;
  if (type === 24) {
    // STAP-A: walk the aggregated NAL units.
    let i = 1;
    while (i + 2 < payload.length) {
      const size = payload.readUInt16BE(i);
      const t = payload[i + 2] & 0x1f;
      if (t === 5 || t === 7) return true;
      i += 2 + size;
    }
    return false;
  }
  if (type === 28 && payload.length > 1) {
    const fu = payload[1];
    if ((fu & 0x80) === 0) return false;
    return (fu & 0x1f) === 7 || ((fu & 0x1f) === 5 && payload.length > 2 && (payload[2] & 0x80) !== 0);
  }
  return false;
}

export function isKeyframeStart(codec: 'vp8' | 'h264', packet: Buffer, view: RtpView): boolean {
  const payload = packet.subarray(view.payloadOffset);
  return codec === 'vp8' ? isVp8KeyframeStart(payload) : isH264KeyframeStart(payload);
}

/**
 * Keeps one outgoing RTP stream continuous while its source changes (a pipeline rebuild, a
 * different shared view): sequence numbers go on by one, and timestamps advance by the wall-clock
 * time that passed, so the receiver sees one stream with no backwards jumps.
 */
export class RtpRewriter {
  #source: unknown = undefined;
  #seqOffset = 0;
  #tsOffset = 0;
  #lastSeq = Math.floor(Math.random() * 0x8000);
  #lastTs = Math.floor(Math.random() * 0x7fffffff);
  #lastWall = 0;
  #started = false;

  constructor(
    readonly clockRate: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Rewrites seq and timestamp in place; `source` identifies where the packet came from. */
  rewrite(packet: Buffer, view: RtpView, source: unknown): void {
    const wall = this.now();
    if (source !== this.#source) {
      const elapsed = this.#started ? Math.max(1, Math.round(((wall - this.#lastWall) * this.clockRate) / 1000)) : 0;
      const seq = (this.#lastSeq + (this.#started ? 1 : 0)) & 0xffff;
      const ts = (this.#lastTs + elapsed) >>> 0;
      this.#seqOffset = (seq - view.sequenceNumber) & 0xffff;
      this.#tsOffset = (ts - view.timestamp) >>> 0;
      this.#source = source;
      this.#started = true;
    }
    const seq = (view.sequenceNumber + this.#seqOffset) & 0xffff;
    const ts = (view.timestamp + this.#tsOffset) >>> 0;
    packet.writeUInt16BE(seq, 2);
    packet.writeUInt32BE(ts, 4);
    this.#lastWall = wall;
    this.#lastSeq = seq;
    this.#lastTs = ts;
  }
}

/** Where a VP8 payload descriptor keeps its PictureID (RFC 7741 4.2): offset and width, if any. */
function vp8PictureId(packet: Buffer, view: RtpView): { at: number; bits: 7 | 15 } | undefined {
  const p = view.payloadOffset;
  if (packet.length < p + 3 || !(packet[p] & 0x80)) return undefined; // no X byte
  if (!(packet[p + 1] & 0x80)) return undefined; // no I bit: no PictureID
  return packet[p + 2] & 0x80 ? { at: p + 2, bits: 15 } : { at: p + 2, bits: 7 };
}

/**
 * Keeps VP8 PictureIDs continuous across a change of source, as the sequence numbers are: each
 * composite's payloader starts its PictureIDs anywhere, and a receiver takes a new keyframe whose
 * PictureID is behind the last one it decoded for an old frame and drops it, and the frames after
 * it (measured: Chromium froze for up to a second at a layout change, with no packet lost).
 */
export class Vp8PictureIdRewriter {
  #source: unknown = undefined;
  #offset = 0;
  #last = -1;

  rewrite(packet: Buffer, view: RtpView, source: unknown): void {
    const pid = vp8PictureId(packet, view);
    if (!pid) return;
    const mod = pid.bits === 15 ? 0x8000 : 0x80;
    const raw = pid.bits === 15 ? packet.readUInt16BE(pid.at) & 0x7fff : packet[pid.at] & 0x7f;
    if (source !== this.#source) {
      this.#source = source;
      const next = this.#last < 0 ? raw : (this.#last + 1) % mod;
      this.#offset = (next - raw + mod) % mod;
    }
    const out = (raw + this.#offset) % mod;
    if (pid.bits === 15) packet.writeUInt16BE(0x8000 | out, pid.at);
    else packet[pid.at] = out;
    this.#last = out;
  }
}
