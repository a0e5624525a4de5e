// A publisher's camera and microphone for lip-sync measurements: the picture turns white and a
// 1 kHz tone sounds over exactly the same span of every period, by timestamp. Frames and audio are
// made here with their presentation times and pushed ahead of time; the pipeline's udpsinks send
// each at its time (sync=true), so the source adds no offset of its own. (Setting a videobalance
// and a volume from a timer instead would put up to a frame of video and a buffer of audio
// between the two.) Shared by test/api/recording.test.ts and bench/lipsync.mjs.

const RATE = 48000;
const AUDIO_CHUNK_MS = 10;
const LEAD_MS = 300;

/**
 * Starts sending VP8 to 127.0.0.1:videoPort and Opus to 127.0.0.1:audioPort.
 * GstPipeline is the project's pipeline class (src/gst/native.ts or its build in dist/).
 * Flashes start at 0, periodMs, 2 * periodMs, ... of the source's own timeline and last flashMs.
 * Returns { close() }.
 */
export function startFlasher(GstPipeline, videoPort, audioPort, { width = 320, height = 180, fps = 30, periodMs = 1000, flashMs = 300 } = {}) {
  const launch =
    `appsrc name=fv is-live=true format=time caps="video/x-raw,format=I420,width=${width},height=${height},framerate=${fps}/1,pixel-aspect-ratio=1/1" ` +
    `! vp8enc deadline=1 keyframe-max-dist=${fps} lag-in-frames=0 ! rtpvp8pay pt=96 ! udpsink host=127.0.0.1 port=${videoPort} sync=true async=false  ` +
    `appsrc name=fa is-live=true format=time caps="audio/x-raw,format=S16LE,rate=${RATE},channels=1,layout=interleaved" ` +
    `! opusenc frame-size=10 ! rtpopuspay pt=111 ! udpsink host=127.0.0.1 port=${audioPort} sync=true async=false`;
  const p = new GstPipeline(launch);
  const frame = (luma) => {
    const ySize = width * height;
    const b = Buffer.alloc(ySize + 2 * ((width / 2) * (height / 2)), 128);
    b.fill(luma, 0, ySize);
    return b;
  };
  const white = frame(235);
  const black = frame(16);
  const flashing = (ms) => ms % periodMs < flashMs;
  let frames = 0;
  let samples = 0;
  p.play();
  const started = performance.now();
  const pump = () => {
    const horizon = performance.now() - started + LEAD_MS;
    while ((frames * 1000) / fps < horizon) {
      const ms = (frames * 1000) / fps;
      p.push('fv', flashing(ms) ? white : black, BigInt(Math.round(ms * 1e6)));
      frames++;
    }
    const chunk = (RATE * AUDIO_CHUNK_MS) / 1000;
    while ((samples * 1000) / RATE < horizon) {
      const pcm = Buffer.alloc(chunk * 2);
      for (let i = 0; i < chunk; i++) {
        const n = samples + i;
        if (flashing((n * 1000) / RATE)) pcm.writeInt16LE(Math.round(26000 * Math.sin((2 * Math.PI * 1000 * n) / RATE)), i * 2);
      }
      p.push('fa', pcm, BigInt(Math.round(((samples * 1000) / RATE) * 1e6)));
      samples += chunk;
    }
  };
  pump();
  const timer = setInterval(pump, 20);
  return {
    close() {
      clearInterval(timer);
      return p.close();
    },
  };
}
