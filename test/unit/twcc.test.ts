import { describe, expect, it } from 'vitest';
import { RTCRtpSender, RtcpPacketConverter, TransportWideCC } from 'werift';

// Transport-wide congestion control feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01)
// as Chromium sends it: run-length chunks while every packet has the same status, a two-bit status
// vector as soon as one is lost or arrives with a large delta. werift 0.25.2 read only the
// run-length chunks, restarted each at the base sequence number and truncated every delta to a
// millisecond, so its bandwidth estimate paired one packet's send time with another's arrival; the
// fix is in patches/werift+0.25.2.patch.

/** One feedback packet, byte by byte. */
function feedback(opts: { base: number; count: number; referenceTime: number; chunks: number[]; deltas: Array<{ units: number; large?: boolean }> }): Buffer {
  const fixed = Buffer.alloc(16);
  fixed.writeUInt32BE(0x11111111, 0); // sender SSRC
  fixed.writeUInt32BE(0x22222222, 4); // media SSRC
  fixed.writeUInt16BE(opts.base, 8);
  fixed.writeUInt16BE(opts.count, 10);
  fixed.writeUIntBE(opts.referenceTime, 12, 3);
  fixed.writeUInt8(7, 15); // feedback packet count
  const chunks = Buffer.alloc(2 * opts.chunks.length);
  opts.chunks.forEach((c, i) => chunks.writeUInt16BE(c, 2 * i));
  const deltas = Buffer.concat(
    opts.deltas.map((d) => {
      const b = Buffer.alloc(d.large ? 2 : 1);
      if (d.large) b.writeInt16BE(d.units);
      else b.writeUInt8(d.units);
      return b;
    }),
  );
  let body = Buffer.concat([fixed, chunks, deltas]);
  if (body.length % 4) body = Buffer.concat([body, Buffer.alloc(4 - (body.length % 4))]);
  const header = Buffer.alloc(4);
  header.writeUInt8(0x80 | 15, 0); // V=2, FMT=15
  header.writeUInt8(205, 1); // RTPFB
  header.writeUInt16BE(body.length / 4, 2);
  return Buffer.concat([header, body]);
}

const parse = (b: Buffer) => {
  const [p] = RtcpPacketConverter.deSerialize(b) as Array<{ feedback: unknown }>;
  expect(p.feedback).toBeInstanceOf(TransportWideCC);
  return p.feedback as TransportWideCC;
};

// 20 packets from sequence number 65530 (so the numbers wrap): five received, then seven in a
// two-bit vector (received, lost, received 80 ms later, received, received, lost, received), then
// eight received half a millisecond apart.
const mixed = () =>
  feedback({
    base: 65530,
    count: 20,
    referenceTime: 1000, // x 64 ms
    chunks: [
      0b0_01_0000000000101, // run length: 5 x "received, small delta"
      0b1_1_01_00_10_01_01_00_01, // status vector, two-bit symbols: 1 0 2 1 1 0 1
      0b0_01_0000000001000, // run length: 8 x "received, small delta"
    ],
    deltas: [
      ...Array.from({ length: 5 }, () => ({ units: 4 })), // 1 ms each (250 us units)
      { units: 4 },
      { units: 320, large: true }, // 80 ms
      { units: 4 },
      { units: 4 },
      { units: 4 },
      ...Array.from({ length: 8 }, () => ({ units: 2 })), // 0.5 ms each
    ],
  });

describe('transport-wide feedback', () => {
  it('gives every packet of every chunk its own sequence number, in order and wrapping', () => {
    const r = parse(mixed()).packetResults;
    expect(r.map((x) => x.sequenceNumber)).toEqual([65530, 65531, 65532, 65533, 65534, 65535, ...Array.from({ length: 14 }, (_, i) => i)]);
    expect(r.map((x) => (x.received ? 1 : 0)).join('')).toBe('11111' + '1011101' + '11111111');
  });

  it('places each arrival at the sum of the deltas before it, to the quarter millisecond', () => {
    const r = parse(mixed()).packetResults;
    const at = r.map((x) => (x.received ? x.receivedAtMs : null));
    const t0 = 1000 * 64;
    expect(at.slice(0, 6)).toEqual([1, 2, 3, 4, 5, 6].map((ms) => t0 + ms));
    expect(at[6]).toBeNull();
    expect(at.slice(7, 10)).toEqual([86, 87, 88].map((ms) => t0 + ms));
    expect(at[10]).toBeNull();
    expect(at[11]).toBe(t0 + 89);
    expect(at.slice(12)).toEqual([89.5, 90, 90.5, 91, 91.5, 92, 92.5, 93].map((ms) => t0 + ms));
  });

  it('reads a one-bit status vector, and ignores the symbols past the packet count', () => {
    const r = parse(
      feedback({
        base: 100,
        count: 10,
        referenceTime: 5,
        chunks: [0b1_0_110111_11110000], // one-bit symbols: 1 1 0 1 1 1 1 1 1 1, then 4 past the count
        deltas: Array.from({ length: 9 }, () => ({ units: 40 })), // 10 ms each
      }),
    ).packetResults;
    expect(r).toHaveLength(10);
    expect(r.map((x) => x.sequenceNumber)).toEqual(Array.from({ length: 10 }, (_, i) => 100 + i));
    expect(r[2].received).toBe(false);
    expect(r[9].receivedAtMs).toBe(5 * 64 + 90);
  });
});

describe("werift's sender bandwidth estimate", () => {
  it('pairs each packet with its own arrival, across a status vector with a large delta', () => {
    const s = new RTCRtpSender('video');
    const bwe = s.senderBWE;
    const estimates: number[] = [];
    bwe.onAvailableBitrate.subscribe((b: number) => estimates.push(b));
    // 20 packets of 1000 bytes, one every 5 ms (1.6 Mbit/s), sent just now.
    const now = Date.now();
    for (let i = 0; i < 20; i++) bwe.rtpPacketSent({ wideSeq: (65530 + i) & 0xffff, size: 1000, sendingAtMs: now - 100 + 5 * i, sentAtMs: now - 100 + 5 * i });
    // They arrive 5 ms apart too, except one 80 ms stall in the middle that the receiver caught up
    // on at once (a starved page): a large delta, in a status vector.
    const fivesMs = (n: number) => Array.from({ length: n }, () => ({ units: 20 }));
    bwe.receiveTWCC(
      parse(
        feedback({
          base: 65530,
          count: 20,
          referenceTime: 1000,
          chunks: [0b0_01_0000000001010, 0b1_1_01_10_01_01_01_01_01, 0b0_01_0000000000011],
          deltas: [...fivesMs(10), { units: 20 }, { units: 320, large: true }, { units: 0 }, { units: 0 }, { units: 0 }, { units: 0 }, { units: 0 }, ...fivesMs(3)],
        }),
      ),
    );
    expect(estimates).toHaveLength(1);
    // Sent: 20 packets over 95 ms. Received over 10 x 5 + 80 + 3 x 5 = 145 ms: the receive rate is
    // what the link carried, and the estimate is the lesser of the two.
    expect(estimates[0]).toBe(Math.trunc((20_000 * 8 * 1000) / 145));
  });

  it('forgets what was sent once feedback can no longer name it', () => {
    const bwe = new RTCRtpSender('video').senderBWE as unknown as { rtpPacketSent(i: object): void; sentInfos: Map<number, unknown> };
    const t0 = Date.now();
    for (let i = 0; i < 70_000; i++) bwe.rtpPacketSent({ wideSeq: i & 0xffff, size: 1200, sendingAtMs: t0 + i, sentAtMs: t0 + i });
    // At most 5 s of them, and never more than 4096.
    expect(bwe.sentInfos.size).toBeLessThanOrEqual(4096);
    for (let i = 0; i < 100; i++) bwe.rtpPacketSent({ wideSeq: i, size: 1200, sendingAtMs: t0 + 100_000 + 100 * i, sentAtMs: 0 });
    expect(bwe.sentInfos.size).toBeLessThanOrEqual(51);
    expect([...bwe.sentInfos.keys()].at(-1)).toBe(99);
  });
});
