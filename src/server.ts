import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadConfig, type McuConfig } from './core/config.js';
import { createLogger, setLogLevel, type LogLevel } from './core/log.js';
import { createApp } from './http/app.js';
import { Mcu } from './room/Mcu.js';

export interface RunningServer {
  mcu: Mcu;
  url: string;
  port: number;
  close(): Promise<void>;
}

export async function startServer(config: McuConfig = loadConfig()): Promise<RunningServer> {
  setLogLevel(config.logLevel as LogLevel);
  const mcu = await Mcu.create(config);
  const server = http.createServer(createApp(mcu));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const shownHost = config.host === '0.0.0.0' || config.host === '::' ? (config.iceAddresses[0] ?? '127.0.0.1') : config.host;
  let closing: Promise<void> | undefined;
  return {
    mcu,
    port,
    url: `http://${shownHost}:${port}/`,
    close: () =>
      (closing ??= (async () => {
        server.closeAllConnections();
        await new Promise<void>((r) => server.close(() => r()));
        await mcu.close();
      })()),
  };
}

export async function main(): Promise<void> {
  const log = createLogger('main');
  const running = await startServer();
  log.info(`listening on ${running.url}`);
  process.stdout.write(`\n  Open ${running.url} in two or more browsers to join a call.\n\n`);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info(`${signal}: closing rooms`);
    const force = setTimeout(() => process.exit(1), 10_000);
    void running.close().then(() => {
      clearTimeout(force);
      log.info('closed; exiting');
      process.exit(0);
    });
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}
