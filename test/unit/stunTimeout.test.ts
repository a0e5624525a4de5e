import { afterEach, describe, expect, it } from 'vitest';
import { classes, Message, methods, StunProtocol } from 'werift';

// A STUN transaction's timeout against a response that came in time while the thread was busy.
// On waking, Node runs due timers before it reads the sockets (the timers phase comes before the
// poll phase), so werift 0.25.2 failed the transaction although its response sat in the socket.
// Under load that is how ICE connectivity checks and consent checks failed with their answers
// already there, and consent expired on both ends (a bench run: 21 peers, `Consent to send
// expired`). patches/werift+0.25.2.patch decides a timeout only once pending input is read.

const protocols: StunProtocol[] = [];
afterEach(async () => {
  for (const p of protocols.splice(0)) await p.close();
});

async function pair(answer: boolean) {
  const client = new StunProtocol();
  const server = new StunProtocol();
  protocols.push(client, server);
  await client.connectionMade(true, undefined, ['127.0.0.1']);
  await server.connectionMade(true, undefined, ['127.0.0.1']);
  server.onRequestReceived.subscribe((request: Message, addr: readonly [string, number]) => {
    if (answer) void server.sendStun(new Message(methods.BINDING, classes.RESPONSE, request.transactionId), addr as [string, number]);
    // The answer goes out (on the next tick); then this thread is busy for twice the client's
    // timeout, as a loaded machine's would be.
    setImmediate(() => {
      const t0 = performance.now();
      while (performance.now() - t0 < 400) {
        // busy on purpose
      }
    });
  });
  const [, port] = server.getExtraInfo();
  return { client, to: ['127.0.0.1', port] as [string, number] };
}

describe('werift STUN transactions on a busy thread (patches/werift+0.25.2.patch)', () => {
  it('take a response that arrived before the timeout, even when the thread could read it only after', async () => {
    const { client, to } = await pair(true);
    const request = new Message(methods.BINDING, classes.REQUEST);
    const [response] = (await client.request(request, to, undefined, { retransmissions: 0, responseTimeout: 200 })) as unknown as [Message];
    expect(response.messageClass).toBe(classes.RESPONSE);
    expect(Buffer.compare(response.transactionId, request.transactionId)).toBe(0);
  });

  it('still time out when no response comes', async () => {
    const { client, to } = await pair(false);
    const t0 = performance.now();
    await expect(client.request(new Message(methods.BINDING, classes.REQUEST), to, undefined, { retransmissions: 0, responseTimeout: 200 })).rejects.toThrow();
    expect(performance.now() - t0).toBeGreaterThanOrEqual(200);
  });
});
