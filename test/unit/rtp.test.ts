import { describe, expect, it } from 'vitest';
import { isH264KeyframeStart, isVp8KeyframeStart, parseRtp, RtpRewriter, Vp8PictureIdRewriter } from '../../src/media/rtp.js';

function packet(seq: number, ts: number, payload: number[] = [0x10, 0x00], marker = false): Buffer {
  const b = Buffer.alloc(12 + payload.length);
  b[0] = 0x80;
  b[1] = (marker ? 0x80 : 0) | 96;
  b.writeUInt16BE(seq & 0xffff, 2);
  b.writeUInt32BE(ts >>> 0, 4);
  b.writeUInt32BE(0x1234, 8);
  Buffer.from(payload).copy(b, 12);
  return b;
}

describe('RtpRewriter', () => {
  it('keeps sequence numbers consecutive and timestamps rising across a change of source', () => {
    let now = 1000;
    const rw = new RtpRewriter(90000, () => now);
    const out: Array<[number, number]> = [];
    const send = (p: Buffer, src: string) => {
      rw.rewrite(p, parseRtp(p)!, src);
      out.push([p.readUInt16BE(2), p.readUInt32BE(4)]);
    };
    send(packet(100, 5000), 'a');
    now += 33;
    send(packet(101, 8000), 'a');
    now += 100; // the new pipeline's first packet comes 100 ms later, with its own random numbering
    send(packet(40000, 4_000_000_000), 'b');
    now += 33;
    send(packet(40001, 4_000_003_000), 'b');
    const seqs = out.map(([s]) => s);
    for (let i = 1; i < seqs.length; i++) expect((seqs[i] - seqs[i - 1]) & 0xffff).toBe(1);
    const ts = out.map(([, t]) => t);
    expect((ts[1] - ts[0]) >>> 0).toBe(3000);
    expect((ts[2] - ts[1]) >>> 0).toBe(9000); // 100 ms of wall clock at 90 kHz
    expect((ts[3] - ts[2]) >>> 0).toBe(3000);
  });

  it('wraps sequence numbers and timestamps without going backwards', () => {
    const rw = new RtpRewriter(48000, () => 0);
    const a = packet(0xffff, 0xffffffff);
    rw.rewrite(a, parseRtp(a)!, 'x');
    const b = packet(0, 959);
    rw.rewrite(b, parseRtp(b)!, 'x');
    expect((b.readUInt16BE(2) - a.readUInt16BE(2)) & 0xffff).toBe(1);
    expect((b.readUInt32BE(4) - a.readUInt32BE(4)) >>> 0).toBe(960);
  });
});

describe('keyframe detection', () => {
  it('finds VP8 keyframes (S bit, partition 0, P bit clear), with and without extensions', () => {
    expect(isVp8KeyframeStart(Buffer.from([0x10, 0x00]))).toBe(true);
    expect(isVp8KeyframeStart(Buffer.from([0x10, 0x01]))).toBe(false); // inter frame
    expect(isVp8KeyframeStart(Buffer.from([0x00, 0x00]))).toBe(false); // not a start
    // X bit, then I bit with a 15-bit picture id (2 bytes), then the payload header.
    expect(isVp8KeyframeStart(Buffer.from([0x90, 0x80, 0x81, 0x23, 0x00]))).toBe(true);
    expect(isVp8KeyframeStart(Buffer.from([0x90, 0x80, 0x81, 0x23, 0x01]))).toBe(false);
  });

  it('finds H.264 IDR and SPS in single NAL, STAP-A and FU-A packets', () => {
    expect(isH264KeyframeStart(Buffer.from([0x65, 0x88]))).toBe(true); // IDR, first slice (first_mb_in_slice 0)
    expect(isH264KeyframeStart(Buffer.from([0x65, 0x08]))).toBe(false); // a later slice of the same IDR picture
    expect(isH264KeyframeStart(Buffer.from([0x65]))).toBe(false);
    expect(isH264KeyframeStart(Buffer.from([0x67]))).toBe(true); // SPS
    expect(isH264KeyframeStart(Buffer.from([0x41]))).toBe(false); // non-IDR slice
    expect(isH264KeyframeStart(Buffer.from([0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce]))).toBe(true); // STAP-A: SPS, PPS
    expect(isH264KeyframeStart(Buffer.from([0x7c, 0x85, 0x88]))).toBe(true); // FU-A start of an IDR picture's first slice
    expect(isH264KeyframeStart(Buffer.from([0x7c, 0x85, 0x08]))).toBe(false); // FU-A start of a later slice
    expect(isH264KeyframeStart(Buffer.from([0x7c, 0x05]))).toBe(false); // FU-A middle
  });

  it('parses header extensions and padding', () => {
    const p = Buffer.from([0xb0, 0x60, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0, 0x10, 0x00, 0, 2]);
    const v = parseRtp(p)!;
    expect(v.payloadOffset).toBe(20);
    expect(v.sequenceNumber).toBe(1);
    expect(isVp8KeyframeStart(p.subarray(v.payloadOffset, p.length - 2))).toBe(true);
    expect(parseRtp(Buffer.from([0x40, 0]))).toBeUndefined();
  });
});

describe('Vp8PictureIdRewriter', () => {
  // X bit; I bit; a 15-bit PictureID (M bit set); then the VP8 payload header byte.
  const vp8 = (seq: number, pictureId: number) => packet(seq, seq * 3000, [0x90, 0x80, 0x80 | (pictureId >> 8), pictureId & 0xff, 0x00]);
  const pictureIdOf = (p: Buffer) => p.readUInt16BE(14) & 0x7fff;

  it('keeps PictureIDs continuous when the source changes, wrapping at 15 bits', () => {
    const rw = new Vp8PictureIdRewriter();
    const out: number[] = [];
    const send = (p: Buffer, src: string) => {
      rw.rewrite(p, parseRtp(p)!, src);
      out.push(pictureIdOf(p));
      expect(p[14] & 0x80, 'M bit kept').toBe(0x80);
    };
    send(vp8(1, 32766), 'a');
    send(vp8(2, 32767), 'a');
    send(vp8(3, 0), 'a');
    // A new composite whose payloader started its PictureIDs far behind.
    send(vp8(4, 100), 'b');
    send(vp8(5, 101), 'b');
    expect(out).toEqual([32766, 32767, 0, 1, 2]);
  });

  it('leaves packets without a PictureID alone', () => {
    const rw = new Vp8PictureIdRewriter();
    const p = packet(1, 0, [0x10, 0x00]);
    const before = Buffer.from(p);
    rw.rewrite(p, parseRtp(p)!, 'a');
    expect(p.equals(before)).toBe(true);
  });
});
