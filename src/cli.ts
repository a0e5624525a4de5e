import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { Credentials, ROLES, type Role } from './auth/credentials.js';
import { loadSecrets } from './auth/secrets.js';
import { loadConfig } from './core/config.js';

const USAGE = `usage: webrtc-mcu token --room ROOM [--name NAME] [--role ${Object.keys(ROLES).join('|')}] [--ttl SECONDS] [--url BASE_URL]

Prints a join token signed with this server's secret (MCU_API_SECRET, or the secrets file) on
stdout, and a join link on stderr.`;

/** `webrtc-mcu token ...`: a join token from the command line, signed as POST /v1/tokens signs it. */
export async function tokenCommand(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        room: { type: 'string' },
        name: { type: 'string' },
        role: { type: 'string', default: 'participant' },
        ttl: { type: 'string', default: String(6 * 3600) },
        url: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (values.help || !values.room) {
    process.stderr.write(`${USAGE}\n`);
    return values.help ? 0 : 2;
  }
  const config = loadConfig();
  const secrets = loadSecrets({ ...config.auth, file: config.auth.secretsFile });
  const creds = new Credentials(secrets.apiKey, secrets.apiSecret);
  try {
    const { token, expiresAt } = await creds.issue({ room: values.room, name: values.name, role: values.role as Role, ttlSeconds: Number(values.ttl) });
    process.stdout.write(`${token}\n`);
    const base = (values.url ?? `http://localhost:${config.port || 8080}/`).replace(/\/?$/, '/');
    process.stderr.write(`expires ${expiresAt}\njoin link: ${base}?room=${encodeURIComponent(values.room)}#token=${token}\n`);
    return 0;
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 2;
  }
}

const DRAIN_USAGE = `usage: webrtc-mcu drain [--url BASE_URL] [--timeout SECONDS]

Tells the clustered node at BASE_URL (default http://127.0.0.1:$PORT) to take no new rooms, then
waits until its rooms are empty or SECONDS pass (default MCU_DRAIN_SECONDS, 300). For a Kubernetes
preStop hook: SIGTERM, which follows, then closes the node at once.`;

/** `webrtc-mcu drain`: drain this node (POST /v1/drain) and wait until it holds no one. */
export async function drainCommand(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options: { url: { type: 'string' }, timeout: { type: 'string' }, help: { type: 'boolean', short: 'h' } } }));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${DRAIN_USAGE}\n`);
    return 2;
  }
  if (values.help) {
    process.stderr.write(`${DRAIN_USAGE}\n`);
    return 0;
  }
  const config = loadConfig();
  const { apiKey } = loadSecrets({ ...config.auth, file: config.auth.secretsFile });
  const base = (values.url ?? `http://127.0.0.1:${config.port || 8080}`).replace(/\/$/, '');
  const timeoutS = Number(values.timeout ?? config.cluster?.drainSeconds ?? 300);
  const headers = { Authorization: `Bearer ${apiKey}` };
  const started = await fetch(`${base}/v1/drain`, { method: 'POST', headers }).catch((e: Error) => e);
  if (started instanceof Error || started.status !== 202) {
    process.stderr.write(`drain: ${started instanceof Error ? started.message : `${started.status} ${await started.text()}`}\n`);
    return 1;
  }
  const deadline = Date.now() + timeoutS * 1000;
  for (;;) {
    const state = (await (await fetch(`${base}/v1/drain`, { headers })).json()) as { done: boolean; busyRooms: number; participants: number };
    if (state.done) {
      process.stderr.write('drain: no room left\n');
      return 0;
    }
    if (Date.now() > deadline) {
      process.stderr.write(`drain: ${state.busyRooms} room(s) with ${state.participants} participant(s) still running after ${timeoutS} s\n`);
      return 0;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

const SIP_BRIDGE_USAGE = `usage: webrtc-mcu sip-bridge --listen HOST:PORT --mcu BASE_URL [--key API_KEY] [--room ROOM]
                           [--public-address HOST] [--poll-ms MS] [--no-tcp]

A SIP gateway into rooms: each INVITE to sip:ROOM@HOST:PORT (or to anything, with --room) becomes a
plain RTP leg of the MCU at BASE_URL, its SDP offer POSTed with the admin key (--key, else
MCU_API_KEY, else the secrets file MCU_SECRETS_FILE) and the MCU's answer sent back in the 200 OK.
BYE, CANCEL and re-INVITE are handled; a leg the MCU removes gets a BYE (looked at every --poll-ms,
default 5000). No late offer: an INVITE must carry SDP. SIGINT/SIGTERM hang up every call.`;

/** `webrtc-mcu sip-bridge`: runs the SIP gateway (src/sip/bridge.ts) until SIGINT or SIGTERM. */
export async function sipBridgeCommand(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        listen: { type: 'string' },
        mcu: { type: 'string' },
        key: { type: 'string' },
        room: { type: 'string' },
        'public-address': { type: 'string' },
        'poll-ms': { type: 'string' },
        'no-tcp': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${SIP_BRIDGE_USAGE}\n`);
    return 2;
  }
  if (values.help || !values.listen || !values.mcu) {
    process.stderr.write(`${SIP_BRIDGE_USAGE}\n`);
    return values.help ? 0 : 2;
  }
  const m = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(values.listen);
  if (!m) {
    process.stderr.write(`--listen must be HOST:PORT, not ${values.listen}\n`);
    return 2;
  }
  const config = loadConfig();
  // The key the MCU checks: given, from the environment, or from the secrets file the MCU generated
  // on this machine (never generated here: a new key would be one the MCU does not know).
  let apiKey = values.key ?? config.auth.apiKey;
  if (!apiKey) {
    try {
      apiKey = (JSON.parse(fs.readFileSync(config.auth.secretsFile, 'utf8')) as { apiKey?: string }).apiKey;
    } catch {
      /* no file */
    }
  }
  if (!apiKey) {
    process.stderr.write(`sip-bridge: no API key: give --key, or MCU_API_KEY, or run it where the MCU's ${config.auth.secretsFile} is\n`);
    return 2;
  }
  const { startSipBridge } = await import('./sip/bridge.js');
  let bridge;
  try {
    bridge = await startSipBridge({
      host: m[1].replace(/^\[|\]$/g, ''),
      port: Number(m[2]),
      mcu: values.mcu,
      apiKey,
      room: values.room,
      publicAddress: values['public-address'],
      pollMs: values['poll-ms'] ? Number(values['poll-ms']) : undefined,
      tcp: !values['no-tcp'],
    });
  } catch (err) {
    process.stderr.write(`sip-bridge: ${(err as Error).message}\n`);
    return 1;
  }
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await bridge.close();
  return 0;
}
