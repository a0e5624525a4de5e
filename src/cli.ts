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
