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

  it('counts participants past maxTiles in a last "+N" tile', () => {
    const small = parseLayout({ id: 'g4', name: 'Grid 4', regions: [{ x: 0, y: 0, width: 1, height: 1 }], maxTiles: 4, overflow: 'count' });
    const c = compose(people(7), small, canvas);
    expect(c.tiles).toHaveLength(4);
    expect(c.tiles.slice(0, 3).map((t) => t.participantId)).toEqual(['p0', 'p1', 'p2']);
    expect(c.tiles[3]).toMatchObject({ participantId: null, name: '+4', source: 'overflow' });
    expect(c.overflow).toBe(4);
  });

  it('hides overflow when the layout says so', () => {
    const small = parseLayout({ id: 'g4', name: 'Grid 4', regions: [{ x: 0, y: 0, width: 1, height: 1 }], maxTiles: 4, overflow: 'hide' });
    const c = compose(people(7), small, canvas);
    expect(c.tiles.map((t) => t.participantId)).toEqual(['p0', 'p1', 'p2', 'p3']);
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
  const r = { x: 0, y: 0, width: 1, height: 1 };
  it.each([
    [{ id: 'Bad Id', name: 'x', regions: [r] }, 'id'],
    [{ id: 'ok', name: '', regions: [r] }, 'name'],
    [{ id: 'ok', name: 'x', regions: [] }, 'regions'],
    [{ id: 'ok', name: 'x' }, 'regions'],
    [{ id: 'ok', name: 'x', regions: [r], kind: 'grid' }, 'kind'],
    [{ id: 'ok', name: 'x', regions: [r], gap: -1 }, 'gap'],
    [{ id: 'ok', name: 'x', regions: [r], maxTiles: 0 }, 'maxTiles'],
    [{ id: 'ok', name: 'x', regions: [{ ...r, x: 1.5 }] }, 'regions\\[0\\]\\.x'],
    [{ id: 'ok', name: 'x', regions: [r, { ...r, x: 0.5 }] }, 'regions\\[1\\]\\.width'],
    [{ id: 'ok', name: 'x', regions: [{ ...r, fill: ['loudest'] }] }, 'regions\\[0\\]\\.fill'],
    [{ id: 'ok', name: 'x', regions: [{ ...r, arrange: 'spiral' }] }, 'regions\\[0\\]\\.arrange'],
  ])('refuses %j naming the field "%s"', (raw, field) => {
    expect(() => parseLayout(raw)).toThrow(new RegExp(`"${field}"`));
  });
});

describe('every shipped layout, 1 to 16 participants', () => {
  const registry = LayoutRegistry.fromDirectory(path.resolve('layouts'));
  const ids = registry.list().map((l) => l.id);

  it('ships grid, speaker, pip, side-by-side and presentation', () => {
    expect(ids).toEqual(expect.arrayContaining(['grid', 'speaker', 'pip', 'side-by-side', 'presentation']));
  });

  for (const id of ['grid', 'speaker', 'pip', 'side-by-side', 'presentation']) {
    for (let n = 1; n <= 16; n++) {
      it(`${id} with ${n}: inside the canvas, no overlap within a z-order, everyone placed or counted`, () => {
        const subjects = people(n).map((p, i) => ({ ...p, screenshare: i === n - 1 && n > 2 }));
        const c = compose(subjects, registry.get(id), canvas, { pinned: n > 3 ? 'p3' : undefined, speaker: 'p1' });
        for (const t of c.tiles) {
          expect(t.x).toBeGreaterThanOrEqual(0);
          expect(t.y).toBeGreaterThanOrEqual(0);
          expect(t.x + t.width).toBeLessThanOrEqual(canvas.width);
          expect(t.y + t.height).toBeLessThanOrEqual(canvas.height);
          expect(t.width).toBeGreaterThan(0);
        }
        for (const a of c.tiles)
          for (const b of c.tiles) {
            if (a === b || a.z !== b.z) continue;
            const overlap = a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;
            expect(overlap, `${a.name} overlaps ${b.name}`).toBe(false);
          }
        const shown = c.tiles.filter((t) => t.participantId !== null).map((t) => t.participantId);
        expect(new Set(shown).size).toBe(shown.length);
        expect(shown.length + c.overflow).toBe(n);
        const plus = c.tiles.filter((t) => t.source === 'overflow');
        expect(plus.length).toBeLessThanOrEqual(1);
        if (plus.length) expect(plus[0].name).toBe(`+${c.overflow}`);
      });
    }
  }

  it('speaker: the active speaker is large, the rest in a strip below, and a pin wins over the speaker', () => {
    const speaker = registry.get('speaker');
    const c = compose(people(4), speaker, canvas, { speaker: 'p2' });
    const main = c.tiles.find((t) => t.participantId === 'p2')!;
    expect(main.height).toBeGreaterThan(200);
    expect(c.tiles.filter((t) => t.participantId !== 'p2').every((t) => t.y >= 280 && t.height < 80)).toBe(true);
    const pinned = compose(people(4), speaker, canvas, { speaker: 'p2', pinned: 'p0' });
    expect(pinned.tiles.find((t) => t.height > 200)!.participantId).toBe('p0');
  });

  it('pip: one full-canvas tile and a small one drawn over it', () => {
    const c = compose(people(2), registry.get('pip'), canvas, { speaker: 'p1' });
    expect(c.tiles.map((t) => [t.participantId, t.z])).toEqual([
      ['p1', 0],
      ['p0', 1],
    ]);
    expect(c.tiles[0].width).toBeGreaterThan(600);
    expect(c.tiles[1].width).toBeLessThan(200);
  });

  it('presentation: the screen share large, the cameras in a column', () => {
    const subjects = people(4).map((p) => ({ ...p, screenshare: p.id === 'p2' }));
    const c = compose(subjects, registry.get('presentation'), canvas);
    expect(c.tiles[0]).toMatchObject({ participantId: 'p2' });
    expect(c.tiles[0].width).toBeGreaterThan(450);
    expect(c.tiles.slice(1).every((t) => t.x >= 490)).toBe(true);
  });

  it('side-by-side: two halves', () => {
    const c = compose(people(2), registry.get('side-by-side'), canvas);
    expect(c.tiles[0].x + c.tiles[0].width).toBeLessThanOrEqual(320);
    expect(c.tiles[1].x).toBeGreaterThanOrEqual(320);
  });
});
