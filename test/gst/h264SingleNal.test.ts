import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { compositeLaunch, EL, loadPresets, type CompositeTile } from '../../src/core/pipelines.js';
import { GstPipeline } from '../../src/gst/native.js';
import { LocalUdp } from '../../src/media/localUdp.js';
import { frameGrabber, latestFrame, sleep } from '../helpers/media.js';

/**
 * H.264 composites for packetization-mode=0 receivers (RFC 6184 single NAL unit mode): every RTP
 * packet holds exactly one whole NAL unit (type 1-23: no STAP-A 24, no FU-A 28) and no packet is
 * over the payloader's MTU, keyframes included; each keyframe starts with its SPS and PPS and has
 * none between its slices (one access unit per picture); and the stream still decodes.
 */

const presets = loadPresets();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mcu-h264-'));
const running: Array<{ close(): unknown }> = [];
afterAll(async () => {
  await Promise.all(running.map((p) => p.close()));
});

/** A live test picture into an inter-pipeline channel, as a participant pipeline puts its decoded video. */
function feeder(channel: string, pattern: string, width: number, height: number): GstPipeline {
  const p = new GstPipeline(
    `videotestsrc is-live=true pattern=${pattern} ! video/x-raw,format=I420,width=${width},height=${height},framerate=30/1,pixel-aspect-ratio=1/1,interlace-mode=progressive ! ` +
      `intervideosink sync=false channel=${channel}`,
  );
  p.play();
  return p;
}

interface Packet {
  size: number;
  nal: number;
  timestamp: number;
  marker: boolean;
  pt: number;
}

describe.each([
  [640, 360, 1_500_000],
  [1280, 720, 2_500_000],
])('a real H.264 composite at %ix%i', (width, height, bitrate) => {
  it('sends one whole NAL unit per RTP packet, none over 1200 bytes, keyframes included, and decodes', async () => {
    const id = `${width}x${height}`;
    // Noise is the worst case for slice sizes: every keyframe is as large as the bitrate allows.
    running.push(feeder(`h264nal-snow-${id}`, 'snow', width / 2, height / 2), feeder(`h264nal-ball-${id}`, 'ball', width / 2, height / 2));
    const tiles: CompositeTile[] = [
      { x: 0, y: 0, width: width / 2, height, source: { kind: 'video', channel: `h264nal-snow-${id}` } },
      { x: width / 2, y: 0, width: width / 2, height, source: { kind: 'video', channel: `h264nal-ball-${id}` } },
    ];
    const packets: Packet[] = [];
    const capture = await LocalUdp.open((b) => {
      packets.push({ size: b.length, nal: b[12] & 0x1f, timestamp: b.readUInt32BE(4), marker: (b[1] & 0x80) !== 0, pt: b[1] & 0x7f });
    });
    const frames = path.join(tmp, id);
    const grab = frameGrabber(frames, 'h264');
    running.push(capture, grab.pipeline);
    const launch = compositeLaunch(
      {
        width,
        height,
        fps: 30,
        codec: 'h264',
        bitrate,
        tiles,
        background: '/nonexistent.png',
        inputTimeoutNs: 5_000_000_000n,
        rtpPorts: [capture.port, grab.port],
        ssrc: 7,
        gopSeconds: 1,
      },
      presets,
    );
    const comp = new GstPipeline(launch);
    comp.play();
    running.push(comp);

    // At least three keyframes (one a second, and one asked for as a viewer's PLI asks) and well
    // over 60 packets.
    const idrFrames = () => new Set(packets.filter((p) => p.nal === 5).map((p) => p.timestamp)).size;
    let asked = false;
    for (const end = Date.now() + 15_000; Date.now() < end; ) {
      await sleep(250);
      if (!asked && idrFrames() >= 1) {
        await sleep(300);
        comp.forceKeyUnit(EL.videoPay);
        asked = true;
      }
      if (idrFrames() >= 3 && packets.length >= 60) break;
    }

    // The same stream decodes into whole pictures of the canvas.
    let f: Awaited<ReturnType<typeof latestFrame>> | undefined;
    for (const end = Date.now() + 10_000; !f; ) {
      f = await latestFrame(frames).catch((err) => {
        if (Date.now() > end) throw err;
        return undefined;
      });
      if (!f) await sleep(250);
    }
    expect([f.width, f.height]).toEqual([width, height]);
    await comp.close(); // what has come is what is checked
    const types: Record<number, number> = {};
    for (const p of packets) types[p.nal] = (types[p.nal] ?? 0) + 1;
    const idrSlices = new Map<number, number>();
    for (const p of packets.filter((p) => p.nal === 5)) idrSlices.set(p.timestamp, (idrSlices.get(p.timestamp) ?? 0) + 1);
    const maxSize = Math.max(...packets.map((p) => p.size));
    console.log(
      `${id}: ${packets.length} packets, largest ${maxSize} bytes, NAL types ${JSON.stringify(types)}, ` +
        `slices per keyframe ${JSON.stringify([...idrSlices.values()])}`,
    );

    expect(packets.length).toBeGreaterThanOrEqual(60);
    expect(idrSlices.size, 'keyframes seen').toBeGreaterThanOrEqual(1);
    const bad = packets.filter((p) => p.nal < 1 || p.nal > 23 || p.size > 1200);
    expect(bad, 'packets that are not one NAL unit of at most 1200 bytes').toEqual([]);
    expect(new Set(packets.map((p) => p.pt))).toEqual(new Set([102]));
    // A keyframe at this size does not fit one packet: the encoder did cut it into slices.
    expect(Math.max(...idrSlices.values())).toBeGreaterThan(1);

    // Access units (one RTP timestamp each): AUD, SPS, PPS, SEI first, then the slices, nothing
    // after the first slice; every keyframe has an SPS and a PPS before its first slice; the
    // marker is on the last packet.
    const units = new Map<number, Packet[]>();
    for (const p of packets) units.set(p.timestamp, [...(units.get(p.timestamp) ?? []), p]);
    const complete = [...units.values()].slice(1, -1); // the first and last may be cut off
    for (const au of complete) {
      const nals = au.map((p) => p.nal);
      const firstSlice = nals.findIndex((n) => n === 1 || n === 5);
      expect(firstSlice, `access unit ${nals}`).toBeGreaterThanOrEqual(0);
      expect(nals.slice(firstSlice).every((n) => n === nals[firstSlice]), `access unit ${nals}`).toBe(true);
      // SPS and PPS, each in a packet of its own, before each keyframe and nowhere else. (A keyframe
      // asked for has them twice: the force-key-unit event asks the payloader for all headers, and
      // it sends them ahead of the encoder's own AUD, SPS and PPS.)
      const headers = nals.filter((n) => n === 7 || n === 8);
      if (nals[firstSlice] === 5) expect(new Set(headers), `keyframe ${nals}`).toEqual(new Set([7, 8]));
      else expect(headers, `access unit ${nals}`).toEqual([]);
      expect(au.map((p) => p.marker)).toEqual(au.map((_, i) => i === au.length - 1));
    }
    const keyframes = complete.filter((au) => au.some((p) => p.nal === 5));
    console.log(`${id}: keyframes begin ${keyframes.map((au) => au.map((p) => p.nal).slice(0, 6).join(',')).join(' | ')}`);
    expect(keyframes.length, 'whole keyframes seen').toBeGreaterThanOrEqual(2);
  });
});
