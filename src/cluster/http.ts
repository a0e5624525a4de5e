import express, { type NextFunction, type Request, type Response } from 'express';
import { may, type Principal } from '../auth/credentials.js';
import { LimitError } from '../core/admission.js';
import { McuError } from '../core/errors.js';
import type { guards } from '../http/auth.js';
import { ForbiddenError } from '../http/auth.js';
import type { Mcu } from '../room/Mcu.js';
import type { NodeRecord } from './placement.js';
import { ClusterUnavailableError, type ClusterRecording, type Registry } from './Registry.js';

const ROOM_RE = /^[A-Za-z0-9_-]{1,64}$/;
/** How long a cluster-wide listing waits for another node. */
const FAN_OUT_TIMEOUT_MS = 2000;

type Guards = ReturnType<typeof guards>;

/** The origins of the cluster's live nodes: a page served by one node may call the others (CORS). */
export function isNodeOrigin(registry: Registry, origin: string): boolean {
  return registry.nodes().some((n) => {
    try {
      return new URL(n.url).origin === origin;
    } catch {
      return false;
    }
  });
}

/**
 * Requests for rooms and recordings held by another node, before the API's own routes:
 * - a room open here, a recording held here, or anything not about a room goes on to the routes;
 * - a WHIP join or `POST /v1/rooms` for a room open nowhere places it (atomically, in Redis) and is
 *   answered `307` to the node chosen, or goes on here if it is this one;
 * - any other request for a room placed on another node: `307` to the same path there;
 * - `GET /v1/rooms` and `GET /v1/recordings` list the whole cluster (`?scope=node`: this node's);
 * - `GET /v1/nodes`: the registry.
 * Requests that cannot be sent anywhere go on to the routes, which answer as a single node would.
 * With Redis out of reach, rooms open here are served and everything else is 503.
 */
export function clusterRouter(mcu: Mcu, registry: Registry, need: Guards): express.Router {
  const r = express.Router();
  const me = registry.id;

  r.use((_req, res, next) => {
    res.set('X-Mcu-Node', me);
    next();
  });

  const redirect = (req: Request, res: Response, node: NodeRecord) => {
    res.status(307).location(node.url + req.originalUrl).set('Cache-Control', 'no-store').end();
  };

  const noNodeHasRoom = () =>
    new LimitError(503, 'cluster_capacity', registry.draining ? 'this node is draining and no other node has room for a new room' : 'no node in the cluster has room for a new room', 5);

  /** Sends the request to the room's node, placing the room first if `create` says so. */
  const route = (create: (req: Request, p: Principal, room: string) => boolean) => async (req: Request, res: Response, next: NextFunction) => {
    const room = String(req.params.room ?? req.body?.id ?? '');
    if (!ROOM_RE.test(room) || mcu.rooms.has(room)) return next('router');
    const p = req.principal!;
    let node: NodeRecord | null | undefined;
    if (create(req, p, room)) {
      // A draining node places no room on itself, also none it held before draining.
      node = await registry.place(room, { avoidSelf: registry.draining });
      if (!node) throw noNodeHasRoom();
    } else {
      if (!registry.up) throw new ClusterUnavailableError('no heartbeat has gone through lately');
      node = await registry.whereIs(room);
    }
    if (!node || node.id === me) return next('router');
    redirect(req, res, node);
  };

  const localFirst = (req: Request, _res: Response, next: NextFunction) => {
    const room = String(req.params.room ?? '');
    next(mcu.rooms.has(room) ? 'router' : undefined);
  };

  // A WHIP join places a room that is open nowhere, for a credential that may join it.
  r.use(
    '/v1/rooms/:room',
    localFirst,
    need.any,
    route((req, p, room) => req.method === 'POST' && /^\/participants\/?$/.test(req.path) && may.join(p, room)),
  );

  r.post(
    '/v1/rooms',
    express.json({ limit: '64kb' }),
    (req, _res, next) => next(typeof req.body?.id === 'string' ? undefined : 'router'),
    need.any,
    route((_req, p, room) => may.roomAdmin(p, room)),
  );

  /** Live nodes as Redis has them now; with Redis away, the last heartbeat's view. */
  const liveNodes = async () => ({ nodes: await registry.liveNodes().catch(() => registry.nodes()), fresh: registry.up });

  r.get('/v1/nodes', need.admin, async (_req, res) => {
    const { nodes } = await liveNodes();
    res.json({ self: me, registered: registry.up, draining: registry.draining, nodes });
  });

  r.get(
    '/v1/rooms',
    (req, _res, next) => next(req.query.scope === 'node' ? 'router' : undefined),
    need.admin,
    async (req, res) => {
      const local = mcu.dump().rooms.map((room) => ({ ...room, node: me }));
      const { nodes } = await liveNodes();
      const others = nodes.filter((n) => n.id !== me);
      const unreachable: string[] = [];
      const lists = await Promise.all(
        others.map(async (n) => {
          try {
            const res = await fetch(`${n.url}/v1/rooms?scope=node`, {
              headers: { Authorization: req.get('authorization') ?? '' },
              signal: AbortSignal.timeout(FAN_OUT_TIMEOUT_MS),
              redirect: 'error',
            });
            if (!res.ok) throw new Error(String(res.status));
            const body = (await res.json()) as { rooms: Array<Record<string, unknown>> };
            return body.rooms.map((room) => ({ ...room, node: n.id }));
          } catch {
            unreachable.push(n.id);
            return [];
          }
        }),
      );
      res.json({
        rooms: [...local, ...lists.flat()],
        nodes: nodes.map(({ id, url, rooms, participants, loadCores, pendingCores, capacityCores, draining }) => ({ id, url, rooms, participants, loadCores, pendingCores, capacityCores, draining })),
        ...(registry.up ? {} : { partial: true }),
        ...(unreachable.length ? { unreachable } : {}),
      });
    },
  );

  /** A recording whose node has left the registry: what it last published, marked so. */
  const gone = ({ node, recording }: ClusterRecording) => {
    const wasRunning = ['starting', 'recording', 'stopping'].includes(recording.state);
    return { ...recording, node, nodeGone: true, ...(wasRunning ? { state: 'done', interrupted: true } : {}) };
  };

  r.get(
    '/v1/recordings',
    (req, _res, next) => next(req.query.scope === 'node' ? 'router' : undefined),
    need.any,
    async (req, res) => {
      // The same rule as the node's own listing: an admin sees all, a recording or room-admin token its room's.
      const p = req.principal!;
      if (!may.admin(p) && !(p.kind === 'token' && (p.grants.roomRecord || p.grants.roomAdmin))) throw new ForbiddenError();
      const local = [...mcu.recordings.values()].map((rec) => ({ ...rec.dump(), node: me }));
      let partial = false;
      let known: ClusterRecording[] = [];
      let live = new Set<string>();
      try {
        known = await registry.recordings();
        live = new Set((await registry.liveNodes()).map((n) => n.id));
      } catch {
        partial = true;
      }
      const ids = new Set(local.map((x) => x.id));
      const others = known
        .filter((c) => !ids.has(c.recording.id) && c.node !== me)
        .map((c) => (live.has(c.node) ? { ...c.recording, node: c.node } : gone(c)));
      res.json({ recordings: [...local, ...others].filter((x) => may.record(p, String(x.room))), ...(partial ? { partial } : {}) });
    },
  );

  // A recording held by another node: 307 there; its node gone: what it last published, no file.
  r.use(
    '/v1/recordings/:rec',
    (req, _res, next) => next(mcu.recordings.has(String(req.params.rec)) ? 'router' : undefined),
    need.any,
    async (req, res, next) => {
      const entry = await registry.recording(String(req.params.rec));
      if (!entry || entry.node === me) return next('router');
      const node = await registry.liveNode(entry.node);
      if (node) return redirect(req, res, node);
      need.check(req, (p) => may.record(p, entry.recording.room));
      if (req.method === 'GET' && (req.path === '/' || req.path === '')) return res.json(gone(entry));
      throw new McuError(503, 'node_gone', `recording ${entry.recording.id} is held by node ${entry.node}, which has left the cluster; its file is there`);
    },
  );

  return r;
}
