import { describe, expect, it } from 'vitest';
import { defaultNodeId } from '../../src/cluster/placement.js';
import { loadConfig } from '../../src/core/config.js';

describe('cluster configuration', () => {
  it('stands alone without MCU_REDIS_URL, whatever else is set', () => {
    expect(loadConfig({ MCU_PUBLIC_URL: 'http://x:1', MCU_NODE_ID: 'a' }).cluster).toBeUndefined();
  });

  it('reads the cluster variables, with their defaults', () => {
    expect(loadConfig({ MCU_REDIS_URL: 'redis://10.0.0.5:6379' }).cluster).toEqual({
      redisUrl: 'redis://10.0.0.5:6379',
      publicUrl: undefined,
      nodeId: undefined,
      drainSeconds: 300,
      roomGraceSeconds: 30,
    });
    const c = loadConfig({ MCU_REDIS_URL: 'redis://r', MCU_PUBLIC_URL: 'https://mcu-2.example.org/', MCU_NODE_ID: 'mcu-2', MCU_DRAIN_SECONDS: '60', MCU_ROOM_GRACE_SECONDS: '5' }).cluster;
    expect(c).toMatchObject({ publicUrl: 'https://mcu-2.example.org', nodeId: 'mcu-2', drainSeconds: 60, roomGraceSeconds: 5 });
  });

  it('refuses a public URL that is not absolute http(s), a node id with odd characters, and a negative drain, naming the variable', () => {
    expect(() => loadConfig({ MCU_REDIS_URL: 'redis://r', MCU_PUBLIC_URL: 'mcu-2:8080' })).toThrow(/MCU_PUBLIC_URL/);
    expect(() => loadConfig({ MCU_REDIS_URL: 'redis://r', MCU_PUBLIC_URL: 'ftp://mcu-2' })).toThrow(/MCU_PUBLIC_URL/);
    expect(() => loadConfig({ MCU_REDIS_URL: 'redis://r', MCU_NODE_ID: 'a b' })).toThrow(/MCU_NODE_ID/);
    expect(() => loadConfig({ MCU_REDIS_URL: 'redis://r', MCU_DRAIN_SECONDS: '-1' })).toThrow(/MCU_DRAIN_SECONDS/);
  });

  it('names a node after its public host and port by default, so a restarted node keeps its id', () => {
    expect(defaultNodeId('http://127.0.0.2:8080')).toBe('127.0.0.2-8080');
    expect(defaultNodeId('https://mcu.example.org')).toBe('mcu.example.org-443');
    expect(defaultNodeId('http://[::1]:80')).toBe('___1_-80');
  });
});
