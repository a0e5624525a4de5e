// Starts N pipelines that poll their bus, then checks that async file reads still complete.
// Prints one JSON line. Run with and without `-r bin/threadpool.cjs` by test/gst/threadpool.test.ts.
import fs from 'node:fs/promises';
import { GstPipeline } from '../../dist/gst/native.js';

const n = Number(process.argv[2] ?? 16);
const pipelines = [];
for (let i = 0; i < n; i++) {
  const p = new GstPipeline('videotestsrc is-live=true ! video/x-raw,width=64,height=36,framerate=10/1 ! fakesink');
  p.play(() => undefined);
  pipelines.push(p);
}
await new Promise((r) => setTimeout(r, 300));
const started = performance.now();
const reads = Promise.all(Array.from({ length: 20 }, () => fs.readFile(new URL(import.meta.url))));
const result = await Promise.race([reads.then(() => 'ok'), new Promise((r) => setTimeout(() => r('starved'), 2000))]);
const ms = Math.round(performance.now() - started);
await Promise.all(pipelines.map((p) => p.close()));
console.log(JSON.stringify({ pipelines: n, result, ms, pool: process.env.UV_THREADPOOL_SIZE ?? 'default' }));
process.exit(0);
