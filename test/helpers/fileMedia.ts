import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { pcmFrom } from './media.js';
// @ts-expect-error plain JS shared with bench/lipsync.mjs
import { analysisArgs, parseFlashesAndClicks } from './flashes.mjs';

/** What gst-discoverer-1.0 says about a file: duration in seconds and the stream kinds it found. */
export function discover(file: string): { durationS: number; text: string } {
  const text = execFileSync('gst-discoverer-1.0', ['-v', file], { timeout: 60_000 }).toString();
  const m = /Duration: (\d+):(\d+):([\d.]+)/.exec(text);
  return { durationS: m ? Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3]) : NaN, text };
}

const demux = (file: string) => (file.endsWith('.mp4') ? 'qtdemux' : 'matroskademux');
const vdec = (file: string) => (file.endsWith('.mp4') ? 'h264parse ! avdec_h264' : 'vp8dec');
const adec = (file: string) => (file.endsWith('.mp4') ? 'aacparse ! avdec_aac' : 'opusdec');

/** One decoded frame a second, as PNG files; returns their paths in order. */
export function framesEverySecond(file: string, dir: string): string[] {
  fs.mkdirSync(dir, { recursive: true });
  execFileSync(
    'gst-launch-1.0',
    ['-q', ...`filesrc location=${file} ! ${demux(file)} ! ${vdec(file)} ! videorate ! video/x-raw,framerate=1/1 ! videoconvert ! video/x-raw,format=RGB ! pngenc compression-level=1 ! multifilesink location=${path.join(dir, 'f%03d.png')}`.split(' ')],
    { timeout: 120_000 },
  );
  return fs.readdirSync(dir).filter((f) => f.endsWith('.png')).sort().map((f) => path.join(dir, f));
}

export async function pixel(png: string, x: number, y: number): Promise<number[]> {
  const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const i = (Math.round(y) * info.width + Math.round(x)) * 3;
  return [data[i], data[i + 1], data[i + 2]];
}

/** The whole audio track as 48 kHz mono samples. */
export function decodeAudio(file: string, out: string): Int16Array {
  execFileSync(
    'gst-launch-1.0',
    ['-q', ...`filesrc location=${file} ! ${demux(file)} ! ${adec(file)} ! audioconvert ! audioresample ! audio/x-raw,format=S16LE,rate=48000,channels=1 ! filesink location=${out}`.split(' ')],
    { timeout: 120_000 },
  );
  return pcmFrom([fs.readFileSync(out)]);
}

/**
 * Times (s, stream time) at which the picture turns bright and at which a 1 kHz click starts
 * (other tones in the mix are filtered out), from GStreamer's own analysers run over the file.
 */
export function flashesAndClicks(file: string, crop = 'identity'): { flashes: number[]; clicks: number[] } {
  const text = execFileSync('gst-launch-1.0', analysisArgs(file, crop), { timeout: 300_000, maxBuffer: 512 * 1024 * 1024 }).toString();
  return parseFlashesAndClicks(text);
}
