import dgram from 'node:dgram';

/**
 * A UDP socket on 127.0.0.1 that receives what a pipeline's udpsink sends.
 * Datagrams arrive through the event loop (epoll), so unlike appsink.pull() they hold no
 * libuv pool thread.
 */
export class LocalUdp {
  readonly #sock: dgram.Socket;
  #closed = false;
  /** Packets whose handler threw. */
  errors = 0;

  private constructor(sock: dgram.Socket) {
    this.#sock = sock;
  }

  static async open(onMessage: (data: Buffer) => void, recvBufferSize = 4 * 1024 * 1024): Promise<LocalUdp> {
    const sock = dgram.createSocket({ type: 'udp4', recvBufferSize });
    const u = new LocalUdp(sock);
    sock.on('message', (m) => {
      if (u.#closed) return;
      try {
        onMessage(m);
      } catch (err) {
        // One bad packet or a bug in its handler must not take the process down with it.
        u.errors++;
        if (u.errors === 1 || u.errors % 1000 === 0) process.emitWarning(`UDP packet handler threw (${u.errors}): ${(err as Error)?.stack ?? err}`);
      }
    });
    sock.on('error', () => u.close());
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(0, '127.0.0.1', () => {
        sock.off('error', reject);
        resolve();
      });
    });
    return u;
  }

  get port(): number {
    return this.#sock.address().port;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#sock.close();
  }
}

let sender: dgram.Socket | undefined;

/**
 * Sends a datagram to a pipeline's udpsrc on 127.0.0.1. One socket serves the whole process;
 * the kernel queues the packet, so the event loop never waits on a GStreamer lock.
 */
export function sendToPipeline(port: number, data: Buffer | Uint8Array): void {
  if (!sender) {
    sender = dgram.createSocket({ type: 'udp4', sendBufferSize: 4 * 1024 * 1024 });
    sender.on('error', () => undefined);
    sender.unref();
  }
  sender.send(data, port, '127.0.0.1');
}
