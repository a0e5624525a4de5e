import { describe, expect, it } from 'vitest';
import { compose, compositionKey, gridShape, type TileSubject } from '../../src/core/composition.js';
import { parseLayout, LayoutRegistry } from '../../src/core/layouts.js';
import path from 'node:path';

const grid = LayoutRegistry.fromDirectory(path.resolve('layouts')).get('grid');
const canvas = { width: 640, height: 360, fps: 30 };
const people = (n: number): TileSubject[] =>
  Array.from({ length: n }, (_, i) => ({ id: `p${i}`, name: `Person ${i}`, hasVideo: i % 3 !== 2 }));

describe('grid composition', () => {
  for (let n = 1; n <= 16; n++) {
    it(`places ${n} participant(s) inside the canvas, without overlap, on even pixels`, () => {
      const c = compose(people(n), grid, canvas);
      expect(c.tiles).toHaveLength(n);
      expect(c.overflow).toBe(0);
      expect(new Set(c.tiles.map((t) => t.participantId)).size).toBe(n);
      for (const t of c.tiles) {
        expect(t.x).toBeGreaterThanOrEqual(0);
        expect(t.y).toBeGreaterThanOrEqual(0);
        expect(t.x + t.width).toBeLessThanOrEqual(canvas.width);
        expect(t.y + t.height).toBeLessThanOrEqual(canvas.height);
        for (const v of [t.x, t.y, t.width, t.height]) expect(v % 2).toBe(0);
        // 16:9 boxes: the picture is letterboxed inside, never stretched.
        expect(Math.abs(t.width / t.height - 16 / 9)).toBeLessThan(0.05);
      }
      for (const a of c.tiles)
        for (const b of c.tiles) {
          if (a === b) continue;
          const overlap = a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;
          expect(overlap, `${a.participantId} overlaps ${b.participantId}`).toBe(false);
        }
    });
  }

  it('keeps join order: row by row, left to right', () => {
    const c = compose(people(5), grid, canvas);
    const order = [...c.tiles].sort((a, b) => a.y - b.y || a.x - b.x).map((t) => t.participantId);
    expect(order).toEqual(['p0', 'p1', 'p2', 'p3', 'p4']);
  });

  it('centres a partial last row', () => {
    const c = compose(people(3), grid, canvas);
    const last = c.tiles[2];
    expect(Math.abs(last.x + last.width / 2 - canvas.width / 2)).toBeLessThanOrEqual(2);
  });

  it('gives one person the largest 16:9 box the canvas allows', () => {
    const [t] = compose(people(1), grid, canvas).tiles;
    // The height is the limit: 360 less two 4 px gaps, kept 16:9 and even, centred.
    expect([t.x, t.y, t.width, t.height]).toEqual([8, 4, 624, 352]);
  });

  it('counts participants past maxTiles as overflow', () => {
    const small = parseLayout({ id: 'g4', name: 'Grid 4', kind: 'grid', maxTiles: 4 });
    const c = compose(people(7), small, canvas);
    expect(c.tiles).toHaveLength(4);
    expect(c.overflow).toBe(3);
  });

  it('shows a placeholder for participants without live video', () => {
    const c = compose(people(3), grid, canvas);
    expect(c.tiles.map((t) => t.source)).toEqual(['video', 'video', 'placeholder']);
  });

  it('returns no tiles for an empty room', () => {
    expect(compose([], grid, canvas).tiles).toEqual([]);
  });

  it('chooses the shape with the largest tiles', () => {
    expect(gridShape(2, canvas, 4)).toMatchObject({ cols: 2, rows: 1 });
    expect(gridShape(4, canvas, 4)).toMatchObject({ cols: 2, rows: 2 });
    expect(gridShape(9, canvas, 4)).toMatchObject({ cols: 3, rows: 3 });
  });
});

describe('compositionKey', () => {
  it('is equal for equal compositions and differs when anything shown differs', () => {
    const a = compose(people(3), grid, canvas);
    const b = compose(people(3), grid, canvas);
    expect(compositionKey(a, 'vp8', 800_000)).toBe(compositionKey(b, 'vp8', 800_000));
    expect(compositionKey(a, 'vp8', 800_000)).not.toBe(compositionKey(a, 'h264', 800_000));
    const c = compose(people(3).map((p) => ({ ...p, hasVideo: true })), grid, canvas);
    expect(compositionKey(a, 'vp8', 800_000)).not.toBe(compositionKey(c, 'vp8', 800_000));
  });
});

describe('layout validation', () => {
  it.each([
    [{ id: 'Bad Id', name: 'x', kind: 'grid' }, 'id'],
    [{ id: 'ok', name: '', kind: 'grid' }, 'name'],
    [{ id: 'ok', name: 'x', kind: 'mosaic' }, 'kind'],
    [{ id: 'ok', name: 'x', kind: 'grid', gap: -1 }, 'gap'],
    [{ id: 'ok', name: 'x', kind: 'grid', maxTiles: 0 }, 'maxTiles'],
  ])('refuses %j naming the field "%s"', (raw, field) => {
    expect(() => parseLayout(raw)).toThrow(new RegExp(`"${field}"`));
  });
});
