// Shared by test/helpers/fileMedia.ts and bench/lipsync.mjs: the analysis pipeline over a recorded
// file and the parser of what `gst-launch-1.0 -m` prints for it.

/** gst-launch arguments that decode `file` and post a luma message per frame (inside `crop`) and a
 * level message per 5 ms of the 1 kHz band. */
export function analysisArgs(file, crop = 'identity') {
  const mp4 = file.endsWith('.mp4');
  const [demux, vdec, adec] = mp4 ? ['qtdemux', 'h264parse ! avdec_h264', 'aacparse ! avdec_aac'] : ['matroskademux', 'vp8dec', 'opusdec'];
  return [
    '-m',
    ...`filesrc location=${file} ! ${demux} name=d d. ! queue ! ${vdec} ! ${crop} ! videoconvert ! videoanalyse ! fakesink d. ! queue ! ${adec} ! audioconvert ! audiochebband mode=band-pass lower-frequency=850 upper-frequency=1150 poles=4 ! level interval=5000000 ! fakesink`.split(' '),
  ];
}

/** Stream times (s) at which the picture turns bright and the 1 kHz click starts. */
export function parseFlashesAndClicks(text) {
  const flashes = [];
  const clicks = [];
  let bright = false;
  let loud = false;
  for (const line of text.split('\n')) {
    const v = /GstVideoAnalyse, timestamp=\(guint64\)(\d+).*luma-average=\(double\)([\d.e-]+)/.exec(line);
    if (v) {
      const now = Number(v[2]) > 0.4;
      if (now && !bright) flashes.push(Number(v[1]) / 1e9);
      bright = now;
    }
    const l = /level, .*timestamp=\(guint64\)(\d+).*rms=\(GValueArray\)< ([-\d.e]+)/.exec(line);
    if (l) {
      const now = Number(l[2]) > -30;
      if (now && !loud) clicks.push(Number(l[1]) / 1e9);
      loud = now;
    }
  }
  return { flashes, clicks };
}

/** For each flash, the nearest click minus the flash, in ms (audio minus video). */
export function offsetsMs(flashes, clicks) {
  return flashes.map((f) => Math.round((clicks.reduce((b, x) => (Math.abs(x - f) < Math.abs(b - f) ? x : b), Infinity) - f) * 1000));
}
