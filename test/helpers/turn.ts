import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
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
export async function startTurn(host = '127.0.0.1', opts: { port?: number; tls?: boolean } = {}): Promise<TurnServer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcu-turn-'));
  const port = opts.port ?? (await freePort(host));
  const secret = 'turn-secret-0123456789';
  // TLS only (a network that lets nothing but TLS to port 443 through): a self-signed certificate for the address.
  const tls = opts.tls
    ? (() => {
        const cert = path.join(dir, 'cert.pem');
        const key = path.join(dir, 'key.pem');
        execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', `/CN=${host}`, '-addext', `subjectAltName=IP:${host}`, '-keyout', key, '-out', cert], { stdio: 'ignore' });
        return ['--no-tcp', `--tls-listening-port=${port}`, `--cert=${cert}`, `--pkey=${key}`];
      })()
    : ['--no-tls', `--listening-port=${port}`];
  const proc = spawn(
    'turnserver',
    [
      '-n',
      `--listening-ip=${host}`,
      ...tls,
      `--relay-ip=${host}`,
      '--no-udp',
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
      // A file, not stdout: coturn block-buffers a piped stdout, so its session lines came late or never.
      `--log-file=${path.join(dir, 'turn.log')}`,
      '--simple-log',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const log = () => {
    try {
      return out + fs.readFileSync(path.join(dir, 'turn.log'), 'utf8');
    } catch {
      return out;
    }
  };
  const deadline = Date.now() + 10_000;
  while (!/listener opened on|Total General servers|IO method/i.test(log())) {
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`coturn did not start:\n${log()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url: `${opts.tls ? 'turns' : 'turn'}:${host}:${port}?transport=tcp`,
    secret,
    proc,
    output: log,
    stop: () =>
      new Promise((resolve) => {
        if (proc.exitCode !== null) return resolve();
        proc.once('exit', () => resolve());
        proc.kill('SIGTERM');
      }),
  };
}
