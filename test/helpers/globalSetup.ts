import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';

/**
 * Network rule: tests send traffic only to 127.0.0.1. `npm test` runs vitest inside a network
 * namespace that has only `lo`; refuse to run anywhere else. The real server runs from dist/, so
 * build it first.
 */
export default function setup() {
  const ifaces = Object.keys(os.networkInterfaces()).filter((n) => n !== 'lo');
  if (ifaces.length > 0 && !process.env.MCU_TEST_ALLOW_NETWORK) {
    throw new Error(
      `tests must run in a network namespace with only lo (found ${ifaces.join(', ')}); use "npm test", which runs them under unshare -n`,
    );
  }
  execFileSync(process.execPath, [path.resolve('node_modules/typescript/bin/tsc'), '-p', '.'], { stdio: 'inherit' });
}
