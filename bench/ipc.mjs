import { fork } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The shared encoder's keyframe interval, in frames: 100 s, a backstop. A browser sends a keyframe
 * when it starts and when it is asked (PLI), which the generator's peers pass on to the encoder. Every
 * publisher shares the encoder, so periodic keyframes (every 2 s until session 14) came from all of
 * them at once: a burst of every publisher's keyframe packets to decrypt, forward and decode, which
 * no room of real people sends.
 */
export const KEYFRAME_FRAMES = 3000;

// Request/response over a message channel (a worker thread or a forked child): each call carries
// an id, the answer comes back with it, with `result` or `error`.
export function requester(send, on) {
  const pending = new Map();
  let nextId = 1;
  on((m) => {
    if (m?.id === undefined) return;
    pending.get(m.id)?.(m);
    pending.delete(m.id);
  });
  return (msg) =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      pending.set(id, (m) => (m.error ? reject(new Error(m.error)) : resolve(m.result)));
      send({ ...msg, id });
    });
}

/** The load generator: a child process (bench/generator.mjs) with werift peers over worker threads. */
export async function startGenerator() {
  // The generator's nice (BENCH_GENERATOR_NICE, default 0). Its peers stand for people on machines
  // of their own, but here they share the server's two cores, and the server's media threads run
  // at -10 (audio) and -5 (video). Measured in case (a) at 24 people: at 0, 8 runs in 21 lost every
  // publisher's video for 500 ms at once and then most peers' connections (a starved generator, not
  // the server); at -5 none did, but the server's p99 frame lateness rose from 21-32 to 34-47 ms,
  // and cases (a) at 20 and (b) at 10 were no longer in real time. (`nice` warns and runs it at 0
  // where raising priority is not allowed.)
  const nice = process.env.BENCH_GENERATOR_NICE ?? '0';
  const proc = fork(path.join(path.dirname(fileURLToPath(import.meta.url)), 'generator.mjs'), [], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    execPath: 'nice',
    execArgv: ['-n', nice, process.execPath, ...process.execArgv],
  });
  await new Promise((resolve, reject) => {
    proc.once('message', resolve);
    proc.once('exit', (c) => reject(new Error(`generator exited ${c}`)));
  });
  const call = requester((m) => proc.send(m), (fn) => proc.on('message', fn));
  return { proc, call, close: () => proc.disconnect() };
}
