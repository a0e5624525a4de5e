/**
 * Requests and notifications between the control thread and a media worker, over one
 * MessagePort (or the Worker / parentPort pair), in the shape of mediasoup's Channel:
 * - request(method, data) resolves with the handler's result, keyed by a running id; each pending
 *   request has a timer, and all of them are rejected when the channel closes;
 * - notify(event, data) carries what the media side decided (a peer connected, a view switched)
 *   and re-emits it on the other side as a typed event.
 * McuErrors keep their HTTP status and code across the thread boundary.
 */
import { McuError } from '../core/errors.js';

export interface PortLike {
  postMessage(msg: unknown, transfer?: readonly unknown[]): void;
  on(event: 'message', listener: (msg: unknown) => void): unknown;
  off(event: 'message', listener: (msg: unknown) => void): unknown;
}

/** method -> [request data, response data] */
export type RequestMap = Record<string, [unknown, unknown]>;
/** event -> data */
export type EventMap = Record<string, unknown>;

type Wire =
  | { t: 'req'; id: number; method: string; data: unknown }
  | { t: 'res'; id: number; data?: unknown; error?: { name: string; message: string; status?: number; code?: string } }
  | { t: 'ev'; event: string; data: unknown };

export class ChannelClosedError extends Error {
  constructor(what: string) {
    super(`channel closed: ${what}`);
    this.name = 'ChannelClosedError';
  }
}

type Handler<Req extends RequestMap> = { [M in keyof Req]?: (data: Req[M][0]) => Req[M][1] | Promise<Req[M][1]> };

/**
 * One end of a channel. `Out` is what this end may request of the other, `In` what it answers;
 * `OutEv` what it notifies, `InEv` what it hears.
 */
export class Channel<Out extends RequestMap, In extends RequestMap, OutEv extends EventMap, InEv extends EventMap> {
  #nextId = 1;
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout; method: string }>();
  readonly #listeners = new Map<keyof InEv, Set<(data: never) => void>>();
  #handlers: Handler<In> = {};
  #closed = false;
  readonly #onMessage = (msg: unknown) => this.#receive(msg as Wire);

  constructor(
    private readonly port: PortLike,
    private readonly timeoutMs = 15_000,
  ) {
    port.on('message', this.#onMessage);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** What this end answers. */
  serve(handlers: Handler<In>): void {
    this.#handlers = handlers;
  }

  request<M extends keyof Out & string>(method: M, data: Out[M][0], transfer?: readonly unknown[], timeoutMs = this.timeoutMs): Promise<Out[M][1]> {
    if (this.#closed) return Promise.reject(new ChannelClosedError(method));
    const id = this.#nextId++;
    return new Promise<Out[M][1]>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        // A media thread this far behind is overloaded: the client may try again later.
        reject(new McuError(503, 'overloaded', `the server is overloaded (${method} took over ${timeoutMs} ms); try again shortly`));
      }, timeoutMs);
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer, method });
      this.port.postMessage({ t: 'req', id, method, data } satisfies Wire, transfer);
    });
  }

  notify<E extends keyof OutEv & string>(event: E, data: OutEv[E]): void {
    if (this.#closed) return;
    this.port.postMessage({ t: 'ev', event, data } satisfies Wire);
  }

  on<E extends keyof InEv>(event: E, listener: (data: InEv[E]) => void): () => void {
    let set = this.#listeners.get(event);
    if (!set) this.#listeners.set(event, (set = new Set()));
    set.add(listener as (data: never) => void);
    return () => set!.delete(listener as (data: never) => void);
  }

  #receive(msg: Wire): void {
    if (this.#closed || !msg || typeof msg !== 'object') return;
    if (msg.t === 'res') {
      const p = this.#pending.get(msg.id);
      if (!p) return;
      this.#pending.delete(msg.id);
      clearTimeout(p.timer);
      if (!msg.error) return p.resolve(msg.data);
      const e = msg.error;
      const err = e.status !== undefined && e.code !== undefined ? new McuError(e.status, e.code, e.message) : new Error(e.message);
      err.name = e.name;
      p.reject(err);
    } else if (msg.t === 'ev') {
      for (const l of this.#listeners.get(msg.event as keyof InEv) ?? []) {
        try {
          l(msg.data as never);
        } catch (err) {
          // A listener's bug must not take the channel down (safeEmit).
          process.emitWarning(`listener for ${msg.event} threw: ${(err as Error)?.stack ?? err}`);
        }
      }
    } else if (msg.t === 'req') {
      void this.#answer(msg);
    }
  }

  async #answer(msg: Extract<Wire, { t: 'req' }>): Promise<void> {
    const h = this.#handlers[msg.method as keyof In];
    try {
      if (!h) throw new Error(`no handler for ${msg.method}`);
      const data = await h(msg.data as never);
      if (!this.#closed) this.port.postMessage({ t: 'res', id: msg.id, data } satisfies Wire);
    } catch (err) {
      const e = err as Partial<McuError>;
      if (this.#closed) return;
      this.port.postMessage({
        t: 'res',
        id: msg.id,
        error: { name: e?.name ?? 'Error', message: e?.message ?? String(err), status: e?.status, code: e?.code },
      } satisfies Wire);
    }
  }

  /** Rejects every pending request and stops listening. Safe to call twice. */
  close(why = 'closed'): void {
    if (this.#closed) return;
    this.#closed = true;
    this.port.off('message', this.#onMessage);
    for (const [, p] of this.#pending) {
      clearTimeout(p.timer);
      p.reject(new ChannelClosedError(`${p.method} (${why})`));
    }
    this.#pending.clear();
    this.#listeners.clear();
  }
}
