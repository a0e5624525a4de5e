import dgram from 'node:dgram';

/**
 * A link that misbehaves, in user space: this kernel has no netem and no iptables. It stands
 * between a peer and the server's ICE ports. The peer is given the link's address and ports in place
 * of the server's in the SDP answer (`rewriteAnswer`), sends there, and the link forwards to the server from
 * a socket of its own per peer address (the server sees a peer-reflexive candidate, which ICE
 * accepts). Each direction drops at random, delays, and throttles like a bottleneck: packets wait
 * in a queue drained at `rateKbps`, and a packet that would wait longer than `queueMs` is dropped
 * (drop-tail), as a router's buffer does.
 */
export interface Impairment {
  /** Random loss, 0-100 %. */
  lossPct?: number;
  /** One-way delay added to every packet, ms. */
  delayMs?: number;
  /** Bottleneck rate, kbit/s; 0 or undefined: no limit. */
  rateKbps?: number;
  /** Longest queueing delay before a packet is dropped, ms. Default 200. */
  queueMs?: number;
}

export interface DirectionStats {
  packets: number;
  bytes: number;
  dropped: number;
  lost: number;
}

class Direction {
  imp: Impairment = {};
  /** When the bottleneck is free again (performance.now() ms). */
  #busyUntil = 0;
  readonly stats: DirectionStats = { packets: 0, bytes: 0, dropped: 0, lost: 0 };

  constructor(private readonly random: () => number) {}

  /** When this packet leaves (ms from now), or undefined when it is dropped. */
  schedule(size: number): number | undefined {
    this.stats.packets++;
    const { lossPct = 0, delayMs = 0, rateKbps = 0, queueMs = 200 } = this.imp;
    if (lossPct > 0 && this.random() * 100 < lossPct) {
      this.stats.lost++;
      return undefined;
    }
    let wait = 0;
    if (rateKbps > 0) {
      const now = performance.now();
      const start = Math.max(now, this.#busyUntil);
      if (start - now > queueMs) {
        this.stats.dropped++;
        return undefined;
      }
      this.#busyUntil = start + (size * 8) / rateKbps; // bits / (kbit/s) = ms
      wait = this.#busyUntil - now;
    }
    this.stats.bytes += size;
    return wait + delayMs;
  }
}

export class ImpairedLink {
  /** Toward the peer (the server's packets): a viewer's downlink. */
  readonly down: Direction;
  /** Toward the server (the peer's packets): a publisher's uplink. */
  readonly up: Direction;
  readonly #front = new Map<number, dgram.Socket>();
  /** One socket toward the server per (front port, peer address), so the server can tell peers apart. */
  readonly #back = new Map<string, dgram.Socket>();
  #closed = false;

  private constructor(
    readonly host: string,
    readonly serverHost: string,
    random: () => number,
  ) {
    this.down = new Direction(random);
    this.up = new Direction(random);
  }

  /** A link on `host` (a loopback address of its own, e.g. 127.0.0.9) toward the server at `serverHost`. */
  static create(opts: { host?: string; serverHost?: string; random?: () => number } = {}): ImpairedLink {
    return new ImpairedLink(opts.host ?? '127.0.0.9', opts.serverHost ?? '127.0.0.1', opts.random ?? Math.random);
  }

  set(dir: 'up' | 'down', imp: Impairment): void {
    this[dir].imp = { ...imp };
  }

  /**
   * Opens the link's side of every server candidate in an SDP answer (same ports, the link's
   * address) and returns the answer with those candidates moved to the link.
   */
  async rewriteAnswer(sdp: string): Promise<string> {
    const re = new RegExp(`^(a=candidate:\\S+ \\d+ udp \\d+ )${this.serverHost.replace(/\./g, '\\.')} (\\d+)( typ host.*)$`, 'gim');
    const ports = [...sdp.matchAll(re)].map((m) => Number(m[2]));
    // The server may hold its port on every address (werift binds the wildcard): the link's side
    // of each gets a port of its own.
    const fronts = new Map<number, number>();
    for (const port of ports) fronts.set(port, await this.#open(port));
    return sdp
      .replace(re, (_m, a, port, b) => `${a}${this.host} ${fronts.get(Number(port))}${b}`)
      .replace(new RegExp(`^(c=IN IP4 )${this.serverHost.replace(/\./g, '\\.')}$`, 'gm'), `$1${this.host}`);
  }

  /** The link's side of server port `port`: its own port on the link's address. */
  async #open(port: number): Promise<number> {
    const open = this.#front.get(port);
    if (open) return open.address().port;
    const front = dgram.createSocket('udp4');
    this.#front.set(port, front);
    await new Promise<void>((resolve, reject) => {
      front.once('error', reject);
      front.bind(0, this.host, () => resolve());
    });
    front.on('message', (msg, from) => void this.#fromPeer(port, front, msg, from));
    return front.address().port;
  }

  /** The port on the link's address that stands for server port `port` (after rewriteAnswer). */
  frontPort(port: number): number | undefined {
    return this.#front.get(port)?.address().port;
  }

  async #fromPeer(port: number, front: dgram.Socket, msg: Buffer, from: dgram.RemoteInfo): Promise<void> {
    const key = `${port} ${from.address}:${from.port}`;
    let back = this.#back.get(key);
    if (!back) {
      const b = dgram.createSocket('udp4');
      back = b;
      this.#back.set(key, b);
      await new Promise<void>((r) => b.bind(0, this.host, () => r()));
      b.on('message', (reply) => this.#forward(this.down, reply, () => !this.#closed && front.send(reply, from.port, from.address)));
    }
    const b = back;
    this.#forward(this.up, msg, () => !this.#closed && b.send(msg, port, this.serverHost));
  }

  #forward(dir: Direction, msg: Buffer, send: () => unknown): void {
    const after = dir.schedule(msg.length);
    if (after === undefined) return;
    if (after <= 0) send();
    else setTimeout(send, after);
  }

  close(): void {
    this.#closed = true;
    for (const s of [...this.#front.values(), ...this.#back.values()]) s.close();
    this.#front.clear();
    this.#back.clear();
  }
}
