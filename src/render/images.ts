/**
 * The one module that imports sharp: placeholder tiles (initials on a colour), name plates and the
 * empty-room card, rendered once per (text, size) and cached on disk as PNG for pngdec/gdkpixbufoverlay.
 */
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';

const PALETTE = ['#5b6abf', '#3a7d6b', '#a05a2c', '#7a4f9a', '#2f6f9f', '#8a3b52', '#5f7f2f', '#6b5b45'];
const FONT = 'DejaVu Sans, Liberation Sans, Arial, sans-serif';

/**
 * Text for an SVG: markup characters escaped, and the characters XML 1.0 does not allow (C0
 * controls, U+FFFE, U+FFFF, lone surrogates) dropped. librsvg refuses a whole image with one of
 * them in it, and a name plate that cannot be drawn takes the composite of everyone who sees it.
 */
export function svgText(s: string): string {
  return s
    .replace(/[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu, '')
    .replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
const esc = svgText;

/**
 * Where a rendered image is cached: its kind and a hash of what it shows. The text on it (a
 * participant's name) never reaches the path, so never a launch string either.
 */
export function cacheFile(dir: string, kind: string, parts: unknown[]): string {
  const hash = crypto.createHash('sha1').update(JSON.stringify([kind, ...parts])).digest('hex').slice(0, 16);
  return path.join(dir, `${kind}-${hash}.png`);
}

/** A name plate's text and size: at most 40 characters, at most maxWidth wide. */
export function plateGeometry(name: string, maxWidth: number, tileHeight: number) {
  const fontSize = Math.max(10, Math.min(18, Math.round(tileHeight / 10)));
  const height = Math.round(fontSize * 1.6);
  const text = name.length > 40 ? name.slice(0, 39) + '…' : name;
  const width = Math.min(maxWidth, Math.round(fontSize * 0.62 * [...text].length + fontSize));
  return { text, width, height, fontSize };
}

/** The SVG of a name plate. */
export function plateSvg({ text, width, height, fontSize }: ReturnType<typeof plateGeometry>): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">
<rect width="100%" height="100%" rx="${Math.round(height / 4)}" fill="#000000" fill-opacity="0.55"/>
<text x="${fontSize / 2}" y="${height / 2 + fontSize * 0.35}" font-family="${FONT}" font-size="${fontSize}" fill="#ffffff">${esc(text)}</text>
</svg>`;
}

export function initials(name: string): string {
  const words = name.trim().split(/\s+/).filter(Boolean);
  if (words.length === 0) return '?';
  const letters = words.length === 1 ? [...words[0]].slice(0, 2) : [[...words[0]][0], [...words[words.length - 1]][0]];
  return letters.join('').toUpperCase();
}

export function colourFor(key: string): string {
  const h = crypto.createHash('sha1').update(key).digest();
  return PALETTE[h[0] % PALETTE.length];
}

export class ImageRenderer {
  readonly #pending = new Map<string, Promise<string>>();

  constructor(readonly dir: string) {}

  async #cached(kind: string, parts: unknown[], render: () => Promise<Buffer>): Promise<string> {
    const file = cacheFile(this.dir, kind, parts);
    let p = this.#pending.get(file);
    if (!p) {
      p = (async () => {
        try {
          await fs.access(file);
        } catch {
          await fs.mkdir(this.dir, { recursive: true });
          const tmp = `${file}.${process.pid}.tmp`;
          await fs.writeFile(tmp, await render());
          await fs.rename(tmp, file);
        }
        return file;
      })();
      this.#pending.set(file, p);
      p.catch(() => this.#pending.delete(file));
    }
    return p;
  }

  /** Initials on a colour, the size of the tile. */
  placeholder(key: string, name: string, width: number, height: number): Promise<string> {
    return this.#cached('ph', [key, name, width, height], () => {
      const size = Math.round(Math.min(width, height) * 0.38);
      const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">
<rect width="100%" height="100%" fill="#1e1f24"/>
<circle cx="${width / 2}" cy="${height / 2}" r="${size * 0.95}" fill="${colourFor(key)}"/>
<text x="${width / 2}" y="${height / 2 + size * 0.36}" font-family="${FONT}" font-size="${size}" font-weight="bold" fill="#ffffff" text-anchor="middle">${esc(initials(name))}</text>
</svg>`;
      return sharp(Buffer.from(svg)).png().toBuffer();
    });
  }

  /** A name on a translucent dark plate, at most maxWidth wide. Returns the file and its size. */
  async namePlate(name: string, maxWidth: number, tileHeight: number): Promise<{ path: string; width: number; height: number }> {
    const g = plateGeometry(name, maxWidth, tileHeight);
    const file = await this.#cached('plate', [g.text, g.width, g.height, g.fontSize], () => sharp(Buffer.from(plateSvg(g))).png().toBuffer());
    return { path: file, width: g.width, height: g.height };
  }

  /** The "+N" tile for participants a layout has no room for. */
  overflowCard(text: string, width: number, height: number): Promise<string> {
    return this.#cached('more', [text, width, height], () => {
      const size = Math.round(Math.min(width, height) * 0.4);
      const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">
<rect width="100%" height="100%" fill="#2a2c34"/>
<text x="${width / 2}" y="${height / 2 + size * 0.35}" font-family="${FONT}" font-size="${size}" fill="#e8e9ee" text-anchor="middle">${esc(text)}</text>
</svg>`;
      return sharp(Buffer.from(svg)).png().toBuffer();
    });
  }

  /** Full-canvas card shown while nobody else is in the room. */
  waitingCard(width: number, height: number, text = 'Waiting for others to join…'): Promise<string> {
    return this.#cached('wait', [width, height, text], () => {
      const fs2 = Math.round(height / 16);
      const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">
<rect width="100%" height="100%" fill="#1f2a44"/>
<text x="${width / 2}" y="${height / 2}" font-family="${FONT}" font-size="${fs2}" fill="#c8cbd4" text-anchor="middle">${esc(text)}</text>
</svg>`;
      return sharp(Buffer.from(svg)).png().toBuffer();
    });
  }
}
