import fs from 'node:fs';
import path from 'node:path';
import { BadRequestError, InvalidStateError, NotFoundError } from './errors.js';

/**
 * A layout is data: JSON in layouts/ (or PUT over REST), validated when loaded and addressed by id.
 * Regions are fractions of the canvas with a z-order; each region is filled from pools of
 * participants (pinned, active speaker, screen shares, the rest in join order), up to its `max`.
 */
export const FILL_RULES = ['pinned', 'speaker', 'screenshare', 'rest'] as const;
export type FillRule = (typeof FILL_RULES)[number];
export const ARRANGEMENTS = ['grid', 'row', 'column'] as const;
export type Arrangement = (typeof ARRANGEMENTS)[number];

export interface Region {
  id: string;
  /** Left, top, width and height as fractions of the canvas (0..1). */
  x: number;
  y: number;
  width: number;
  height: number;
  /** Higher z is drawn over lower z. */
  z: number;
  /** Pools this region takes participants from, in order. */
  fill: FillRule[];
  /** Most tiles in this region. */
  max: number;
  /** How several tiles share the region. */
  arrange: Arrangement;
}

export interface Layout {
  id: string;
  name: string;
  description: string;
  regions: Region[];
  /** Most tiles in all; participants past it are overflow. */
  maxTiles: number;
  /** Overflow is hidden, or counted in a last "+N" tile. */
  overflow: 'hide' | 'count';
  /** Pixels between tiles and around each region. */
  gap: number;
  /** Shipped in layouts/ (read-only over REST). */
  builtin: boolean;
}

const ID_RE = /^[a-z0-9][a-z0-9-]{0,63}$/;
const LAYOUT_KEYS = new Set(['id', 'name', 'description', 'regions', 'maxTiles', 'overflow', 'gap']);
const REGION_KEYS = new Set(['id', 'x', 'y', 'width', 'height', 'z', 'fill', 'max', 'arrange']);

/** Validates untrusted layout JSON. Every error names the offending field, e.g. `regions[1].x`. */
export function parseLayout(raw: unknown, source = 'layout', builtin = false): Layout {
  const fail = (field: string, msg: string): never => {
    throw new BadRequestError(`${source}: field "${field}" ${msg}`, 'invalid_layout');
  };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail('(body)', 'must be a JSON object');
  const o = raw as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!LAYOUT_KEYS.has(k)) fail(k, 'is not a layout field');
  if (typeof o.id !== 'string' || !ID_RE.test(o.id)) fail('id', 'must be 1-64 lower-case letters, digits and dashes');
  if (typeof o.name !== 'string' || o.name.length === 0 || o.name.length > 100) fail('name', 'must be a string of 1-100 characters');
  if (o.description !== undefined && (typeof o.description !== 'string' || o.description.length > 1000)) {
    fail('description', 'must be a string of at most 1000 characters');
  }
  const int = (v: unknown, field: string, min: number, max: number, dflt: number): number => {
    if (v === undefined) return dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) fail(field, `must be an integer from ${min} to ${max}`);
    return v as number;
  };
  const gap = int(o.gap, 'gap', 0, 64, 4);
  const maxTiles = int(o.maxTiles, 'maxTiles', 1, 64, 16);
  if (o.overflow !== undefined && o.overflow !== 'hide' && o.overflow !== 'count') fail('overflow', 'must be "hide" or "count"');
  if (!Array.isArray(o.regions) || o.regions.length === 0) fail('regions', 'must be a non-empty array');
  if ((o.regions as unknown[]).length > 16) fail('regions', 'must have at most 16 regions');
  const ids = new Set<string>();
  const regions = (o.regions as unknown[]).map((r, i): Region => {
    const at = `regions[${i}]`;
    if (typeof r !== 'object' || r === null || Array.isArray(r)) fail(at, 'must be an object');
    const g = r as Record<string, unknown>;
    for (const k of Object.keys(g)) if (!REGION_KEYS.has(k)) fail(`${at}.${k}`, 'is not a region field');
    const id = g.id ?? `r${i}`;
    if (typeof id !== 'string' || !ID_RE.test(id) || ids.has(id)) fail(`${at}.id`, 'must be a unique id of lower-case letters, digits and dashes');
    ids.add(id as string);
    const frac = (k: 'x' | 'y' | 'width' | 'height') => {
      const v = g[k];
      const min = k === 'width' || k === 'height' ? 0.01 : 0;
      if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > 1) fail(`${at}.${k}`, `must be a number from ${min} to 1 (a fraction of the canvas)`);
      return v as number;
    };
    const [x, y, width, height] = [frac('x'), frac('y'), frac('width'), frac('height')];
    if (x + width > 1.0001) fail(`${at}.width`, 'runs past the right edge of the canvas (x + width > 1)');
    if (y + height > 1.0001) fail(`${at}.height`, 'runs past the bottom of the canvas (y + height > 1)');
    const fill = g.fill ?? ['rest'];
    if (!Array.isArray(fill) || fill.length === 0 || fill.some((f) => !FILL_RULES.includes(f as FillRule))) {
      fail(`${at}.fill`, `must be a non-empty list of ${FILL_RULES.map((f) => `"${f}"`).join(', ')}`);
    }
    const arrange = g.arrange ?? 'grid';
    if (!ARRANGEMENTS.includes(arrange as Arrangement)) fail(`${at}.arrange`, `must be one of ${ARRANGEMENTS.join(', ')}`);
    return {
      id: id as string,
      x,
      y,
      width,
      height,
      z: int(g.z, `${at}.z`, 0, 9, 0),
      fill: [...new Set(fill as FillRule[])],
      max: int(g.max, `${at}.max`, 1, 64, 64),
      arrange: arrange as Arrangement,
    };
  });
  return {
    id: o.id as string,
    name: o.name as string,
    description: (o.description as string | undefined) ?? '',
    regions,
    maxTiles,
    overflow: (o.overflow as Layout['overflow'] | undefined) ?? 'hide',
    gap,
    builtin,
  };
}

export class LayoutRegistry {
  readonly #layouts = new Map<string, Layout>();

  static fromDirectory(dir: string): LayoutRegistry {
    const reg = new LayoutRegistry();
    for (const file of fs.readdirSync(dir).filter((f) => f.endsWith('.json')).sort()) {
      const layout = parseLayout(JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8')), file, true);
      reg.#layouts.set(layout.id, layout);
    }
    return reg;
  }

  get(id: string): Layout {
    const l = this.#layouts.get(id);
    if (!l) throw new NotFoundError(`unknown layout "${id}"`);
    return l;
  }

  has(id: string): boolean {
    return this.#layouts.has(id);
  }

  list(): Layout[] {
    return [...this.#layouts.values()];
  }

  /** Creates or replaces a custom layout. Built-in layouts cannot be replaced. */
  put(layout: Layout): { created: boolean } {
    const old = this.#layouts.get(layout.id);
    if (old?.builtin) throw new InvalidStateError(`layout "${layout.id}" is built in and cannot be replaced; use another id`);
    this.#layouts.set(layout.id, { ...layout, builtin: false });
    return { created: !old };
  }

  delete(id: string): void {
    const l = this.get(id);
    if (l.builtin) throw new InvalidStateError(`layout "${id}" is built in and cannot be deleted`);
    this.#layouts.delete(id);
  }
}
