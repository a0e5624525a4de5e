import { createSocket, Socket } from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { UdpTransport } from 'werift';

// The race, made certain: when werift binds a port it probed a moment ago, another socket binds it
// first, as a concurrent join or a GStreamer port-0 socket does by chance under load.
const realBind = Socket.prototype.bind;
const probed = new Set<number>();
let stolen: number | undefined;
const holders: Socket[] = [];
const hold = (port: number) =>
  new Promise<Socket>((resolve, reject) => {
    const s = createSocket('udp4');
    s.once('error', reject);
    realBind.call(s, { port, address: '127.0.0.1' }, () => resolve(s));
    holders.push(s);
  });

afterEach(() => {
  Socket.prototype.bind = realBind;
  probed.clear();
  stolen = undefined;
  for (const s of holders.splice(0)) s.close();
});

describe('werift ICE socket binding (patches/werift+0.25.2.patch)', () => {
  it('probes again when the port it probed is taken before it binds it, instead of crashing the process and never settling', async () => {
    const lo = 47100;
    Socket.prototype.bind = function (this: Socket, ...args: unknown[]) {
      const port = (args[0] as { port?: number } | undefined)?.port;
      if (typeof port === 'number' && port >= lo && port <= lo + 20) {
        if (probed.has(port) && stolen === undefined) {
          stolen = port;
          void hold(port); // queued ahead of werift's own bind
        }
        probed.add(port);
      }
      return (realBind as (...a: unknown[]) => Socket).apply(this, args);
    } as typeof realBind;
    const t = await UdpTransport.init('udp4', { portRange: [lo, lo + 20], interfaceAddresses: { udp4: '127.0.0.1' } });
    try {
      expect(stolen).toBeDefined();
      expect(t.port).not.toBe(stolen);
      expect(t.port).toBeGreaterThanOrEqual(lo);
      expect(t.port).toBeLessThanOrEqual(lo + 20);
    } finally {
      await t.close();
    }
  });

  it('rejects a bind to a port in use, so the join that asked fails at once', async () => {
    const s = await hold(0);
    const port = s.address().port;
    await expect(UdpTransport.init('udp4', { port, interfaceAddresses: { udp4: '127.0.0.1' } })).rejects.toMatchObject({
      code: 'EADDRINUSE',
    });
  });
});
