import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const ROOT = path.resolve(import.meta.dirname, '..', '..');

export interface ServerProcess {
  url: string;
  proc: ChildProcess;
  output: () => string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts the real server (bin/mcu, built dist/) on a free port, ICE on 127.0.0.1 only. */
export async function startServerProcess(env: Record<string, string> = {}, opts: { pinCpu?: boolean } = {}): Promise<ServerProcess> {
  const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'mcu-test-'));
  // MCU_TEST_NODE_ARGS passes extra flags to the server's node (e.g. --cpu-prof) when investigating.
  const nodeArgs = (process.env.MCU_TEST_NODE_ARGS ?? '').split(' ').filter(Boolean);
  // With browsers in the test, the server gets CPU 0 and the browsers the last CPU
  // (test/helpers/chromium.sh), so on this 2-core machine neither starves the other, as a server
  // and its remote users would not.
  const pin = opts.pinCpu && os.cpus().length > 1 ? ['taskset', '-c', '0'] : [];
  const [cmd, ...args] = [...pin, path.join(ROOT, 'bin', 'mcu')];
  const proc = spawn(cmd, args, {
    cwd: ROOT,
    env: {
      ...process.env,
      HOST: '127.0.0.1',
      PORT: '0',
      MCU_ICE_ADDRESSES: '127.0.0.1',
      MCU_RTC_PORTS: '42000-42999',
      MCU_CACHE_DIR: path.join(cache, 'cache'),
      MCU_RECORDINGS_DIR: path.join(cache, 'recordings'),
      LOG_LEVEL: 'info',
      NODE: process.execPath,
      MCU_NODE_ARGS: nodeArgs.join(' '),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  // MCU_TEST_SERVER_LOG=file keeps the whole server log for debugging; `out` keeps the tail.
  const logFile = process.env.MCU_TEST_SERVER_LOG ? fs.createWriteStream(process.env.MCU_TEST_SERVER_LOG) : undefined;
  const collect = (d: Buffer) => {
    logFile?.write(d);
    out = (out + d).slice(-200_000);
  };
  proc.stdout!.on('data', collect);
  proc.stderr!.on('data', collect);
  const url = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`server did not start:\n${out}`)), 20_000);
    const check = () => {
      const m = /listening on (http:\/\/[^\s]+)/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(m[1].replace(/\/$/, ''));
      }
    };
    proc.stdout!.on('data', check);
    proc.once('exit', (code) => reject(new Error(`server exited with ${code}:\n${out}`)));
  });
  return {
    url,
    proc,
    output: () => out,
    stop: (signal = 'SIGTERM') =>
      new Promise((resolve) => {
        if (proc.exitCode !== null) return resolve(proc.exitCode);
        proc.once('exit', (code) => resolve(code));
        proc.kill(signal);
        setTimeout(() => proc.kill('SIGKILL'), 12_000).unref();
      }),
  };
}

/**
 * One JSON API call: a string body goes as it is (to send malformed JSON), anything else as JSON.
 * Returns the status, the parsed body (undefined when empty) and the headers.
 */
export async function apiCall(base: string, method: string, p: string, body?: unknown) {
  const res = await fetch(base + p, {
    method,
    headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined, headers: res.headers };
}
