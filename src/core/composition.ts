import type { FillRule, Layout } from './layouts.js';

/** What the composition needs to know of a participant. Plain data. */
export interface TileSubject {
  id: string;
  name: string;
  /** True when decoded video of this participant is flowing now; otherwise its placeholder is shown. */
  hasVideo: boolean;
  /** This participant's video is a screen share. */
  screenshare?: boolean;
}

export interface Tile {
  /** null for the "+N" overflow tile. */
  participantId: string | null;
  name: string;
  x: number;
  y: number;
  width: number;
  height: number;
  /** Drawing order: higher is on top. */
  z: number;
  source: 'video' | 'placeholder' | 'overflow';
}

export interface Composition {
  width: number;
  height: number;
  fps: number;
  layout: string;
  tiles: Tile[];
  /** Participants the layout had no room for (counted in the "+N" tile when the layout has one). */
  overflow: number;
}

export interface Canvas {
  width: number;
  height: number;
  fps: number;
}

export interface Roles {
  /** Pinned participant (the viewer's own pin, else the room's). */
  pinned?: string;
  /** Current active speaker. */
  speaker?: string;
}

interface Rect {
  x: number;
  y: number;
  w: number;
  h: number;
}

/** Sizes and positions on even pixels (I420 chroma is 2x2); a size is at least 2. */
const evenSize = (v: number) => Math.max(2, Math.floor(v / 2) * 2);
const evenPos = (v: number) => Math.max(0, Math.floor(v / 2) * 2);
const AR = 16 / 9;

/**
 * Best rows x columns for n tiles of aspect `ar` in a rectangle: the one whose tiles are largest.
 * Ties go to fewer rows.
 */
export function gridShape(n: number, area: { width: number; height: number }, gap: number, ar = AR) {
  let best = { cols: 1, rows: 1, w: 0, h: 0 };
  for (let cols = 1; cols <= n; cols++) {
    const rows = Math.ceil(n / cols);
    const s = boxFor(cols, rows, area.width, area.height, gap, ar);
    if (s.w > best.w + 0.5) best = { cols, rows, ...s };
  }
  return best;
}

function boxFor(cols: number, rows: number, width: number, height: number, gap: number, ar: number) {
  const cellW = (width - gap * (cols + 1)) / cols;
  const cellH = (height - gap * (rows + 1)) / rows;
  if (cellW <= 0 || cellH <= 0) return { w: 0, h: 0 };
  const w = Math.min(cellW, cellH * ar);
  return { w, h: w / ar };
}

/** n 16:9 boxes in `rect`, row by row, each row centred, the block centred vertically. */
function placeBoxes(n: number, rect: Rect, gap: number, arrange: 'grid' | 'row' | 'column'): Rect[] {
  if (n === 0) return [];
  const shape =
    arrange === 'row'
      ? { cols: n, rows: 1, ...boxFor(n, 1, rect.w, rect.h, gap, AR) }
      : arrange === 'column'
        ? { cols: 1, rows: n, ...boxFor(1, n, rect.w, rect.h, gap, AR) }
        : gridShape(n, { width: rect.w, height: rect.h }, gap);
  const tw = evenSize(shape.w);
  const th = evenSize(shape.h);
  const usedH = shape.rows * th + (shape.rows - 1) * gap;
  const top = rect.y + (rect.h - usedH) / 2;
  const out: Rect[] = [];
  for (let i = 0; i < n; i++) {
    const row = Math.floor(i / shape.cols);
    const col = i % shape.cols;
    const inRow = row === shape.rows - 1 ? n - row * shape.cols : shape.cols;
    const usedW = inRow * tw + (inRow - 1) * gap;
    const left = rect.x + (rect.w - usedW) / 2;
    out.push({ x: evenPos(left + col * (tw + gap)), y: evenPos(top + row * (th + gap)), w: tw, h: th });
  }
  return out;
}

/**
 * The pure heart of the MCU: (who is shown, layout, pins and speaker, canvas) -> the exact picture
 * one viewer gets. `subjects` are already filtered (mix-minus leaves the viewer out unless it asked
 * for self-view) and in join order.
 */
export function compose(subjects: TileSubject[], layout: Layout, canvas: Canvas, roles: Roles = {}): Composition {
  const byId = new Map(subjects.map((s) => [s.id, s]));
  const pools: Record<FillRule, TileSubject[]> = {
    pinned: roles.pinned && byId.has(roles.pinned) ? [byId.get(roles.pinned)!] : [],
    speaker: roles.speaker && byId.has(roles.speaker) ? [byId.get(roles.speaker)!] : [],
    screenshare: subjects.filter((s) => s.screenshare),
    rest: subjects,
  };
  const placed = new Set<string>();
  const tiles: Tile[] = [];
  let budget = layout.maxTiles;
  let lastRestRegion = -1;
  const perRegion: Array<{ region: (typeof layout.regions)[number]; members: TileSubject[] }> = [];
  for (const [ri, region] of layout.regions.entries()) {
    const members: TileSubject[] = [];
    for (const rule of region.fill) {
      for (const s of pools[rule]) {
        if (members.length >= Math.min(region.max, budget)) break;
        if (placed.has(s.id)) continue;
        placed.add(s.id);
        members.push(s);
      }
    }
    budget -= members.length;
    if (region.fill.includes('rest') && members.length > 0) lastRestRegion = ri;
    perRegion.push({ region, members });
  }
  let hidden = subjects.length - placed.size;
  let overflowTile = false;
  if (hidden > 0 && layout.overflow === 'count' && lastRestRegion >= 0) {
    // The last slot of the last region that takes "the rest" becomes "+N".
    perRegion[lastRestRegion].members.pop();
    hidden++;
    overflowTile = true;
  }
  for (const [ri, { region, members }] of perRegion.entries()) {
    const count = members.length + (overflowTile && ri === lastRestRegion ? 1 : 0);
    const rect: Rect = {
      x: Math.round(region.x * canvas.width),
      y: Math.round(region.y * canvas.height),
      w: Math.round(region.width * canvas.width),
      h: Math.round(region.height * canvas.height),
    };
    const boxes = placeBoxes(count, rect, layout.gap, region.arrange);
    boxes.forEach((b, i) => {
      const s = members[i];
      tiles.push({
        participantId: s ? s.id : null,
        name: s ? s.name : `+${hidden}`,
        x: b.x,
        y: b.y,
        width: b.w,
        height: b.h,
        z: region.z,
        source: !s ? 'overflow' : s.hasVideo ? 'video' : 'placeholder',
      });
    });
  }
  return { width: canvas.width, height: canvas.height, fps: canvas.fps, layout: layout.id, tiles, overflow: hidden };
}

/** Two viewers whose compositions have the same key can share one compositor and encoder. */
export function compositionKey(c: Composition, codec: string, bitrate: number): string {
  const tiles = c.tiles.map((t) => `${t.participantId}:${t.source}:${t.x},${t.y},${t.width}x${t.height}@${t.z}:${t.name}`).join('|');
  return `${c.layout}/${c.width}x${c.height}@${c.fps}/${codec}/${bitrate}/${tiles}`;
}
