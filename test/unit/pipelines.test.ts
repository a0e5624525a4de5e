import { describe, expect, it } from 'vitest';
import {
  sharedMixLaunch,
  chain,
  compositeLaunch,
  loadPresets,
  padRef,
  parseCaps,
  participantLaunch,
  q,
  quoted,
  recorderLaunch,
  renderCaps,
  renderElement,
  scalerLaunch,
  threadRules,
  type CompositeSpec,
} from '../../src/core/pipelines.js';

const presets = loadPresets();

const spec = (over: Partial<CompositeSpec> = {}): CompositeSpec => ({
  width: 640,
  height: 360,
  fps: 30,
  codec: 'vp8',
  bitrate: 800_000,
  tiles: [
    { x: 4, y: 92, width: 314, height: 176, source: { kind: 'video', channel: 'mcu-v-a' }, plate: { path: '/c/plate a.png', x: 8, y: 240 } },
    { x: 322, y: 92, width: 314, height: 176, source: { kind: 'image', path: '/c/ph.png' } },
  ],
  background: '/c/wait.png',
  inputTimeoutNs: 6_000_000_000n,
  rtpPorts: [5004, 5006],
  ssrc: 1234,
  ...over,
});

/**
 * Whole launch strings for representative specs, exactly: a change to any of them is a change to
 * what GStreamer runs, and has to be made here on purpose.
 */
const CASES: Record<string, () => string> = {
  compositeVp8: () => compositeLaunch(spec(), presets),
  compositeVp8Recording: () => compositeLaunch(spec({ steadyTiles: true, gopSeconds: 2, threads: 2, rtpPorts: [7000] }), presets),
  compositeVp8Empty: () => compositeLaunch(spec({ tiles: [] }), presets),
  compositeH264: () => compositeLaunch(spec({ codec: 'h264', width: 1280, height: 720, bitrate: 1_500_000, fps: 25 }), presets),
  compositeH264Recording: () => compositeLaunch(spec({ codec: 'h264', steadyTiles: true, gopSeconds: 2, threads: 2, ssrc: 99 }), presets),
  participantAll: () =>
    participantLaunch(
      {
        video: { codec: 'vp8', payloadType: 96, channel: 'mcu-v-x' },
        audio: { codec: 'opus', payloadType: 111, pcmPort: 6000 },
        mix: { codec: 'opus', bitrate: 32000, rtpPort: 6002 },
      },
      presets,
    ),
  participantH264Video: () => participantLaunch({ video: { codec: 'h264', payloadType: 102, channel: 'c' } }, presets),
  participantAudio: () => participantLaunch({ audio: { codec: 'opus', payloadType: 109, pcmPort: 6100 } }, presets),
  participantMix: () => participantLaunch({ mix: { codec: 'opus', bitrate: 48000, rtpPort: 6102 } }, presets),
  participantVideoMix: () =>
    participantLaunch({ video: { codec: 'vp8', payloadType: 98, channel: 'a b' }, mix: { codec: 'opus', bitrate: 32000, rtpPort: 6104 } }, presets),
  // Legacy endpoints (SIP phones, room systems): G.711 and G.722 in and out, static and dynamic
  // payload types. G.722's RTP clock is 8 kHz though its audio is 16 kHz (RFC 3551).
  participantPcmu: () =>
    participantLaunch({ audio: { codec: 'pcmu', payloadType: 0, pcmPort: 6200 }, mix: { codec: 'pcmu', bitrate: 64000, rtpPort: 6202 } }, presets),
  participantPcma: () =>
    participantLaunch({ audio: { codec: 'pcma', payloadType: 8, pcmPort: 6300 }, mix: { codec: 'pcma', bitrate: 64000, rtpPort: 6302 } }, presets),
  participantG722: () =>
    participantLaunch({ audio: { codec: 'g722', payloadType: 9, pcmPort: 6400 }, mix: { codec: 'g722', bitrate: 64000, rtpPort: 6402 } }, presets),
  participantH264G722Dynamic: () =>
    participantLaunch(
      {
        video: { codec: 'h264', payloadType: 97, channel: 'mcu-v-room' },
        audio: { codec: 'g722', payloadType: 101, pcmPort: 6500 },
        mix: { codec: 'g722', bitrate: 64000, rtpPort: 6502, payloadType: 101 },
      },
      presets,
    ),
  participantOpusMixPt: () => participantLaunch({ mix: { codec: 'opus', bitrate: 32000, rtpPort: 6602, payloadType: 109 } }, presets),
  sharedMix: () => sharedMixLaunch({ codec: 'opus', bitrate: 32000, ssrc: 4242, rtpPorts: [7100, 7102] }, presets),
  scaler: () => scalerLaunch({ source: 'mcu-v-a', channel: 'mcu-v-a-314x176', width: 314, height: 176, fps: 30, inputTimeoutNs: 6_000_000_000n }),
  recorderWebm: () => recorderLaunch({ format: 'webm', audioBitrate: 64000, file: '/r/a b.webm' }, presets),
  recorderMp4: () => recorderLaunch({ format: 'mp4', audioBitrate: 128000, file: '/r/x.mp4' }, presets),
};

const GOLDEN: Record<keyof typeof CASES, string> = {
  compositeVp8: [
    'compositor name=comp background=black start-time-selection=first sink_0::xpos=4 sink_0::ypos=92 sink_0::zorder=1 sink_1::xpos=322 sink_1::ypos=92 sink_1::zorder=2 ! video/x-raw,format=I420,width=640,height=360,pixel-aspect-ratio=1/1,framerate=30/1 ! gdkpixbufoverlay location="/c/plate a.png" offset-x=8 offset-y=240 ! queue name=venq max-size-buffers=2 max-size-bytes=0 max-size-time=0 leaky=downstream ! vp8enc name=venc deadline=1 cpu-used=-6 threads=1 end-usage=cbr lag-in-frames=0 undershoot=95 buffer-size=1000 buffer-initial-size=500 buffer-optimal-size=600 keyframe-max-dist=300 error-resilient=partitions target-bitrate=800000 ! rtpvp8pay name=vpay timestamp-offset=0 ssrc=1234 pt=96 mtu=1200 picture-id-mode=15-bit ! multiudpsink name=vout clients="127.0.0.1:5004,127.0.0.1:5006" sync=false async=false',
    'intervideosrc channel=mcu-v-a timeout=6000000000 ! videoscale ! video/x-raw,format=I420,width=314,height=176,pixel-aspect-ratio=1/1,framerate=30/1 ! comp.sink_0',
    'filesrc location="/c/ph.png" ! pngdec ! imagefreeze is-live=true ! videoconvert ! videoscale ! video/x-raw,format=I420,width=314,height=176,pixel-aspect-ratio=1/1,framerate=30/1 ! comp.sink_1',
  ].join('  '),
  compositeVp8Recording: [
    'compositor name=comp background=black start-time-selection=first latency=33333333 sink_0::xpos=4 sink_0::ypos=92 sink_0::zorder=1 sink_1::xpos=322 sink_1::ypos=92 sink_1::zorder=2 ! video/x-raw,format=I420,width=640,height=360,pixel-aspect-ratio=1/1,framerate=30/1 ! gdkpixbufoverlay location="/c/plate a.png" offset-x=8 offset-y=240 ! queue name=venq max-size-buffers=30 max-size-bytes=0 max-size-time=0 leaky=downstream ! vp8enc name=venc deadline=1 cpu-used=-6 threads=2 end-usage=cbr lag-in-frames=0 undershoot=95 buffer-size=1000 buffer-initial-size=500 buffer-optimal-size=600 keyframe-max-dist=60 error-resilient=partitions target-bitrate=800000 ! rtpvp8pay name=vpay timestamp-offset=0 ssrc=1234 pt=96 mtu=1200 picture-id-mode=15-bit ! multiudpsink name=vout clients="127.0.0.1:7000" sync=false async=false',
    'intervideosrc channel=mcu-v-a timeout=6000000000 ! queue max-size-buffers=1 max-size-bytes=0 max-size-time=0 leaky=downstream ! videoscale ! video/x-raw,format=I420,width=314,height=176,pixel-aspect-ratio=1/1,framerate=30/1 ! comp.sink_0',
    'filesrc location="/c/ph.png" ! pngdec ! imagefreeze is-live=true ! videoconvert ! videoscale ! video/x-raw,format=I420,width=314,height=176,pixel-aspect-ratio=1/1,framerate=30/1 ! comp.sink_1',
  ].join('  '),
  compositeVp8Empty: [
    'compositor name=comp background=black start-time-selection=first sink_0::xpos=0 sink_0::ypos=0 sink_0::zorder=1 ! video/x-raw,format=I420,width=640,height=360,pixel-aspect-ratio=1/1,framerate=30/1 ! queue name=venq max-size-buffers=2 max-size-bytes=0 max-size-time=0 leaky=downstream ! vp8enc name=venc deadline=1 cpu-used=-6 threads=1 end-usage=cbr lag-in-frames=0 undershoot=95 buffer-size=1000 buffer-initial-size=500 buffer-optimal-size=600 keyframe-max-dist=300 error-resilient=partitions target-bitrate=800000 ! rtpvp8pay name=vpay timestamp-offset=0 ssrc=1234 pt=96 mtu=1200 picture-id-mode=15-bit ! multiudpsink name=vout clients="127.0.0.1:5004,127.0.0.1:5006" sync=false async=false',
    'filesrc location="/c/wait.png" ! pngdec ! imagefreeze is-live=true ! videoconvert ! videoscale ! video/x-raw,format=I420,width=640,height=360,pixel-aspect-ratio=1/1,framerate=30/1 ! comp.sink_0',
  ].join('  '),
  compositeH264: [
    'compositor name=comp background=black start-time-selection=first sink_0::xpos=4 sink_0::ypos=92 sink_0::zorder=1 sink_1::xpos=322 sink_1::ypos=92 sink_1::zorder=2 ! video/x-raw,format=I420,width=1280,height=720,pixel-aspect-ratio=1/1,framerate=25/1 ! gdkpixbufoverlay location="/c/plate a.png" offset-x=8 offset-y=240 ! queue name=venq max-size-buffers=2 max-size-bytes=0 max-size-time=0 leaky=downstream ! x264enc name=venc speed-preset=ultrafast tune=zerolatency threads=1 key-int-max=250 bitrate=1500 vbv-buf-capacity=600 option-string="slice-max-size=1100" ! video/x-h264,profile=constrained-baseline,stream-format=byte-stream ! rtph264pay name=vpay timestamp-offset=0 ssrc=1234 pt=102 mtu=1200 config-interval=0 aggregate-mode=none ! multiudpsink name=vout clients="127.0.0.1:5004,127.0.0.1:5006" sync=false async=false',
    'intervideosrc channel=mcu-v-a timeout=6000000000 ! videoscale ! video/x-raw,format=I420,width=314,height=176,pixel-aspect-ratio=1/1,framerate=25/1 ! comp.sink_0',
    'filesrc location="/c/ph.png" ! pngdec ! imagefreeze is-live=true ! videoconvert ! videoscale ! video/x-raw,format=I420,width=314,height=176,pixel-aspect-ratio=1/1,framerate=25/1 ! comp.sink_1',
  ].join('  '),
  compositeH264Recording: [
    'compositor name=comp background=black start-time-selection=first latency=33333333 sink_0::xpos=4 sink_0::ypos=92 sink_0::zorder=1 sink_1::xpos=322 sink_1::ypos=92 sink_1::zorder=2 ! video/x-raw,format=I420,width=640,height=360,pixel-aspect-ratio=1/1,framerate=30/1 ! gdkpixbufoverlay location="/c/plate a.png" offset-x=8 offset-y=240 ! queue name=venq max-size-buffers=30 max-size-bytes=0 max-size-time=0 leaky=downstream ! x264enc name=venc speed-preset=ultrafast tune=zerolatency threads=2 key-int-max=60 bitrate=800 vbv-buf-capacity=600 option-string="slice-max-size=1100" ! video/x-h264,profile=constrained-baseline,stream-format=byte-stream ! rtph264pay name=vpay timestamp-offset=0 ssrc=99 pt=102 mtu=1200 config-interval=0 aggregate-mode=none ! multiudpsink name=vout clients="127.0.0.1:5004,127.0.0.1:5006" sync=false async=false',
    'intervideosrc channel=mcu-v-a timeout=6000000000 ! queue max-size-buffers=1 max-size-bytes=0 max-size-time=0 leaky=downstream ! videoscale ! video/x-raw,format=I420,width=314,height=176,pixel-aspect-ratio=1/1,framerate=30/1 ! comp.sink_0',
    'filesrc location="/c/ph.png" ! pngdec ! imagefreeze is-live=true ! videoconvert ! videoscale ! video/x-raw,format=I420,width=314,height=176,pixel-aspect-ratio=1/1,framerate=30/1 ! comp.sink_1',
  ].join('  '),
  participantAll: [
    'udpsrc name=vin address=127.0.0.1 port=0 reuse=false buffer-size=4194304 caps="application/x-rtp,media=video,clock-rate=90000,encoding-name=VP8,payload=96" ! rtpjitterbuffer name=vjb latency=60 do-lost=true drop-on-latency=true ! rtpvp8depay request-keyframe=false wait-for-keyframe=true ! vp8dec threads=1 ! videoconvert ! video/x-raw,format=I420,pixel-aspect-ratio=1/1,interlace-mode=progressive ! intervideosink name=vsink sync=false channel=mcu-v-x',
    'udpsrc name=ain address=127.0.0.1 port=0 reuse=false buffer-size=1048576 caps="application/x-rtp,media=audio,clock-rate=48000,encoding-name=OPUS,payload=111" ! rtpjitterbuffer name=ajb latency=40 do-lost=true drop-on-latency=true ! rtpopusdepay ! opusdec plc=true use-inband-fec=true ! audioconvert ! audioresample ! audio/x-raw,format=S16LE,rate=48000,channels=1,layout=interleaved ! udpsink host=127.0.0.1 port=6000 sync=false async=false',
    'udpsrc name=mixin address=127.0.0.1 port=0 reuse=false buffer-size=262144 caps="application/x-rtp,media=audio,clock-rate=48000,encoding-name=L16,channels=1,payload=96" ! rtpL16depay ! audioconvert ! opusenc name=aenc bitrate=32000 complexity=5 frame-size=20 audio-type=voice inband-fec=true dtx=false perfect-timestamp=true ! rtpopuspay pt=111 mtu=1200 ! udpsink host=127.0.0.1 port=6002 sync=false async=false',
  ].join('  '),
  participantH264Video: 'udpsrc name=vin address=127.0.0.1 port=0 reuse=false buffer-size=4194304 caps="application/x-rtp,media=video,clock-rate=90000,encoding-name=H264,payload=102" ! rtpjitterbuffer name=vjb latency=60 do-lost=true drop-on-latency=true ! rtph264depay request-keyframe=false wait-for-keyframe=true ! avdec_h264 max-threads=1 ! videoconvert ! video/x-raw,format=I420,pixel-aspect-ratio=1/1,interlace-mode=progressive ! intervideosink name=vsink sync=false channel=c',
  participantAudio: 'udpsrc name=ain address=127.0.0.1 port=0 reuse=false buffer-size=1048576 caps="application/x-rtp,media=audio,clock-rate=48000,encoding-name=OPUS,payload=109" ! rtpjitterbuffer name=ajb latency=40 do-lost=true drop-on-latency=true ! rtpopusdepay ! opusdec plc=true use-inband-fec=true ! audioconvert ! audioresample ! audio/x-raw,format=S16LE,rate=48000,channels=1,layout=interleaved ! udpsink host=127.0.0.1 port=6100 sync=false async=false',
  participantMix: 'udpsrc name=mixin address=127.0.0.1 port=0 reuse=false buffer-size=262144 caps="application/x-rtp,media=audio,clock-rate=48000,encoding-name=L16,channels=1,payload=96" ! rtpL16depay ! audioconvert ! opusenc name=aenc bitrate=48000 complexity=5 frame-size=20 audio-type=voice inband-fec=true dtx=false perfect-timestamp=true ! rtpopuspay pt=111 mtu=1200 ! udpsink host=127.0.0.1 port=6102 sync=false async=false',
  participantVideoMix: [
    'udpsrc name=vin address=127.0.0.1 port=0 reuse=false buffer-size=4194304 caps="application/x-rtp,media=video,clock-rate=90000,encoding-name=VP8,payload=98" ! rtpjitterbuffer name=vjb latency=60 do-lost=true drop-on-latency=true ! rtpvp8depay request-keyframe=false wait-for-keyframe=true ! vp8dec threads=1 ! videoconvert ! video/x-raw,format=I420,pixel-aspect-ratio=1/1,interlace-mode=progressive ! intervideosink name=vsink sync=false channel="a b"',
    'udpsrc name=mixin address=127.0.0.1 port=0 reuse=false buffer-size=262144 caps="application/x-rtp,media=audio,clock-rate=48000,encoding-name=L16,channels=1,payload=96" ! rtpL16depay ! audioconvert ! opusenc name=aenc bitrate=32000 complexity=5 frame-size=20 audio-type=voice inband-fec=true dtx=false perfect-timestamp=true ! rtpopuspay pt=111 mtu=1200 ! udpsink host=127.0.0.1 port=6104 sync=false async=false',
  ].join('  '),
  participantPcmu: [
    'udpsrc name=ain address=127.0.0.1 port=0 reuse=false buffer-size=1048576 caps="application/x-rtp,media=audio,clock-rate=8000,encoding-name=PCMU,payload=0" ! rtpjitterbuffer name=ajb latency=40 do-lost=true drop-on-latency=true ! rtppcmudepay ! mulawdec ! audioconvert ! audioresample ! audio/x-raw,format=S16LE,rate=48000,channels=1,layout=interleaved ! udpsink host=127.0.0.1 port=6200 sync=false async=false',
    'udpsrc name=mixin address=127.0.0.1 port=0 reuse=false buffer-size=262144 caps="application/x-rtp,media=audio,clock-rate=48000,encoding-name=L16,channels=1,payload=96" ! rtpL16depay ! audioconvert ! audioresample ! audio/x-raw,rate=8000,channels=1 ! mulawenc name=aenc perfect-timestamp=true ! rtppcmupay pt=0 min-ptime=20000000 max-ptime=20000000 ! udpsink host=127.0.0.1 port=6202 sync=false async=false',
  ].join('  '),
  participantPcma: [
    'udpsrc name=ain address=127.0.0.1 port=0 reuse=false buffer-size=1048576 caps="application/x-rtp,media=audio,clock-rate=8000,encoding-name=PCMA,payload=8" ! rtpjitterbuffer name=ajb latency=40 do-lost=true drop-on-latency=true ! rtppcmadepay ! alawdec ! audioconvert ! audioresample ! audio/x-raw,format=S16LE,rate=48000,channels=1,layout=interleaved ! udpsink host=127.0.0.1 port=6300 sync=false async=false',
    'udpsrc name=mixin address=127.0.0.1 port=0 reuse=false buffer-size=262144 caps="application/x-rtp,media=audio,clock-rate=48000,encoding-name=L16,channels=1,payload=96" ! rtpL16depay ! audioconvert ! audioresample ! audio/x-raw,rate=8000,channels=1 ! alawenc name=aenc perfect-timestamp=true ! rtppcmapay pt=8 min-ptime=20000000 max-ptime=20000000 ! udpsink host=127.0.0.1 port=6302 sync=false async=false',
  ].join('  '),
  participantG722: [
    'udpsrc name=ain address=127.0.0.1 port=0 reuse=false buffer-size=1048576 caps="application/x-rtp,media=audio,clock-rate=8000,encoding-name=G722,payload=9" ! rtpjitterbuffer name=ajb latency=40 do-lost=true drop-on-latency=true ! rtpg722depay ! avdec_g722 ! audioconvert ! audioresample ! audio/x-raw,format=S16LE,rate=48000,channels=1,layout=interleaved ! udpsink host=127.0.0.1 port=6400 sync=false async=false',
    'udpsrc name=mixin address=127.0.0.1 port=0 reuse=false buffer-size=262144 caps="application/x-rtp,media=audio,clock-rate=48000,encoding-name=L16,channels=1,payload=96" ! rtpL16depay ! audioconvert ! audioresample ! audio/x-raw,rate=16000,channels=1 ! avenc_g722 name=aenc perfect-timestamp=true ! rtpg722pay pt=9 min-ptime=20000000 max-ptime=20000000 ! udpsink host=127.0.0.1 port=6402 sync=false async=false',
  ].join('  '),
  participantH264G722Dynamic: [
    'udpsrc name=vin address=127.0.0.1 port=0 reuse=false buffer-size=4194304 caps="application/x-rtp,media=video,clock-rate=90000,encoding-name=H264,payload=97" ! rtpjitterbuffer name=vjb latency=60 do-lost=true drop-on-latency=true ! rtph264depay request-keyframe=false wait-for-keyframe=true ! avdec_h264 max-threads=1 ! videoconvert ! video/x-raw,format=I420,pixel-aspect-ratio=1/1,interlace-mode=progressive ! intervideosink name=vsink sync=false channel=mcu-v-room',
    'udpsrc name=ain address=127.0.0.1 port=0 reuse=false buffer-size=1048576 caps="application/x-rtp,media=audio,clock-rate=8000,encoding-name=G722,payload=101" ! rtpjitterbuffer name=ajb latency=40 do-lost=true drop-on-latency=true ! rtpg722depay ! avdec_g722 ! audioconvert ! audioresample ! audio/x-raw,format=S16LE,rate=48000,channels=1,layout=interleaved ! udpsink host=127.0.0.1 port=6500 sync=false async=false',
    'udpsrc name=mixin address=127.0.0.1 port=0 reuse=false buffer-size=262144 caps="application/x-rtp,media=audio,clock-rate=48000,encoding-name=L16,channels=1,payload=96" ! rtpL16depay ! audioconvert ! audioresample ! audio/x-raw,rate=16000,channels=1 ! avenc_g722 name=aenc perfect-timestamp=true ! rtpg722pay pt=101 min-ptime=20000000 max-ptime=20000000 ! udpsink host=127.0.0.1 port=6502 sync=false async=false',
  ].join('  '),
  participantOpusMixPt: 'udpsrc name=mixin address=127.0.0.1 port=0 reuse=false buffer-size=262144 caps="application/x-rtp,media=audio,clock-rate=48000,encoding-name=L16,channels=1,payload=96" ! rtpL16depay ! audioconvert ! opusenc name=aenc bitrate=32000 complexity=5 frame-size=20 audio-type=voice inband-fec=true dtx=false perfect-timestamp=true ! rtpopuspay pt=109 mtu=1200 ! udpsink host=127.0.0.1 port=6602 sync=false async=false',
  sharedMix: 'udpsrc name=mixin address=127.0.0.1 port=0 reuse=false buffer-size=262144 caps="application/x-rtp,media=audio,clock-rate=48000,encoding-name=L16,channels=1,payload=96" ! rtpL16depay ! audioconvert ! opusenc name=aenc bitrate=32000 complexity=5 frame-size=20 audio-type=voice inband-fec=true dtx=false perfect-timestamp=true ! rtpopuspay ssrc=4242 pt=111 mtu=1200 ! multiudpsink name=aout clients="127.0.0.1:7100,127.0.0.1:7102" sync=false async=false',
  scaler: 'intervideosrc name=scale channel=mcu-v-a timeout=6000000000 ! videoscale ! video/x-raw,format=I420,width=314,height=176,pixel-aspect-ratio=1/1,framerate=30/1 ! intervideosink name=out sync=false channel=mcu-v-a-314x176',
  recorderWebm: [
    'webmmux name=mux writing-app=webrtc-mcu min-cluster-duration=1000000000 max-cluster-duration=1000000000 ! filesink name=file location="/r/a b.webm" buffer-mode=unbuffered',
    'appsrc name=vrtpin is-live=false format=time max-bytes=4000000 caps="application/x-rtp,media=video,clock-rate=90000,encoding-name=VP8,payload=96" ! rtpvp8depay request-keyframe=false wait-for-keyframe=true ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=3000000000 ! mux.',
    'appsrc name=mixin is-live=false format=time max-bytes=960000 caps="audio/x-raw,format=S16LE,rate=48000,channels=1,layout=interleaved" ! audioconvert ! audioresample ! opusenc bitrate=64000 ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=3000000000 ! mux.',
  ].join('  '),
  recorderMp4: [
    'mp4mux name=mux fragment-duration=1000 ! filesink name=file location="/r/x.mp4" buffer-mode=unbuffered',
    'appsrc name=vrtpin is-live=false format=time max-bytes=4000000 caps="application/x-rtp,media=video,clock-rate=90000,encoding-name=H264,payload=102" ! rtph264depay request-keyframe=false wait-for-keyframe=true ! h264parse ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=3000000000 ! mux.',
    'appsrc name=mixin is-live=false format=time max-bytes=960000 caps="audio/x-raw,format=S16LE,rate=48000,channels=1,layout=interleaved" ! audioconvert ! audioresample ! voaacenc bitrate=128000 ! aacparse ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=3000000000 ! mux.',
  ].join('  '),
};

describe('launch strings', () => {
  it.each(Object.keys(CASES))('%s is exactly the golden string', (k) => {
    expect(CASES[k]()).toBe(GOLDEN[k]);
  });
});

describe('compositeLaunch', () => {
  const launch = compositeLaunch(spec(), presets);

  it('scales each tile with its own videoscale to square pixels before the compositor', () => {
    expect(launch).toContain(
      'intervideosrc channel=mcu-v-a timeout=6000000000 ! videoscale ! video/x-raw,format=I420,width=314,height=176,pixel-aspect-ratio=1/1,framerate=30/1 ! comp.sink_0',
    );
    expect(launch).toContain('filesrc location="/c/ph.png" ! pngdec ! imagefreeze is-live=true ! videoconvert ! videoscale');
    expect(launch).toContain('sink_0::xpos=4 sink_0::ypos=92');
    expect(launch).toContain('sink_1::xpos=322 sink_1::ypos=92');
    // Pads never scale (no sink_N::width): that costs 4-6x more than videoscale.
    expect(launch).not.toMatch(/sink_\d+::width/);
  });

  it('uses a black background, realtime VP8, and sends RTP with its SSRC to every follower thread', () => {
    expect(launch).toContain('compositor name=comp background=black');
    expect(launch).toContain('vp8enc name=venc deadline=1 cpu-used=-6 threads=1 end-usage=cbr lag-in-frames=0');
    expect(launch).toContain('target-bitrate=800000');
    expect(launch).toContain('rtpvp8pay name=vpay');
    expect(launch).toContain('rtpvp8pay name=vpay timestamp-offset=0 ssrc=1234');
    expect(launch).toContain('multiudpsink name=vout clients="127.0.0.1:5004,127.0.0.1:5006" sync=false async=false');
    expect(launch).not.toContain('qos=true');
  });

  it('stamps pictures with the time they were composed: RTP timestamps are running time at 90 kHz', () => {
    expect(launch).toContain('start-time-selection=first');
    expect(launch).toContain('rtpvp8pay name=vpay timestamp-offset=0');
  });

  it('takes the keyframe interval and thread count a recording asks for', () => {
    const rec = compositeLaunch(spec({ gopSeconds: 2, threads: 2 }), presets);
    expect(rec).toContain('threads=2');
    expect(rec).toContain('keyframe-max-dist=60');
    expect(launch).toContain('keyframe-max-dist=300');
  });

  it('gives a recording steady tiles: a queue behind each source, a frame of compositor latency, no early drops', () => {
    const rec = compositeLaunch(spec({ steadyTiles: true }), presets);
    expect(rec).toContain('intervideosrc channel=mcu-v-a timeout=6000000000 ! queue max-size-buffers=1 max-size-bytes=0 max-size-time=0 leaky=downstream ! videoscale');
    expect(rec).toContain('compositor name=comp background=black start-time-selection=first latency=33333333');
    expect(rec).toContain('queue name=venq max-size-buffers=30 max-size-bytes=0 max-size-time=0 leaky=downstream ! vp8enc');
    expect(launch).not.toContain('latency=');
    expect(launch).toContain('queue name=venq max-size-buffers=2 max-size-bytes=0 max-size-time=0 leaky=downstream ! vp8enc');
  });

  it('draws name plates with quoted paths', () => {
    expect(launch).toContain('gdkpixbufoverlay location="/c/plate a.png" offset-x=8 offset-y=240');
  });

  it('shows the waiting card when there is nobody to show', () => {
    const empty = compositeLaunch(spec({ tiles: [] }), presets);
    expect(empty).toContain('filesrc location="/c/wait.png"');
    expect(empty).toContain('width=640,height=360');
  });

  it('encodes constrained-baseline H.264 for H.264 viewers', () => {
    const h = compositeLaunch(spec({ codec: 'h264' }), presets);
    expect(h).toContain('x264enc name=venc speed-preset=ultrafast tune=zerolatency');
    expect(h).toContain('bitrate=800');
    expect(h).toContain('profile=constrained-baseline');
    expect(h).toContain('rtph264pay name=vpay');
  });

  it('sends H.264 one whole NAL unit per packet, for packetization-mode=0 receivers', () => {
    const h = compositeLaunch(spec({ codec: 'h264' }), presets);
    // Slices small enough for one packet, none aggregated: no FU-A, no STAP-A.
    expect(h).toContain('option-string="slice-max-size=1100"');
    // SPS and PPS come from x264 before each IDR; the payloader would add a pair before every slice.
    expect(h).toContain('mtu=1200 config-interval=0 aggregate-mode=none');
    expect(h).not.toContain('zero-latency');
  });
});

describe('recorderLaunch', () => {
  it('muxes the composite’s VP8 RTP and the mix into WebM clusters of 1 s', () => {
    const l = recorderLaunch({ format: 'webm', audioBitrate: 64000, file: '/r/a b.webm' }, presets);
    expect(l).toContain('appsrc name=vrtpin is-live=false format=time');
    expect(l).toContain('encoding-name=VP8,payload=96');
    expect(l).toContain('rtpvp8depay');
    expect(l).toContain('opusenc bitrate=64000');
    expect(l).toContain('webmmux name=mux');
    expect(l).toContain('max-cluster-duration=1000000000');
    expect(l).toContain('filesink name=file location="/r/a b.webm"');
  });

  it('muxes H.264 and AAC into fragmented MP4', () => {
    const l = recorderLaunch({ format: 'mp4', audioBitrate: 128000, file: '/r/x.mp4' }, presets);
    expect(l).toContain('encoding-name=H264,payload=102');
    expect(l).toContain('rtph264depay request-keyframe=false wait-for-keyframe=true ! h264parse');
    expect(l).toContain('voaacenc bitrate=128000');
    expect(l).toContain('mp4mux name=mux fragment-duration=1000');
  });
});

describe('participantLaunch', () => {
  it('decodes video once into the participant channel and audio into PCM for the mixer', () => {
    const l = participantLaunch(
      {
        video: { codec: 'vp8', payloadType: 96, channel: 'mcu-v-x' },
        audio: { codec: 'opus', payloadType: 111, pcmPort: 6000 },
        mix: { codec: 'opus', bitrate: 32000, rtpPort: 6002 },
      },
      presets,
    );
    expect(l).toContain('udpsrc name=vin address=127.0.0.1 port=0');
    expect(l).toContain('encoding-name=VP8,payload=96');
    expect(l).toContain('vp8dec');
    expect(l).toContain('intervideosink name=vsink sync=false channel=mcu-v-x');
    expect(l).toContain('opusdec plc=true');
    expect(l).toContain('audio/x-raw,format=S16LE,rate=48000,channels=1,layout=interleaved ! udpsink host=127.0.0.1 port=6000');
    // The mix comes from the mixer thread as RTP L16.
    expect(l).toContain('udpsrc name=mixin address=127.0.0.1 port=0');
    expect(l).toContain('encoding-name=L16,channels=1,payload=96');
    expect(l).toContain('rtpL16depay ! audioconvert ! opusenc name=aenc bitrate=32000');
    expect(l).toContain('port=6002');
  });

  it('leaves out what the participant does not send or receive', () => {
    const viewer = participantLaunch({ mix: { codec: 'opus', bitrate: 32000, rtpPort: 1 } }, presets);
    expect(viewer).not.toContain('vin');
    expect(viewer).not.toContain('ain');
    const h264 = participantLaunch({ video: { codec: 'h264', payloadType: 102, channel: 'c' } }, presets);
    expect(h264).toContain('rtph264depay');
    expect(h264).toContain('avdec_h264');
  });
});

describe('scalerLaunch', () => {
  it('scales one participant once to one tile size, into a channel of its own', () => {
    expect(scalerLaunch({ source: 'mcu-v-a', channel: 'mcu-v-a-314x176', width: 314, height: 176, fps: 30, inputTimeoutNs: 6_000_000_000n })).toBe(
      'intervideosrc name=scale channel=mcu-v-a timeout=6000000000 ! videoscale ! ' +
        'video/x-raw,format=I420,width=314,height=176,pixel-aspect-ratio=1/1,framerate=30/1 ! intervideosink name=out sync=false channel=mcu-v-a-314x176',
    );
  });
});

describe('threadRules', () => {
  it('puts audio threads first and viewers’ video next, by GStreamer thread name', () => {
    const rules = threadRules(-10);
    const nice = (name: string) => rules.find((r) => r.pattern.test(name))?.nice ?? 0;
    expect(['mixin:src', 'ain:src', 'ajb:src'].map(nice)).toEqual([-10, -10, -10]);
    expect(['vin:src', 'vjb:src', 'comp:src', 'venq:src', 'scale:src'].map(nice)).toEqual([-5, -5, -5, -5, -5]);
    expect(['intervideosrc0:', 'queue3:src', 'file:sink'].map(nice)).toEqual([0, 0, 0]);
  });
});

describe('q', () => {
  it('quotes paths with spaces and quotes', () => {
    expect(q('/a b/"c".png')).toBe('"/a b/\\"c\\".png"');
  });
});

describe('the launch-string renderer', () => {
  it('writes an element as factory, name, then its properties in order, leaving out undefined ones', () => {
    expect(renderElement({ factory: 'queue', name: 'q1', props: { 'max-size-buffers': 2, leaky: 'downstream', latency: undefined, 'is-live': true, timeout: 5n } })).toBe(
      'queue name=q1 max-size-buffers=2 leaky=downstream is-live=true timeout=5',
    );
  });

  it('quotes every string that is not one plain word, paths always, and caps given as a property', () => {
    expect(renderElement({ factory: 'intervideosink', props: { channel: 'a b" ! fakesink name="x' } })).toBe('intervideosink channel="a b\\" ! fakesink name=\\"x"');
    expect(renderElement({ factory: 'filesrc', props: { location: quoted('plain') } })).toBe('filesrc location="plain"');
    expect(renderElement({ factory: 'udpsrc', props: { caps: { type: 'application/x-rtp', fields: { media: 'audio', payload: 0 } } } })).toBe(
      'udpsrc caps="application/x-rtp,media=audio,payload=0"',
    );
  });

  it('links elements, caps and pad references with !', () => {
    expect(chain({ factory: 'videotestsrc' }, [{ type: 'video/x-raw', fields: { width: 2 } }], padRef('comp', 'sink_0'))).toBe('videotestsrc ! video/x-raw,width=2 ! comp.sink_0');
    expect(chain({ factory: 'opusenc' }, padRef('mux'))).toBe('opusenc ! mux.');
  });

  it('refuses what would change the shape of the launch string', () => {
    expect(() => renderElement({ factory: 'queue ! fakesink' })).toThrow(TypeError);
    expect(() => renderElement({ factory: 'queue', props: { 'a b': 1 } })).toThrow(TypeError);
    expect(() => renderElement({ factory: 'queue', props: { n: Number.NaN } })).toThrow(TypeError);
    expect(() => renderCaps({ type: 'video/x-raw', fields: { format: 'I420,width=1' } })).toThrow(TypeError);
  });

  it('reads back the caps it writes', () => {
    const text = 'application/x-rtp,media=audio,clock-rate=48000,encoding-name=L16,channels=1,payload=96';
    expect(renderCaps(parseCaps(text))).toBe(text);
  });
});
