import crypto from 'node:crypto';
import type { Logger } from '../core/log.js';
import { distinctPorts, EL, sharedMixLaunch, udpClients, type Presets } from '../core/pipelines.js';
import type { GstHost, RemotePipeline } from '../gst/remote.js';
import { RestartPolicy } from '../media/restartPolicy.js';
import type { MixerWorker, RtcWorker } from '../workers/MediaWorker.js';

export interface SharedMixDeps {
  gst: GstHost;
  mixer: MixerWorker;
  presets: Presets;
  bitrate: number;
  /** Every RTC worker: each learns the SSRC, whichever of its peers follow. */
  rtcWorkers: () => RtcWorker[];
  log: Logger;
}

/** The mixer's output id for a room's shared mix (no participant id starts with '#'). */
const OUTPUT_ID = '#shared';

/**
 * A room's shared mix, encoded once in Opus: what every listener outside the mixed talkers hears
 * (see src/core/mixSelection.ts). Each Opus listener follows it; its RTC worker passes it to the peer
 * whenever the listener's own mix-minus is not flowing (src/media/mixGate.ts). It runs while anyone
 * follows it, and is rebuilt after a pipeline error under the one restart policy.
 */
export class SharedMix {
  /** Each follower's participant id and its RTC worker. */
  readonly followers = new Map<string, RtcWorker>();
  #pipeline?: RemotePipeline;
  #starting?: Promise<void>;
  #ssrc = 0;
  #ports: number[] = [];
  #closed = false;
  readonly #restarts = new RestartPolicy();
  readonly #log: Logger;

  constructor(
    readonly roomId: string,
    private readonly deps: SharedMixDeps,
  ) {
    this.#log = deps.log.child({ sharedMix: roomId });
  }

  get running(): boolean {
    return !!this.#pipeline && !this.#pipeline.closed;
  }

  /** `id`'s peer (on `worker`) hears the shared mix whenever it is not among the talkers. */
  async follow(id: string, worker: RtcWorker): Promise<void> {
    if (this.#closed) return;
    this.followers.set(id, worker);
    await this.#ensure();
    this.#updatePorts();
    // A worker started after the mix (a restarted one) has not heard its SSRC yet.
    if (this.#ssrc) await worker.channel.request('mix.generation', { room: this.roomId, ssrc: this.#ssrc });
    await worker.channel.request('peer.mix', { id, room: this.roomId });
  }

  unfollow(id: string): void {
    if (!this.followers.delete(id)) return;
    if (this.followers.size === 0) {
      void this.#stop();
      return;
    }
    this.#updatePorts();
  }

  #wantedPorts(): number[] {
    return distinctPorts([...this.followers.values()].map((w) => w.feedPort));
  }

  #updatePorts(): void {
    const want = this.#wantedPorts();
    if (want.join() === this.#ports.join()) return;
    this.#ports = want;
    if (this.running) this.#pipeline!.set(EL.audioOut, 'clients', udpClients(want));
  }

  #ensure(): Promise<void> {
    if (this.running) return Promise.resolve();
    this.#starting ??= this.#start().finally(() => (this.#starting = undefined));
    return this.#starting;
  }

  async #start(): Promise<void> {
    if (this.#closed) return;
    const ssrc = crypto.randomInt(1, 0xffffffff);
    this.#ports = this.#wantedPorts();
    // Every RTC worker knows the SSRC before the first packet can reach it.
    await Promise.all(this.deps.rtcWorkers().map((w) => w.channel.request('mix.generation', { room: this.roomId, ssrc }).catch(() => undefined)));
    const p = await this.deps.gst.start(sharedMixLaunch({ codec: 'opus', bitrate: this.deps.bitrate, ssrc, rtpPorts: this.#ports }, this.deps.presets), {
      ports: [EL.mixIn],
      onBus: (e) => {
        if (e.type === 'error') {
          this.#log.error(`pipeline error in element ${e.element}: ${e.message}`);
          this.#restart();
        }
      },
    });
    if (this.#closed || this.followers.size === 0) {
      await p.close();
      return;
    }
    this.#pipeline = p;
    this.#ssrc = ssrc;
    this.#restarts.started();
    // Followers that came or went while it started.
    this.#updatePorts();
    await this.deps.mixer.channel.request('output.add', { room: this.roomId, id: OUTPUT_ID, port: p.ports[EL.mixIn], format: 'l16' });
    this.#log.debug('shared mix started', { ssrc });
  }

  #restart(): void {
    if (this.#closed) return;
    void this.#stop();
    const again = this.#restarts.schedule(() => {
      if (this.followers.size > 0) void this.#ensure().catch((err) => this.#log.error(`shared mix restart failed: ${(err as Error).message}`));
    });
    if (!again) this.#log.error('shared mix failed 5 times; listeners outside the talkers hear nothing');
  }

  async #stop(): Promise<void> {
    const p = this.#pipeline;
    this.#pipeline = undefined;
    if (!p) return;
    void this.deps.mixer.channel.request('output.remove', { room: this.roomId, id: OUTPUT_ID }).catch(() => undefined);
    await p.close();
  }

  /** Stops the shared mix; the RTC workers forget its SSRC. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#restarts.cancel();
    this.followers.clear();
    await this.#stop();
    await Promise.all(this.deps.rtcWorkers().map((w) => w.channel.request('mix.forget', { room: this.roomId }).catch(() => undefined)));
  }
}
