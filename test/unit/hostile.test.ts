import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compose, type TileSubject } from '../../src/core/composition.js';
import { McuError } from '../../src/core/errors.js';
import { LayoutRegistry, parseLayout } from '../../src/core/layouts.js';
import {
  compositeLaunch,
  loadPresets,
  participantLaunch,
  PROJECT_ROOT,
  q,
  recorderLaunch,
  scalerLaunch,
  type CompositeSpec,
} from '../../src/core/pipelines.js';
import { cacheFile, plateGeometry, plateSvg, svgText } from '../../src/render/images.js';
import { inspectOffer } from '../../src/rtc/sdp.js';
import path from 'node:path';

/**
 * Hostile names and ids against the pure core: whatever a participant calls itself, and whatever
 * an id or a configured directory holds, the launch string parses as the same elements, links and
 * properties as with a plain value, each value reads back exactly as given, and a name never
 * reaches a launch string at all (name plates are files named by a hash).
 */

const presets = loadPresets();

/** Characters that mean something to gst_parse_launch, XML, shells or terminals. */
const NASTY = [
  '!', '"', "'", '\\', ' ', '\t', '\n', '\r', '=', ',', ';', '(', ')', '{', '}', '[', ']', '.', ':', '/', '&', '%', '#', '<', '>', '$', '`',
  '\u0000', '\u0001', '\u001b', '\u007f', '\u0085', '\u00a0', '\u200b', '\u200d', '\u2028', '\u202e', '\ufeff', '\ufffe', '\uffff',
  '\ud800', '\udfff', '😀', '👩‍👩‍👧', 'é', 'ß',
];
const GST_SNIPPETS = ['! fakesink', 'name=x', ' name=x ', '" ! fakesink name="', '\\" ! filesink location=/tmp/x', 'a. ! b.', '( fakesrc )', 'sink_0::xpos=1', 'mux.', 'comp.sink_0', '..', '%2F', '%00', '../../etc/passwd'];

/** A hostile string: random text of every kind, the characters above, and launch syntax. */
export const hostile = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: fc.constantFrom(...NASTY), maxLength: 20 }),
  fc.array(fc.oneof(fc.constantFrom(...GST_SNIPPETS, ...NASTY), fc.string({ maxLength: 4 })), { maxLength: 8 }).map((a) => a.join('')),
  fc.string({ unit: 'grapheme', maxLength: 30 }),
  fc.constantFrom('', ' ', '"', '\\', '\\"', '!', '=', 'a b', 'x'.repeat(2000)),
);

type Tok = { kind: 'link' } | { kind: 'bin'; c: string } | { kind: 'word'; key?: string; value: string };

/**
 * Splits a launch string as gst_parse_launch does (parse.l): whitespace separates, `!` links,
 * parentheses and braces open and close bins, `key=value` sets a property, and a quoted part runs
 * to the next unescaped quote with `\x` standing for `x`. Throws on an unclosed quote.
 */
function lex(launch: string): Tok[] {
  const out: Tok[] = [];
  const stop = (c: string) => /\s/.test(c) || c === '!' || '(){}'.includes(c);
  let i = 0;
  while (i < launch.length) {
    const c = launch[i];
    if (/\s/.test(c)) i++;
    else if (c === '!') out.push({ kind: 'link' }), i++;
    else if ('(){}'.includes(c)) out.push({ kind: 'bin', c }), i++;
    else {
      let text = '';
      let key: string | undefined;
      while (i < launch.length && !stop(launch[i])) {
        if (launch[i] === '"') {
          i++;
          for (;;) {
            if (i >= launch.length) throw new Error(`unclosed quote in ${JSON.stringify(launch.slice(0, 200))}`);
            if (launch[i] === '\\') {
              if (i + 1 >= launch.length) throw new Error('a backslash ends the launch string');
              text += launch[i + 1];
              i += 2;
            } else if (launch[i] === '"') {
              i++;
              break;
            } else text += launch[i++];
          }
        } else if (launch[i] === '=' && key === undefined) {
          key = text;
          text = '';
          i++;
        } else text += launch[i++];
      }
      out.push(key === undefined ? { kind: 'word', value: text } : { kind: 'word', key, value: text });
    }
  }
  return out;
}

/** Marks where a hostile value goes in the plain launch string. */
const slot = (i: number) => `zqslot${i}zq`;

/**
 * `build(values)` with hostile values lexes to the same tokens as with plain placeholders, and each
 * token that held a placeholder holds exactly the hostile value in its place.
 */
function assertSameShape(build: (v: string[]) => string, values: string[]) {
  if (values.some((v) => v.includes('\0'))) {
    // Refused where it would be used (a C string ends at a NUL); unused values do not matter.
    let launch = '';
    try {
      launch = build(values);
    } catch (err) {
      expect(String(err)).toMatch(/NUL/);
    }
    expect(launch).not.toContain('\0');
    return;
  }
  const plain = lex(build(values.map((_, i) => slot(i))));
  const got = lex(build(values));
  expect(got.map((t) => t.kind)).toEqual(plain.map((t) => t.kind));
  plain.forEach((p, k) => {
    const g = got[k];
    if (p.kind !== 'word' || g.kind !== 'word') {
      expect(g).toEqual(p);
      return;
    }
    expect(g.key).toBe(p.key);
    expect(g.value).toBe(p.value.replace(/zqslot(\d+)zq/g, (_, n: string) => values[Number(n)]));
  });
}

const spec = (v: string[]): CompositeSpec => ({
  width: 640,
  height: 360,
  fps: 30,
  codec: 'vp8',
  bitrate: 800_000,
  tiles: [
    { x: 4, y: 92, width: 314, height: 176, source: { kind: 'video', channel: `mcu-v-${v[0]}` }, plate: { path: v[1], x: 8, y: 240 } },
    { x: 322, y: 92, width: 314, height: 176, source: { kind: 'image', path: v[2] }, plate: { path: v[3], x: 326, y: 240 } },
    { x: 0, y: 0, width: 160, height: 90, source: { kind: 'video', channel: `mcu-v-${v[4]}-160x90` } },
  ],
  background: v[5],
  inputTimeoutNs: 6_000_000_000n,
  rtpPorts: [5004],
  ssrc: 1234,
});

describe('hostile ids and paths in launch strings', () => {
  it('a participant pipeline: any id in its channel parses as the same elements, and reads back as given', () => {
    fc.assert(
      fc.property(hostile, fc.constantFrom('vp8', 'h264') as fc.Arbitrary<'vp8' | 'h264'>, (id, codec) =>
        assertSameShape(
          (v) =>
            participantLaunch(
              {
                video: { codec, payloadType: 96, channel: `mcu-v-${v[0]}` },
                audio: { codec: 'opus', payloadType: 111, pcmPort: 5000 },
                mix: { codec: 'opus', bitrate: 32000, rtpPort: 5002 },
              },
              presets,
            ),
          [id],
        ),
      ),
      { numRuns: 2000 },
    );
  });

  it('a composite: any channel, plate, placeholder or background path, VP8 or H.264, steady or not', () => {
    fc.assert(
      fc.property(fc.array(hostile, { minLength: 6, maxLength: 6 }), fc.boolean(), fc.boolean(), (values, h264, steady) =>
        assertSameShape((v) => compositeLaunch({ ...spec(v), codec: h264 ? 'h264' : 'vp8', steadyTiles: steady }, presets), values),
      ),
      { numRuns: 2000 },
    );
  });

  it('an empty composite: the background path alone', () => {
    fc.assert(
      fc.property(hostile, (bg) => assertSameShape((v) => compositeLaunch({ ...spec(['a', 'b', 'c', 'd', 'e', v[0]]), tiles: [] }, presets), [bg])),
      { numRuns: 500 },
    );
  });

  it('a tile scaler: any source and scaled channel', () => {
    fc.assert(
      fc.property(hostile, hostile, (a, b) =>
        assertSameShape((v) => scalerLaunch({ source: `mcu-v-${v[0]}`, channel: `mcu-v-${v[1]}-314x176`, width: 314, height: 176, fps: 30, inputTimeoutNs: 1n }), [a, b]),
      ),
      { numRuns: 1000 },
    );
  });

  it('a recorder: any recordings directory, room and recording id in its file, WebM or MP4', () => {
    fc.assert(
      fc.property(hostile, hostile, hostile, fc.constantFrom('webm', 'mp4') as fc.Arbitrary<'webm' | 'mp4'>, (dir, room, id, format) =>
        assertSameShape((v) => recorderLaunch({ format, audioBitrate: 64000, file: `/rec/${v[0]}/${v[1]}-${v[2]}.${format}` }, presets), [dir, room, id]),
      ),
      { numRuns: 1000 },
    );
  });

  it('q() quotes so that the value reads back exactly, whatever it holds (NUL is refused)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (s) => {
        if (s.includes('\0')) {
          expect(() => q(s)).toThrow(/NUL/);
          return;
        }
        const toks = lex(`filesrc location=${q(s)} ! fakesink`);
        expect(toks).toEqual([{ kind: 'word', value: 'filesrc' }, { kind: 'word', key: 'location', value: s }, { kind: 'link' }, { kind: 'word', value: 'fakesink' }]);
      }),
      { numRuns: 1000 },
    );
  });
});

describe('hostile names: name plates and placeholders', () => {
  const layouts = LayoutRegistry.fromDirectory(path.join(PROJECT_ROOT, 'layouts'));

  it('a name reaches the pipeline only as a hash in a file name; its SVG has no markup of its own and only characters XML allows', () => {
    const plainSvg = plateSvg(plateGeometry('plain', 300, 176));
    const tags = (svg: string) => svg.match(/<[^>]*>/g)!.map((t) => t.replace(/\s.*$/s, ''));
    fc.assert(
      fc.property(hostile, fc.integer({ min: 2, max: 1920 }), fc.integer({ min: 2, max: 1080 }), (name, maxWidth, tileHeight) => {
        const g = plateGeometry(name, maxWidth, tileHeight);
        const file = cacheFile('/cache', 'plate', [g.text, g.width, g.height, g.fontSize]);
        expect(file).toMatch(/^\/cache\/plate-[0-9a-f]{16}\.png$/);
        const svg = plateSvg(g);
        expect(tags(svg)).toEqual(tags(plainSvg));
        // XML 1.0 characters only, or librsvg refuses the image (and the composite fails).
        expect(svg).not.toMatch(/[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/u);
      }),
      { numRuns: 2000 },
    );
  });

  it('svgText() keeps every allowed character and escapes markup', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 50 }), (s) => {
        const clean = s.replace(/[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu, '');
        const back = svgText(s).replace(/&#(\d+);/g, (_, n: string) => String.fromCharCode(Number(n)));
        expect(back).toBe(clean);
        expect(svgText(s)).not.toMatch(/[<>"']|&(?!#\d+;)/);
      }),
      { numRuns: 1000 },
    );
  });

  it('compose() takes any names and ids in every shipped layout, and keeps each name as it was given', () => {
    const subject = fc.record({ id: hostile, name: hostile, hasVideo: fc.boolean(), screenshare: fc.boolean() });
    fc.assert(
      fc.property(fc.uniqueArray(subject, { selector: (s) => s.id, maxLength: 10 }), fc.constantFrom(...layouts.list()), (subjects: TileSubject[], layout) => {
        const c = compose(subjects, layout, { width: 640, height: 360, fps: 30 }, { pinned: subjects[0]?.id, speaker: subjects[1]?.id });
        const byId = new Map(subjects.map((s) => [s.id, s.name]));
        for (const t of c.tiles) if (t.participantId !== null) expect(t.name).toBe(byId.get(t.participantId));
      }),
      { numRuns: 500 },
    );
  });
});

describe('hostile data to the pure parsers', () => {
  it('parseLayout() takes any JSON value and returns a layout or throws a 400, nothing else', () => {
    fc.assert(
      fc.property(fc.oneof(fc.anything(), fc.jsonValue(), fc.record({ id: hostile, name: hostile, regions: fc.anything() })), (raw) => {
        try {
          parseLayout(raw);
        } catch (err) {
          expect(err).toBeInstanceOf(McuError);
          expect((err as McuError).status).toBe(400);
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('inspectOffer() takes any text and returns a summary or throws a 4xx, nothing else', () => {
    const sdpish = fc
      .tuple(
        fc.array(fc.oneof(fc.constantFrom('v=0', 'o=- 1 1 IN IP4 0.0.0.0', 'm=audio 9 UDP/TLS/RTP/SAVPF 111', 'm=video 0 x', 'm=', 'a=ice-ufrag:x', 'a=ice-pwd:y', 'a=fingerprint:sha-256 00', 'a=rtpmap:111 opus/48000/2', 'a=rtpmap:96 VP8/90000', 'a=fmtp:', 'a=sendonly'), hostile), { maxLength: 20 }),
        fc.constantFrom('\r\n', '\n', '\r'),
      )
      .map(([ls, eol]) => ls.join(eol));
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 300 }), sdpish), (sdp) => {
        try {
          inspectOffer(sdp);
        } catch (err) {
          expect(err).toBeInstanceOf(McuError);
          expect((err as McuError).status).toBeGreaterThanOrEqual(400);
          expect((err as McuError).status).toBeLessThan(500);
        }
      }),
      { numRuns: 1000 },
    );
  });
});
