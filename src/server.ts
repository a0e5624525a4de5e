import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadConfig, type McuConfig } from './core/config.js';
import { createLogger, setLogLevel, type LogLevel } from './core/log.js';
import { Credentials } from './auth/credentials.js';
import { loadSecrets } from './auth/secrets.js';
import { createApp } from './http/app.js';
import { Mcu } from './room/Mcu.js';
import { joinCluster, type ClusterNode } from './cluster/index.js';

export interface RunningServer {
  mcu: Mcu;
  credentials: Credentials;
  /** The admin key, when this start generated it (it is printed once). */
  generatedKey?: string;
  secretsFile?: string;
  url: string;
  port: number;
  /** This node in a cluster (MCU_REDIS_URL), or undefined for a node that stands alone. */
  cluster?: ClusterNode;
  close(): Promise<void>;
}

export async function startServer(config: McuConfig = loadConfig()): Promise<RunningServer> {
  setLogLevel(config.logLevel as LogLevel);
  const secrets = loadSecrets({ ...config.auth, file: config.auth.secretsFile });
  const credentials = new Credentials(secrets.apiKey, secrets.apiSecret);
  const mcu = await Mcu.create(config);
  // The app is attached once the port is known: in a cluster, its public URL includes it.
  const server = http.createServer();
  // Slow or idle clients cannot hold connections for ever.
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  // An idle keep-alive connection stays open 65 s (Node's default is 5 s). A client reuses its idle
  // connection until its own timeout, which HTTP clients take from the server's `Keep-Alive:
  // timeout` hint less a margin; when the server closed at 5 s, a request sent just as it closed
  // failed with "other side closed" ("fetch failed"), seen in this project's tests when a busy client
  // sent its next request 5 s after the last one. 65 s is also longer than the usual load balancer's
  // idle timeout (60 s), so a proxy in front closes first, as it should.
  server.keepAliveTimeout = 65_000;
  // Node's parser refuses a request line or headers over 16 KB before the app sees them, with a bare
  // 431 (or 400) and no body: answer in the API's JSON error form instead, and close.
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (!socket.writable) return socket.destroy();
    const tooLarge = err.code === 'HPE_HEADER_OVERFLOW';
    const body = JSON.stringify({
      error: tooLarge
        ? { code: 'request_too_large', message: 'the request line and headers must fit in 16 KB (a long name or query?)' }
        : { code: 'bad_request', message: 'the HTTP request could not be parsed' },
    });
    socket.end(
      `HTTP/1.1 ${tooLarge ? '431 Request Header Fields Too Large' : '400 Bad Request'}\r\n` +
        `Content-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const shownHost = config.host === '0.0.0.0' || config.host === '::' ? (config.iceAddresses[0] ?? '127.0.0.1') : config.host;
  let cluster: ClusterNode | undefined;
  if (config.cluster) {
    try {
      cluster = await joinCluster(mcu, config.cluster, `http://${shownHost}:${port}`);
    } catch (err) {
      server.close();
      await mcu.close();
      throw err;
    }
  }
  server.on('request', createApp(mcu, credentials, cluster?.registry));
  let closing: Promise<void> | undefined;
  return {
    mcu,
    credentials,
    generatedKey: secrets.keyGenerated ? secrets.apiKey : undefined,
    secretsFile: secrets.file,
    port,
    url: `http://${shownHost}:${port}/`,
    cluster,
    close: () =>
      (closing ??= (async () => {
        server.closeAllConnections();
        await new Promise<void>((r) => server.close(() => r()));
        await mcu.close();
        // After the recordings are finalised, so that the cluster lists them as done.
        await cluster?.close();
      })()),
  };
}

export async function main(): Promise<void> {
  const log = createLogger('main');
  const running = await startServer();
  log.info(`listening on ${running.url}`);
  // Out of the box: one join link that works, and the admin key once, when it is generated.
  const room = 'demo';
  const { token } = await running.credentials.issue({ room, ttlSeconds: 24 * 3600 });
  const lines = [`Open this link in two or more browsers to join a call in room "${room}" (valid 24 h):`, `    ${running.url}?room=${room}#token=${token}`];
  if (running.generatedKey) {
    lines.push('', `Admin API key (shown this once; kept in ${running.secretsFile}, readable only by you):`, `    ${running.generatedKey}`);
  } else if (running.secretsFile) {
    lines.push('', `Admin API key: in ${running.secretsFile} (or MCU_API_KEY).`);
  }
  lines.push('', 'More join links: npx webrtc-mcu token --room ROOM --name NAME');
  process.stdout.write(`\n${lines.map((l) => '  ' + l).join('\n')}\n\n`);
  let stopping = false;
  const drainCut = new AbortController();
  const stop = async (signal: string) => {
    if (stopping) return drainCut.abort(); // a second signal cuts a drain short
    stopping = true;
    // In a cluster, SIGTERM drains first: no new rooms, running ones until they empty or MCU_DRAIN_SECONDS.
    if (signal === 'SIGTERM' && running.cluster) await running.cluster.drain({ signal: drainCut.signal });
    log.info(`${signal}: closing rooms`);
    const force = setTimeout(() => process.exit(1), 10_000);
    void running.close().then(() => {
      clearTimeout(force);
      log.info('closed; exiting');
      process.exit(0);
    });
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}
