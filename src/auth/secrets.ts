import fs from 'node:fs';
import path from 'node:path';
import { Credentials } from './credentials.js';

export interface Secrets {
  apiKey: string;
  apiSecret: string;
  /** Where the generated ones are kept (undefined when both came from the environment). */
  file?: string;
  /** True when this start generated the API key: the only time it is printed. */
  keyGenerated: boolean;
}

/**
 * The API key and the token-signing secret: from MCU_API_KEY and MCU_API_SECRET, and whichever is
 * missing from a file readable only by its owner (MCU_SECRETS_FILE), generated there on first start.
 * So `npm start` works with no configuration, and restarts keep the same key and valid tokens.
 */
export function loadSecrets(env: { apiKey?: string; apiSecret?: string; file: string }): Secrets {
  if (env.apiKey && env.apiSecret) return { apiKey: env.apiKey, apiSecret: env.apiSecret, keyGenerated: false };
  let stored: Partial<Pick<Secrets, 'apiKey' | 'apiSecret'>> = {};
  try {
    stored = JSON.parse(fs.readFileSync(env.file, 'utf8'));
    const mode = fs.statSync(env.file).mode & 0o077;
    if (mode !== 0) fs.chmodSync(env.file, 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`cannot read ${env.file}: ${(err as Error).message}`);
  }
  const keyGenerated = !env.apiKey && !stored.apiKey;
  const next = {
    apiKey: stored.apiKey ?? Credentials.randomSecret(),
    apiSecret: stored.apiSecret ?? Credentials.randomSecret(),
  };
  if (next.apiKey !== stored.apiKey || next.apiSecret !== stored.apiSecret) {
    fs.mkdirSync(path.dirname(env.file), { recursive: true, mode: 0o700 });
    // Written to a new file created 0600, then renamed: never readable by others, never half written.
    const tmp = `${env.file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(next, null, 2) + '\n', { mode: 0o600, flag: 'wx' });
    fs.renameSync(tmp, env.file);
  }
  return { apiKey: env.apiKey ?? next.apiKey, apiSecret: env.apiSecret ?? next.apiSecret, file: env.file, keyGenerated };
}
