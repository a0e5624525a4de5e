import { fork } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

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
  const proc = fork(path.join(path.dirname(fileURLToPath(import.meta.url)), 'generator.mjs'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  await new Promise((resolve, reject) => {
    proc.once('message', resolve);
    proc.once('exit', (c) => reject(new Error(`generator exited ${c}`)));
  });
  const call = requester((m) => proc.send(m), (fn) => proc.on('message', fn));
  return { proc, call, close: () => proc.disconnect() };
}
