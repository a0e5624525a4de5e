import { afterAll, describe, expect, it } from 'vitest';
import { EL, loadPresets, participantLaunch, type AudioCodec } from '../../src/core/pipelines.js';
import { GstPipeline } from '../../src/gst/native.js';
import { L16Packetizer } from '../../src/media/l16.js';
import { LocalUdp, sendToPipeline } from '../../src/media/localUdp.js';
import { pcmFrom, sleep, toneDb } from '../helpers/media.js';

/**
 * G.711 and G.722 for legacy endpoints, through real GStreamer: a tone goes into a participant
 * pipeline's mix-out branch as RTP L16 (as the mixer sends it), comes out as the codec's RTP, goes
 * back into the same pipeline's ingest branch, and comes out as the PCM the mixer takes. The tone's
 * frequency and level survive, and the RTP is what a SIP phone expects: the static payload type,
 * 20 ms in every packet, the timestamp advancing 160 a packet (8 kHz clock, G.722's too).
 */

const presets = loadPresets();
const closers: Array<{ close(): unknown }> = [];
afterAll(async () => {
  await Promise.all(closers.map((c) => c.close()));
});

const LEVEL_DB = 20 * Math.log10(0.25); // audiotestsrc volume=0.25: -12 dBFS

/** The tone as the mixer worker sends a mix: 20 ms of mono S16 at 48 kHz per RTP L16 packet. */
async function l16Tone(freq: number, port: number) {
  const l16 = new L16Packetizer();
  let samples = 0n;
  const pcm = await LocalUdp.open((b) => {
    sendToPipeline(port, l16.packet(b, (samples * 1_000_000_000n) / 48000n));
    samples += BigInt(b.length / 2);
  });
  const src = new GstPipeline(
    `audiotestsrc is-live=true wave=sine freq=${freq} volume=0.25 samplesperbuffer=960 ! audio/x-raw,format=S16LE,rate=48000,channels=1 ! ` +
      `udpsink host=127.0.0.1 port=${pcm.port} sync=false async=false`,
  );
  src.play();
  return [src, pcm];
}

/** Signal to noise and distortion in dB: the tone's power against everything else's. */
function sinadDb(samples: Int16Array, freq: number): number {
  let sum = 0;
  for (const s of samples) sum += (s / 32768) ** 2;
  const total = sum / samples.length;
  const tone = 10 ** (toneDb(samples, freq) / 10) / 2; // a sine of amplitude A has power A²/2
  return 10 * Math.log10(tone / Math.max(total - tone, 1e-12));
}

interface RtpSeen {
  pt: number;
  seq: number;
  ts: number;
  payload: number;
  /** performance.now() when it reached the tap. */
  at: number;
}

describe.each([
  // Measured SINAD (GStreamer 1.22): PCMU 39 dB, PCMA 39 dB, G.722 47 dB at 1 kHz and 23 dB at 5 kHz
  // (its upper band has 2 bits a sample).
  { codec: 'pcmu', pt: 0, freq: 1000, minSinad: 30 },
  { codec: 'pcma', pt: 8, freq: 700, minSinad: 30 },
  // 5 kHz: above what 8 kHz G.711 carries, so this shows the 16 kHz audio is kept.
  { codec: 'g722', pt: 9, freq: 5000, minSinad: 15 },
  { codec: 'g722', pt: 9, freq: 1000, minSinad: 30 },
] as Array<{ codec: AudioCodec; pt: number; freq: number; minSinad: number }>)('$codec at $freq Hz, out and back in through real GStreamer', ({ codec, pt, freq, minSinad }) => {
  it('keeps the tone, and sends the static payload type with 20 ms (160 timestamp units) per packet', async () => {
    const rtp: RtpSeen[] = [];
    const decoded: Buffer[] = [];
    let ingestPort = 0;
    // The codec's RTP is taken apart here, then sent on to the pipeline's own ingest.
    const tap = await LocalUdp.open((b) => {
      rtp.push({ pt: b[1] & 0x7f, seq: b.readUInt16BE(2), ts: b.readUInt32BE(4), payload: b.length - 12, at: performance.now() });
      if (ingestPort) sendToPipeline(ingestPort, b);
    });
    const pcmOut = await LocalUdp.open((b) => decoded.push(b));
    closers.push(tap, pcmOut);
    const pipeline = new GstPipeline(
      participantLaunch({ audio: { codec, payloadType: pt, pcmPort: pcmOut.port }, mix: { codec, bitrate: 64000, rtpPort: tap.port } }, presets),
    );
    pipeline.play();
    closers.push(pipeline);
    ingestPort = Number(pipeline.get(EL.audioIn, 'port'));
    const tone = await l16Tone(freq, Number(pipeline.get(EL.mixIn, 'port')));
    closers.push(...tone);

    await sleep(2500);
    // The tone stops with its pipeline. Left running until the end of the file, a test's tone went
    // on to the port its pipeline had freed, which the kernel can give the next test's pipeline: a
    // CI run's PCMA test got the PCMU test's tone beside its own (twice the packets, 2-byte ones
    // among them, and its tone 6 dB down).
    for (const t of tone) await t.close();
    await pipeline.close();

    const samples = pcmFrom(decoded);
    expect(samples.length, `decoded ${samples.length} samples`).toBeGreaterThan(48000);
    // 100 ms blocks (a whole number of cycles of each tone) over the last 1.5 s: one glitch where
    // the busy test machine stalled the sender spoils a block, not the measurement.
    const blocks = Array.from({ length: 15 }, (_, i) => samples.subarray(samples.length - (15 - i) * 4800, samples.length - (14 - i) * 4800));
    const levels = blocks.map((b) => toneDb(b, freq));
    const sinads = blocks.map((b) => sinadDb(b, freq));
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const level = median(levels);
    const sinad = median(sinads);
    const good = blocks.filter((_, i) => Math.abs(levels[i] - LEVEL_DB) < 1.5 && sinads[i] > minSinad).length;
    const deltas = rtp.slice(1).map((p, i) => ({ seq: (p.seq - rtp[i].seq) & 0xffff, ts: (p.ts - rtp[i].ts) >>> 0, gapMs: p.at - rtp[i].at }));
    const jumps = deltas.filter((d) => d.ts !== 160);
    console.log(
      `${codec} ${freq} Hz: ${rtp.length} packets (payload ${[...new Set(rtp.map((p) => p.payload))]} bytes, pt ${[...new Set(rtp.map((p) => p.pt))]}, ` +
        `timestamp steps of 160: ${deltas.length - jumps.length} of ${deltas.length}` +
        `${jumps.map((d) => `, one of ${d.ts} after ${d.gapMs.toFixed(0)} ms`).join('')}); decoded ${(samples.length / 48000).toFixed(2)} s, ` +
        `tone ${level.toFixed(2)} dBFS (sent ${LEVEL_DB.toFixed(2)}), SINAD ${sinad.toFixed(1)} dB (medians of 100 ms blocks; ${good} of ${blocks.length} blocks good)`,
    );

    // The tone survives: its level to within 1.5 dB, and it is most of what comes out.
    expect(level).toBeGreaterThan(LEVEL_DB - 1.5);
    expect(level).toBeLessThan(LEVEL_DB + 1.5);
    expect(sinad).toBeGreaterThan(minSinad);
    expect(good, 'blocks with the tone at its level and SINAD').toBeGreaterThanOrEqual(12);

    // What a legacy endpoint expects on the wire.
    expect(rtp.length).toBeGreaterThan(50);
    expect(new Set(rtp.map((p) => p.pt))).toEqual(new Set([pt]));
    expect(new Set(rtp.map((p) => p.payload))).toEqual(new Set([160])); // 20 ms: 160 samples of G.711, 160 bytes of G.722
    expect(deltas.every((d) => d.seq === 1)).toBe(true);
    // The mix branch takes its timing from when the mixer's packets arrive (as the Opus one does):
    // a stall before it (a busy test machine) shows as one larger step. Otherwise every step is 160.
    expect(jumps.length, 'timestamp steps other than 160').toBeLessThanOrEqual(Math.floor(deltas.length / 20));
  });
});
