import type { Composition } from '../core/composition.js';
import type { CompositeTile } from '../core/pipelines.js';
import type { ImageRenderer } from '../render/images.js';

/**
 * Turns a composition into the tiles a composite pipeline draws: live video from each
 * participant's channel, else its placeholder, a "+N" card for overflow, and a name plate on each
 * person's tile. Tiles come in z order, which the compositor's zorder follows.
 */
export async function compositeTiles(
  c: Composition,
  renderer: ImageRenderer,
  channelOf: (participantId: string, width: number, height: number) => string | Promise<string>,
): Promise<CompositeTile[]> {
  const ordered = [...c.tiles].sort((a, b) => a.z - b.z);
  return Promise.all(
    ordered.map(async (t): Promise<CompositeTile> => {
      const box = { x: t.x, y: t.y, width: t.width, height: t.height };
      if (t.source === 'overflow' || t.participantId === null) {
        return { ...box, source: { kind: 'image', path: await renderer.overflowCard(t.name, t.width, t.height) } };
      }
      const plate = await renderer.namePlate(t.name, t.width - 8, t.height);
      return {
        ...box,
        source:
          t.source === 'video'
            ? { kind: 'video', channel: await channelOf(t.participantId, t.width, t.height) }
            : { kind: 'image', path: await renderer.placeholder(t.participantId, t.name, t.width, t.height) },
        plate: { path: plate.path, x: t.x + 4, y: t.y + t.height - plate.height - 4 },
      };
    }),
  );
}
