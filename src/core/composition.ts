import type { Layout } from './layouts.js';

/** What the composition needs to know of a participant. Plain data. */
export interface TileSubject {
  id: string;
  name: string;
  /** True when decoded video of this participant is flowing now; otherwise its placeholder is shown. */
  hasVideo: boolean;
}

export interface Tile {
  participantId: string;
  name: string;
  x: number;
  y: number;
  width: number;
  height: number;
  source: 'video' | 'placeholder';
}

export interface Composition {
  width: number;
  height: number;
  fps: number;
  layout: string;
  tiles: Tile[];
  /** Participants the layout had no room for. */
  overflow: number;
}

export interface Canvas {
  width: number;
  height: number;
  fps: number;
}

const even = (v: number) => Math.max(2, Math.floor(v / 2) * 2);

/**
 * Best rows x columns for n tiles of aspect `ar` on the canvas: the one whose tiles are largest.
 * Ties go to fewer rows.
 */
export function gridShape(n: number, canvas: { width: number; height: number }, gap: number, ar = 16 / 9) {
  let best = { cols: 1, rows: 1, w: 0, h: 0 };
  for (let cols = 1; cols <= n; cols++) {
    const rows = Math.ceil(n / cols);
    const cellW = (canvas.width - gap * (cols + 1)) / cols;
    const cellH = (canvas.height - gap * (rows + 1)) / rows;
    if (cellW <= 0 || cellH <= 0) continue;
    const w = Math.min(cellW, cellH * ar);
    const h = w / ar;
    if (w > best.w + 0.5) best = { cols, rows, w, h };
  }
  return best;
}

/** Tiles of a grid: 16:9 boxes (the video is letterboxed inside), a partial last row centred. */
export function gridTiles(subjects: TileSubject[], layout: Layout, canvas: Canvas): Tile[] {
  const n = subjects.length;
  if (n === 0) return [];
  const { cols, rows, w, h } = gridShape(n, canvas, layout.gap);
  const tw = even(w);
  const th = even(h);
  const usedH = rows * th + (rows - 1) * layout.gap;
  const top = (canvas.height - usedH) / 2;
  return subjects.map((s, i) => {
    const row = Math.floor(i / cols);
    const col = i % cols;
    const inRow = row === rows - 1 ? n - row * cols : cols;
    const usedW = inRow * tw + (inRow - 1) * layout.gap;
    const left = (canvas.width - usedW) / 2;
    return {
      participantId: s.id,
      name: s.name,
      x: even(left + col * (tw + layout.gap)),
      y: even(top + row * (th + layout.gap)),
      width: tw,
      height: th,
      source: s.hasVideo ? 'video' : 'placeholder',
    };
  });
}

/**
 * The pure heart of the MCU: (who is shown, layout, canvas) -> the exact picture one viewer gets.
 * `subjects` are already filtered (mix-minus: the viewer itself is left out) and in join order.
 */
export function compose(subjects: TileSubject[], layout: Layout, canvas: Canvas): Composition {
  const shown = subjects.slice(0, layout.maxTiles);
  return {
    width: canvas.width,
    height: canvas.height,
    fps: canvas.fps,
    layout: layout.id,
    tiles: gridTiles(shown, layout, canvas),
    overflow: subjects.length - shown.length,
  };
}

/** Two viewers whose compositions have the same key can share one compositor and encoder. */
export function compositionKey(c: Composition, codec: string, bitrate: number): string {
  const tiles = c.tiles.map((t) => `${t.participantId}:${t.source}:${t.x},${t.y},${t.width}x${t.height}:${t.name}`).join('|');
  return `${c.layout}/${c.width}x${c.height}@${c.fps}/${codec}/${bitrate}/${tiles}`;
}
