/**
 * An RTC worker: a thread that owns peers' WebRTC sessions (werift: ICE, DTLS, SRTP, RTCP) and
 * every packet they send or receive. The control thread talks to it with RtcRequests; it reports
 * with RtcEvents. See src/workers/MediaWorker.ts for the handle on the other side.
 */
import { parentPort } from 'node:worker_threads';
import { NotFoundError } from '../core/errors.js';
import { createLogger, setLogLevel, type LogLevel } from '../core/log.js';
import { ViewFeeds } from '../media/viewFeeds.js';
import os from 'node:os';
import { PeerSession, type RtcOptions } from '../rtc/native.js';
import { PlainRtpSession, type PlainOptions } from '../rtc/plain.js';
import { isPlainRtpOffer } from '../rtc/plainSdp.js';
import type { MediaSession } from '../rtc/session.js';
import { BadRequestError } from '../core/errors.js';
import { LoopLagMonitor } from '../core/loopLag.js';
import { raiseThreadPriority } from '../core/threadPriority.js';
import { Channel, type PortLike } from './channel.js';
import { collectGarbage, heapMb, writeHeapSnapshot } from './gc.js';
import type { NoEvents, NoRequests, RtcEvents, RtcRequests } from './protocol.js';
import { RtcPeer } from './RtcPeer.js';
import { strayErrors, surviveStrayErrors } from './strayErrors.js';

const lag = new LoopLagMonitor(`rtc-worker`);
const channel = new Channel<NoRequests, RtcRequests, RtcEvents, NoEvents>(parentPort as unknown as PortLike);
const log = createLogger('rtc');
surviveStrayErrors(log);
const peers = new Map<string, RtcPeer>();
const feeds = new ViewFeeds((key) => channel.notify('view.keyframe', { key }));

const peer = (id: string) => {
  const p = peers.get(id);
  if (!p) throw new NotFoundError(`no peer "${id}" on this worker`);
  return p;
};

/**
 * Plain RTP legs are announced on the node's first ICE address (MCU_ICE_ADDRESSES) and take their
 * ports from the same range; the sockets bind to that address when it is this machine's (else to
 * every address: the announced one is a NAT's).
 */
function plainOptions(rtc: RtcOptions): PlainOptions {
  const address = rtc.iceAddresses[0] ?? firstAddress();
  const local = Object.values(os.networkInterfaces()).some((list) => list?.some((i) => i.address === address));
  return { address, bindAddress: local ? address : '0.0.0.0', portRange: rtc.portRange, canPublish: rtc.canPublish, canSubscribe: rtc.canSubscribe };
}

function firstAddress(): string {
  for (const list of Object.values(os.networkInterfaces())) for (const i of list ?? []) if (i.family === 'IPv4' && !i.internal) return i.address;
  return '127.0.0.1';
}

channel.serve({
  async init({ logLevel, nice }) {
    setLogLevel(logLevel as LogLevel);
    raiseThreadPriority('rtc-worker', nice);
    await PeerSession.warmUp().catch(() => undefined);
    return { feedPort: await feeds.open() };
  },
  async 'peer.open'({ id, offer, leg, rtc, label }) {
    let session: MediaSession;
    let plain: { host: string; rtpPort?: number } | undefined;
    if (leg || (offer !== undefined && isPlainRtpOffer(offer))) {
      const opts = plainOptions(rtc);
      const s = leg ? await PlainRtpSession.open(leg, opts) : await PlainRtpSession.answer(offer!, opts);
      session = s;
      plain = { host: opts.address, rtpPort: s.port('audio') ?? s.port('video') };
    } else if (offer !== undefined) {
      session = await PeerSession.answer(offer, rtc);
    } else {
      throw new BadRequestError('an offer or a leg is needed');
    }
    const p = new RtcPeer(id, session, {
      inputGate: rtc.inputGate !== false,
      log: log.child(label),
      switched: (key, ms) => channel.notify('peer.switched', { id, key, ms }),
      state: (state) => channel.notify('peer.state', { id, state }),
      dtmf: (e) => channel.notify('peer.dtmf', { id, ...e }),
    });
    peers.set(id, p);
    try {
      const audioOutPort = await p.openAudioOut();
      return { answer: session.answerSdp, tracks: session.tracks, audioOutPort, plain };
    } catch (err) {
      peers.delete(id);
      await p.close();
      throw err;
    }
  },
  'peer.targets'({ id, videoInPort, audioInPort }) {
    peer(id).setTargets(videoInPort, audioInPort);
  },
  'peer.follow'({ id, key }) {
    const p = peers.get(id);
    p?.follow(feeds.feed(key));
    return { shown: p?.videoOut?.shown?.key, pending: p?.videoOut?.pending?.key };
  },
  'peer.gate'({ id, cutoff }) {
    peers.get(id)?.setGateCutoff(cutoff);
  },
  'peer.pli'({ id }) {
    peers.get(id)?.requestKeyframe();
  },
  async 'peer.close'({ id }) {
    const p = peers.get(id);
    peers.delete(id);
    await p?.close();
  },
  'view.generation'({ key, codec, ssrc }) {
    feeds.generation(key, codec, ssrc);
  },
  'view.started'({ key, ssrc, startMs }) {
    feeds.started(key, ssrc, startMs);
  },
  'view.forget'({ key }) {
    feeds.forget(key);
  },
  'mix.generation'({ room, ssrc }) {
    feeds.mixGeneration(room, ssrc);
  },
  'mix.forget'({ room }) {
    feeds.forgetMix(room);
  },
  'peer.mix'({ id, room }) {
    peers.get(id)?.followMix(feeds.mix(room));
  },
  'test.crash'() {
    setImmediate(() => process.exit(70));
  },
  'test.hang'() {
    setImmediate(() => {
      // Never yields: the control thread's watchdog must notice.
      for (;;);
    });
  },
  'test.stray'() {
    setImmediate(() => {
      throw new Error('a stray exception (test)');
    });
    void Promise.reject(new Error('a stray rejection (test)'));
  },
  'test.gc'() {
    collectGarbage();
    return heapMb();
  },
  'test.heapSnapshot'({ file }) {
    return writeHeapSnapshot(file);
  },
});

// The media side decides; the control side hears it four times a second. The report is made in
// the check phase, after the poll phase has read what the sockets hold: were this thread stalled,
// timers run first on waking, and a report made then would count the stall as the peers' silence
// (the control side removes a peer silent for MCU_PEER_TIMEOUT_MS).
setInterval(() => {
  setImmediate(() => channel.notify('stats', { peers: [...peers].map(([id, p]) => [id, p.stats()]), maxLoopLagMs: lag.maxLagMs, strayErrors: strayErrors() }));
}, 250);
