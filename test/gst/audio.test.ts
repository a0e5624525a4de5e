import { afterAll, describe, expect, it } from 'vitest';
import { EL, loadPresets, participantLaunch } from '../../src/core/pipelines.js';
import { GstPipeline } from '../../src/gst/native.js';
import { AudioMixer } from '../../src/media/audioMixer.js';
import { L16Packetizer } from '../../src/media/l16.js';
import { LocalUdp, sendToPipeline } from '../../src/media/localUdp.js';
import { pcmFrom, sleep, toneDb, toneSender } from '../helpers/media.js';

const presets = loadPresets();
const closers: Array<{ close(): unknown }> = [];
afterAll(async () => {
  await Promise.all(closers.map((c) => c.close()));
});

describe('mix-minus through real Opus decode, mixer and encode', () => {
  it('each of three people hears the other two tones and not their own', async () => {
    const mixer = new AudioMixer();
    closers.push(mixer);
    const people = [
      { id: 'a', freq: 440 },
      { id: 'b', freq: 700 },
      { id: 'c', freq: 1100 },
    ];
    const heard = new Map<string, Buffer[]>();
    for (const p of people) {
      // What this person hears: their mix-minus Opus RTP, decoded back to PCM by an independent pipeline.
      const pcm: Buffer[] = [];
      heard.set(p.id, pcm);
      const pcmOut = await LocalUdp.open((b) => pcm.push(b));
      const listener = new GstPipeline(
        'udpsrc name=src address=127.0.0.1 port=0 caps="application/x-rtp,media=audio,clock-rate=48000,encoding-name=OPUS,payload=111" ! ' +
          `rtpjitterbuffer latency=40 ! rtpopusdepay ! opusdec ! audioconvert ! audioresample ! audio/x-raw,format=S16LE,rate=48000,channels=1 ! udpsink host=127.0.0.1 port=${pcmOut.port} sync=false`,
      );
      listener.play();
      const fifo = mixer.addInput(p.id);
      const decoded = await LocalUdp.open((b) => fifo.write(b));
      const pipeline = new GstPipeline(
        participantLaunch(
          {
            audio: { codec: 'opus', payloadType: 111, pcmPort: decoded.port },
            mix: { codec: 'opus', bitrate: 48000, rtpPort: Number(listener.get('src', 'port')) },
          },
          presets,
        ),
      );
      pipeline.play();
      // The mix goes to the encoder as RTP L16, as the mixer worker sends it.
      const l16 = new L16Packetizer();
      const mixPort = Number(pipeline.get(EL.mixIn, 'port'));
      mixer.addOutput(p.id, (buf, pts) => sendToPipeline(mixPort, l16.packet(buf, pts)));
      closers.push(pcmOut, listener, decoded, pipeline, toneSender(p.freq, Number(pipeline.get(EL.audioIn, 'port'))));
    }
    await sleep(2500);
    for (const p of people) {
      const samples = pcmFrom(heard.get(p.id)!);
      expect(samples.length, `${p.id} heard ${samples.length} samples`).toBeGreaterThan(48000);
      const last = samples.subarray(samples.length - 24000); // the last 0.5 s
      const own = toneDb(last, p.freq);
      for (const o of people.filter((x) => x !== p)) {
        const other = toneDb(last, o.freq);
        expect(other, `${p.id} hears ${o.freq} Hz`).toBeGreaterThan(-30);
        expect(other - own, `${p.id}: ${o.freq} Hz over own ${p.freq} Hz`).toBeGreaterThan(30);
      }
    }
  });
});
