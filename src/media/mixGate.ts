/**
 * Where a selected talker's packets come from: its own mix-minus encoder while it is selected, the
 * room's shared mix otherwise. Both arrive in the peer's RTC worker at about the same instants (the
 * mixer makes both from one frame), in either order. The gate passes one of them per frame:
 * - while the own stream flows, it wins: a shared packet is held briefly and dropped if an own one
 *   comes within `pairMs` of it (before or after);
 * - when the own stream stops (the talker left the selection), the shared one passes after the hold,
 *   and without one once no own packet has come for `ownMs`;
 * - when the own stream starts, its first packet is dropped if a shared packet for the same frame
 *   has just gone out.
 * Pure: the clock and the timer are injected.
 */
export class MixGate {
  #lastOwnAt = -Infinity;
  #lastSentAt = -Infinity;
  #lastSentShared = false;
  #held?: { cancel: () => void; packet: Buffer };
  /** Packets dropped as a second copy of a frame. */
  dropped = 0;

  constructor(
    private readonly send: (packet: Buffer, shared: boolean) => void,
    private readonly now: () => number = () => performance.now(),
    private readonly later: (fn: () => void, ms: number) => () => void = (fn, ms) => {
      const t = setTimeout(fn, ms);
      return () => clearTimeout(t);
    },
    readonly pairMs = 12,
    readonly ownMs = 60,
  ) {}

  own(packet: Buffer): void {
    const now = this.now();
    this.#lastOwnAt = now;
    if (this.#held) {
      this.#held.cancel();
      this.#held = undefined;
      this.dropped++;
    }
    if (this.#lastSentShared && now - this.#lastSentAt < this.pairMs) {
      this.dropped++;
      return;
    }
    this.#out(packet, false, now);
  }

  shared(packet: Buffer): void {
    const now = this.now();
    const sinceOwn = now - this.#lastOwnAt;
    if (sinceOwn >= this.ownMs) return this.#out(packet, true, now);
    if (sinceOwn < this.pairMs) {
      this.dropped++;
      return;
    }
    if (this.#held) {
      // Should not happen (frames are 20 ms apart): let the older one go first.
      const h = this.#held;
      h.cancel();
      this.#held = undefined;
      this.#out(h.packet, true, now);
    }
    const held = { packet, cancel: () => {} };
    held.cancel = this.later(() => {
      if (this.#held !== held) return;
      this.#held = undefined;
      this.#out(packet, true, this.now());
    }, this.pairMs);
    this.#held = held;
  }

  #out(packet: Buffer, shared: boolean, now: number): void {
    this.#lastSentAt = now;
    this.#lastSentShared = shared;
    this.send(packet, shared);
  }

  close(): void {
    this.#held?.cancel();
    this.#held = undefined;
  }
}
