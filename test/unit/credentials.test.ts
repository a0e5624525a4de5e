import { describe, expect, it } from 'vitest';
import { Credentials, may } from '../../src/auth/credentials.js';
import { answerDirection } from '../../src/rtc/native.js';

const KEY = 'unit-admin-key-0123456789';
const creds = new Credentials(KEY, 'unit-secret-0123456789-0123456789-0123456789');

describe('Credentials', () => {
  it('issues tokens whose grants follow the role, and reads them back', async () => {
    const { token, expiresAt } = await creds.issue({ room: 'r', name: 'Ann', role: 'viewer', ttlSeconds: 60 }, Date.UTC(2030, 0, 1));
    expect(expiresAt).toBe('2030-01-01T00:01:00.000Z');
    const now = await creds.issue({ room: 'r', name: 'Ann', role: 'viewer', ttlSeconds: 60 });
    const p = await creds.authenticate(`Bearer ${now.token}`);
    expect(p).toMatchObject({
      kind: 'token',
      role: 'viewer',
      name: 'Ann',
      grants: { room: 'r', roomJoin: true, canPublish: false, canSubscribe: true, roomRecord: false, roomAdmin: false },
    });
    // Expired long ago (2030 is in the future, so take a token from the past instead).
    const old = await creds.issue({ room: 'r', ttlSeconds: 60 }, Date.now() - 3600_000);
    expect(await creds.authenticate(`Bearer ${old.token}`)).toBeUndefined();
    expect(token).not.toBe(now.token);
  });

  it('knows the API key, compared in constant time, and nothing else', async () => {
    expect(await creds.authenticate(`Bearer ${KEY}`)).toEqual({ kind: 'key' });
    for (const h of [undefined, '', 'Bearer', `bearer  ${KEY}x`, `Basic ${KEY}`, `Bearer ${KEY} extra`, 'Bearer a.b.c']) {
      expect(await creds.authenticate(h), String(h)).toBeUndefined();
    }
    expect(await creds.authenticate(`bearer ${KEY}`)).toEqual({ kind: 'key' });
  });

  it('refuses keys and secrets too short to be secret, and token requests out of range', async () => {
    expect(() => new Credentials('short', 'x'.repeat(40))).toThrow(/MCU_API_KEY/);
    expect(() => new Credentials('k'.repeat(20), 'short')).toThrow(/MCU_API_SECRET/);
    await expect(creds.issue({ room: 'r', role: 'root' as never })).rejects.toThrow(/role/);
    await expect(creds.issue({ room: 'r', ttlSeconds: 0 })).rejects.toThrow(/ttlSeconds/);
  });

  it('grants: a room admin runs its room only, "*" runs every room, roomRecord records its room', async () => {
    const t = async (room: string, role: 'participant' | 'viewer' | 'moderator' | 'admin') =>
      (await creds.authenticate(`Bearer ${(await creds.issue({ room, role })).token}`))!;
    const mod = await t('a', 'moderator');
    expect([may.roomAdmin(mod, 'a'), may.roomAdmin(mod, 'b'), may.admin(mod), may.record(mod, 'a'), may.join(mod, 'a')]).toEqual([true, false, false, true, true]);
    const all = await t('*', 'admin');
    expect([may.admin(all), may.roomAdmin(all, 'zz'), may.join(all, 'zz')]).toEqual([true, true, false]);
    const part = await t('a', 'participant');
    expect([may.join(part, 'a'), may.join(part, 'b'), may.record(part, 'a'), may.roomAdmin(part, 'a')]).toEqual([true, false, false, false]);
    expect([may.admin({ kind: 'key' }), may.join({ kind: 'key' }, 'x')]).toEqual([true, true]);
  });
});

describe('answerDirection', () => {
  it('answers within the grants', () => {
    expect(answerDirection('sendrecv')).toBe('sendrecv');
    expect(answerDirection('sendonly')).toBe('recvonly');
    expect(answerDirection('recvonly')).toBe('sendonly');
    expect(answerDirection('sendrecv', { canPublish: false })).toBe('sendonly');
    expect(answerDirection('sendonly', { canPublish: false })).toBe('inactive');
    expect(answerDirection('sendrecv', { canSubscribe: false })).toBe('recvonly');
    expect(answerDirection('recvonly', { canSubscribe: false })).toBe('inactive');
    expect(answerDirection('inactive')).toBe('inactive');
  });
});
