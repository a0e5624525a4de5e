import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { compose } from '../../src/core/composition.js';
import { LayoutRegistry } from '../../src/core/layouts.js';
import { compositeLaunch, EL, loadPresets, participantLaunch, type CompositeTile } from '../../src/core/pipelines.js';
import { GstPipeline } from '../../src/gst/native.js';
import { ImageRenderer } from '../../src/render/images.js';
import { colourSender, frameGrabber, latestFrame, near, sleep } from '../helpers/media.js';

const presets = loadPresets();
const grid = LayoutRegistry.fromDirectory(path.resolve('layouts')).get('grid');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mcu-gst-'));
const renderer = new ImageRenderer(path.join(tmp, 'cache'));
const running: GstPipeline[] = [];
afterAll(async () => {
  await Promise.all(running.map((p) => p.close()));
});

async function buildComposite(codec: 'vp8' | 'h264', outDir: string) {
  const colours: Record<string, [number, number, number]> = { red: [220, 30, 30], green: [30, 200, 40], blue: [40, 50, 220] };
  // Each publisher: a VP8 sender -> the participant pipeline, which decodes once into its channel.
  for (const [id, rgb] of Object.entries(colours)) {
    const ingest = new GstPipeline(participantLaunch({ video: { codec: 'vp8', payloadType: 96, channel: `gst-test-${codec}-${id}` } }, presets));
    ingest.play();
    running.push(ingest, colourSender(rgb, Number(ingest.get(EL.videoIn, 'port'))));
  }
  const subjects = [
    ...Object.keys(colours).map((id) => ({ id, name: id[0].toUpperCase() + id.slice(1), hasVideo: true })),
    { id: 'nocam', name: 'Ada Lovelace', hasVideo: false },
  ];
  const c = compose(subjects, grid, { width: 640, height: 360, fps: 30 });
  const tiles: CompositeTile[] = await Promise.all(
    c.tiles.map(async (t) => {
      const plate = await renderer.namePlate(t.name, t.width - 8, t.height);
      return {
        ...t,
        source:
          t.source === 'video'
            ? { kind: 'video' as const, channel: `gst-test-${codec}-${t.participantId}` }
            : { kind: 'image' as const, path: await renderer.placeholder(t.participantId, t.name, t.width, t.height) },
        plate: { path: plate.path, x: t.x + 4, y: t.y + t.height - plate.height - 4 },
      };
    }),
  );
  const grab = frameGrabber(outDir, codec);
  const launch = compositeLaunch(
    { width: 640, height: 360, fps: 30, codec, bitrate: 1_500_000, tiles, background: await renderer.waitingCard(640, 360), inputTimeoutNs: 5_000_000_000n, rtpPorts: [grab.port], ssrc: 1 },
    presets,
  );
  const comp = new GstPipeline(launch);
  comp.play();
  running.push(grab.pipeline, comp);
  return { composition: c, colours, tiles };
}

describe.each(['vp8', 'h264'] as const)('a real %s composite', (codec) => {
  it('puts each publisher’s colour at its tile, a placeholder for the one without video, and name plates', async () => {
    const out = path.join(tmp, `frames-${codec}`);
    const { composition, colours, tiles } = await buildComposite(codec, out);
    // The first frames take a moment on a busy machine: wait for them, up to 15 s.
    let f: Awaited<ReturnType<typeof latestFrame>> | undefined;
    for (const end = Date.now() + 15_000; !f; ) {
      await sleep(500);
      f = await latestFrame(out).catch((err) => {
        if (Date.now() > end) throw err;
        return undefined;
      });
    }
    await sleep(1000); // a picture with every tile settled, not the very first
    f = await latestFrame(out);
    expect([f.width, f.height]).toEqual([640, 360]);
    for (const [i, t] of composition.tiles.entries()) {
      const centre = f.px(t.x + t.width / 2, t.y + t.height / 2);
      if (t.source === 'video') {
        expect(near(centre, colours[t.participantId], 40), `${t.name} tile centre ${centre}`).toBe(true);
        // The name plate darkens the bottom-left corner of the tile.
        const plate = f.px(t.x + 10, t.y + t.height - 10);
        expect(plate.reduce((a, b) => a + b)).toBeLessThan(centre.reduce((a, b) => a + b) * 0.8);
      } else {
        // The placeholder tile shows the rendered placeholder (its coloured disc), not black.
        const png = tiles[i].source as { path: string };
        const { data, info } = await sharp(png.path).removeAlpha().raw().toBuffer({ resolveWithObject: true });
        const at = (x: number, y: number) => [...data.subarray((y * info.width + x) * 3, (y * info.width + x) * 3 + 3)];
        const want = at(Math.round(t.width / 2), Math.round(t.height * 0.22));
        const got = f.px(t.x + t.width / 2, t.y + t.height * 0.22);
        expect(near(got, want, 40), `placeholder ${got} vs ${want}`).toBe(true);
        expect(got.reduce((a, b) => a + b)).toBeGreaterThan(100);
      }
    }
    // Between the tiles: the black background.
    expect(near(f.px(1, 1), [0, 0, 0], 20)).toBe(true);
  });
});
