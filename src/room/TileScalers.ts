import type { Logger } from '../core/log.js';
import { scalerLaunch } from '../core/pipelines.js';
import type { GstHost, RemotePipeline } from '../gst/remote.js';

interface Scaler {
  pipeline: Promise<RemotePipeline>;
  refs: number;
  ready: Promise<void>;
}

/**
 * Each participant's video scaled once per tile size, shared by every composite that shows it at
 * that size: in a room where everyone sees a grid of the others, N composites used to scale each
 * input N-1 times; now each input is scaled once. A scaler reads the participant's decoded channel
 * and writes `<channel>-<W>x<H>`; composites read that, and their own videoscale passes it through.
 * Reference counted by the composites that use it.
 */
export class TileScalers {
  readonly #scalers = new Map<string, Scaler>();
  #closed = false;

  constructor(
    private readonly gst: GstHost,
    private readonly channelOf: (participantId: string) => string,
    private readonly fps: number,
    private readonly inputTimeoutNs: bigint,
    private readonly log: Logger,
  ) {}

  static channel(source: string, width: number, height: number): string {
    return `${source}-${width}x${height}`;
  }

  /**
   * The channel with `participantId` at width x height, once its first picture is there (or after
   * half a second, so that a participant without video yet does not hold a composite back).
   */
  async acquire(participantId: string, width: number, height: number): Promise<string> {
    const source = this.channelOf(participantId);
    const channel = TileScalers.channel(source, width, height);
    let s = this.#scalers.get(channel);
    if (!s) {
      const pipeline = this.gst.start(scalerLaunch({ source, channel, width, height, fps: this.fps, inputTimeoutNs: this.inputTimeoutNs }), {
        onBus: (e) => {
          if (e.type === 'error') this.log.error(`tile scaler ${channel}: ${e.element}: ${e.message}`);
        },
      });
      s = { pipeline, refs: 0, ready: pipeline.then((p) => this.#firstPicture(p)).catch(() => undefined) };
      this.#scalers.set(channel, s);
    }
    s.refs++;
    await s.ready;
    return channel;
  }

  async #firstPicture(p: RemotePipeline): Promise<void> {
    const end = performance.now() + 500;
    while (performance.now() < end && !p.closed) {
      const m = /rendered=\(guint64\)(\d+)/.exec(String((await p.get('out', 'stats').catch(() => '')) ?? ''));
      if (m && Number(m[1]) > 0) return;
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  release(channel: string): void {
    const s = this.#scalers.get(channel);
    if (!s || --s.refs > 0) return;
    this.#scalers.delete(channel);
    void s.pipeline.then((p) => p.close()).catch(() => undefined);
  }

  get size(): number {
    return this.#scalers.size;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const all = [...this.#scalers.values()];
    this.#scalers.clear();
    await Promise.all(all.map((s) => s.pipeline.then((p) => p.close()).catch(() => undefined)));
  }
}
