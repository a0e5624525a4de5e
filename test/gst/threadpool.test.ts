import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const guard = path.resolve('test/helpers/pool-guard.mjs');
const run = (args: string[]) => {
  const env = { ...process.env };
  delete env.UV_THREADPOOL_SIZE;
  return JSON.parse(execFileSync(process.execPath, [...args, guard, '24'], { env, timeout: 30_000 }).toString().trim());
};

describe('libuv thread pool with many pipelines running', () => {
  it('async file reads still complete with 24 pipelines polling their buses, as the server starts', () => {
    const r = run(['-r', path.resolve('bin/threadpool.cjs')]);
    expect(r).toMatchObject({ pipelines: 24, result: 'ok', pool: '256' });
  });

  it('(control) without the sizing, the default pool of 4 is starved', () => {
    const r = run([]);
    expect(r).toMatchObject({ pipelines: 24, result: 'starved' });
  });
});
