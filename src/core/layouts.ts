import fs from 'node:fs';
import path from 'node:path';
import { BadRequestError, NotFoundError } from './errors.js';

/** A layout is data: JSON in layouts/, validated when loaded and addressed by id. */
export interface GridLayout {
  id: string;
  name: string;
  description: string;
  kind: 'grid';
  /** Pixels between tiles and around the edge. */
  gap: number;
  /** Most tiles shown; participants past it are counted in overflow. */
  maxTiles: number;
}

export type Layout = GridLayout;

const ID_RE = /^[a-z0-9][a-z0-9-]{0,63}$/;

/** Validates untrusted layout JSON; the error names the offending field. */
export function parseLayout(raw: unknown, source = 'layout'): Layout {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new BadRequestError(`${source}: a layout must be a JSON object`, 'invalid_layout');
  }
  const o = raw as Record<string, unknown>;
  const field = (name: string, msg: string): never => {
    throw new BadRequestError(`${source}: field "${name}" ${msg}`, 'invalid_layout');
  };
  if (typeof o.id !== 'string' || !ID_RE.test(o.id)) field('id', 'must be lower-case letters, digits and dashes (1-64)');
  if (typeof o.name !== 'string' || o.name.length === 0 || o.name.length > 100) field('name', 'must be a string of 1-100 characters');
  if (o.description !== undefined && typeof o.description !== 'string') field('description', 'must be a string');
  if (o.kind !== 'grid') field('kind', `must be "grid", got ${JSON.stringify(o.kind)}`);
  const gap = o.gap ?? 0;
  if (typeof gap !== 'number' || !Number.isInteger(gap) || gap < 0 || gap > 64) field('gap', 'must be an integer from 0 to 64');
  const maxTiles = o.maxTiles ?? 16;
  if (typeof maxTiles !== 'number' || !Number.isInteger(maxTiles) || maxTiles < 1 || maxTiles > 64) {
    field('maxTiles', 'must be an integer from 1 to 64');
  }
  return {
    id: o.id as string,
    name: o.name as string,
    description: (o.description as string | undefined) ?? '',
    kind: 'grid',
    gap: gap as number,
    maxTiles: maxTiles as number,
  };
}

export class LayoutRegistry {
  readonly #layouts = new Map<string, Layout>();

  static fromDirectory(dir: string): LayoutRegistry {
    const reg = new LayoutRegistry();
    for (const file of fs.readdirSync(dir).filter((f) => f.endsWith('.json')).sort()) {
      const full = path.join(dir, file);
      const layout = parseLayout(JSON.parse(fs.readFileSync(full, 'utf8')), file);
      reg.#layouts.set(layout.id, layout);
    }
    return reg;
  }

  get(id: string): Layout {
    const l = this.#layouts.get(id);
    if (!l) throw new NotFoundError(`unknown layout "${id}"`);
    return l;
  }

  list(): Layout[] {
    return [...this.#layouts.values()];
  }
}
