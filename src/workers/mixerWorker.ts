/**
 * The mixer worker: one AudioMixer (mix-minus) per room, on a thread of its own, so that neither a
 * stall of the control thread nor a pipeline being built can delay a mix frame. Decoded PCM comes
 * in from each participant's pipeline over loopback UDP; each listener's mix goes to its Opus
 * encoder as RTP L16, and a recording's full mix to the recorder with the instant of each frame.
 */
import { parentPort } from 'node:worker_threads';
import { nowMs } from '../core/clock.js';
import { createLogger, setLogLevel, type LogLevel } from '../core/log.js';
import { strayErrors, surviveStrayErrors } from './strayErrors.js';
import { L16Packetizer, pcmAtPacket } from '../media/l16.js';
import { LocalUdp, sendToPipeline } from '../media/localUdp.js';
import { AudioMixer } from '../media/audioMixer.js';
import { MixSelection } from '../core/mixSelection.js';
import { LoopLagMonitor } from '../core/loopLag.js';
import { raiseThreadPriority } from '../core/threadPriority.js';
import { Channel, type PortLike } from './channel.js';
import { collectGarbage, heapMb, writeHeapSnapshot } from './gc.js';
import type { MixerEvents, MixerRequests, NoEvents, NoRequests } from './protocol.js';

surviveStrayErrors(createLogger('mixer'));
const lag = new LoopLagMonitor(`mixer-worker`);
const channel = new Channel<NoRequests, MixerRequests, MixerEvents, NoEvents>(parentPort as unknown as PortLike);

interface RoomMix {
  mixer: AudioMixer;
  inputs: Map<string, LocalUdp>;
}
const rooms = new Map<string, RoomMix>();

let mixSpeakers = 0;

const roomMix = (id: string): RoomMix => {
  let r = rooms.get(id);
  if (!r) rooms.set(id, (r = { mixer: new AudioMixer(nowMs, new MixSelection({ maxSpeakers: mixSpeakers })), inputs: new Map() }));
  return r;
};

function closeRoom(id: string): void {
  const r = rooms.get(id);
  if (!r) return;
  rooms.delete(id);
  r.inputs.forEach((u) => u.close());
  r.mixer.close();
}

channel.serve({
  init({ logLevel, nice, mixSpeakers: k }) {
    mixSpeakers = k;
    setLogLevel(logLevel as LogLevel);
    raiseThreadPriority('mixer-worker', nice);
  },
  async 'input.add'({ room, id }) {
    const r = roomMix(room);
    r.inputs.get(id)?.close();
    const fifo = r.mixer.addInput(id);
    const udp = await LocalUdp.open((pcm) => fifo.write(pcm), 1024 * 1024);
    r.inputs.set(id, udp);
    return { port: udp.port };
  },
  'input.remove'({ room, id }) {
    const r = rooms.get(room);
    if (!r) return;
    r.mixer.removeInput(id);
    r.inputs.get(id)?.close();
    r.inputs.delete(id);
  },
  'output.add'({ room, id, port, format, when }) {
    const r = roomMix(room);
    if (format === 'l16') {
      const rtp = new L16Packetizer();
      r.mixer.addOutput(id, (pcm, pts) => sendToPipeline(port, rtp.packet(pcm, pts)), when);
    } else {
      r.mixer.addOutput(id, (pcm, _pts, at) => sendToPipeline(port, pcmAtPacket(pcm, at)));
    }
  },
  'output.remove'({ room, id }) {
    rooms.get(room)?.mixer.removeOutput(id);
  },
  'room.close'({ room }) {
    closeRoom(room);
  },
  'test.gc'() {
    collectGarbage();
    return heapMb();
  },
  'test.heapSnapshot'({ file }) {
    return writeHeapSnapshot(file);
  },
});

setInterval(() => {
  for (const [room, r] of rooms) {
    channel.notify('levels', { room, levels: [...r.mixer.takeLevels()], mixed: [...r.mixer.selection.selected] });
  }
  channel.notify('load', { maxLoopLagMs: lag.maxLagMs, strayErrors: strayErrors() });
}, 250);
