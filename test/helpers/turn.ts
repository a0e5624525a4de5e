import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './cluster.js';

export interface TurnServer {
  /** turn: URLs clients use. */
  url: string;
  secret: string;
  proc: ChildProcess;
  output(): string;
  stop(): Promise<void>;
}

/**
 * Debian's coturn on a loopback address, taking TCP from clients only (--no-udp: the client side
 * of a network that blocks UDP), relaying over UDP on loopback, with TURN REST credentials from a
 * shared secret (use-auth-secret), as the MCU hands them out.
 */
export async function startTurn(host = '127.0.0.1'): Promise<TurnServer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcu-turn-'));
  const port = await freePort(host);
  const secret = 'turn-secret-0123456789';
  const proc = spawn(
    'turnserver',
    [
      '-n',
      `--listening-ip=${host}`,
      `--listening-port=${port}`,
      `--relay-ip=${host}`,
      '--no-udp',
      '--no-tls',
      '--no-dtls',
      '--use-auth-secret',
      `--static-auth-secret=${secret}`,
      '--realm=mcu.test',
      '--allow-loopback-peers',
      '--no-cli',
      '--fingerprint',
      '--min-port=49000',
      '--max-port=49999',
      `--db=${path.join(dir, 'turndb')}`,
      `--pidfile=${path.join(dir, 'pid')}`,
      '--log-file=stdout',
      '--simple-log',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const deadline = Date.now() + 10_000;
  while (!/listener opened on|Total General servers|IO method/i.test(out)) {
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`coturn did not start:\n${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url: `turn:${host}:${port}?transport=tcp`,
    secret,
    proc,
    output: () => out,
    stop: () =>
      new Promise((resolve) => {
        if (proc.exitCode !== null) return resolve();
        proc.once('exit', () => resolve());
        proc.kill('SIGTERM');
      }),
  };
}
