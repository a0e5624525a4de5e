import express, { type NextFunction, type Request, type Response } from 'express';
import path from 'node:path';
import { BadRequestError, McuError, UnsupportedMediaError } from '../core/errors.js';
import { createLogger } from '../core/log.js';
import { PROJECT_ROOT } from '../core/pipelines.js';
import { MAX_SDP_BYTES } from '../rtc/sdp.js';
import { checkRoomId, type Mcu } from '../room/Mcu.js';

const log = createLogger('http');

/** The REST API (WHIP-shaped join) and the built-in join page. */
export function createApp(mcu: Mcu): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.use(express.static(path.join(PROJECT_ROOT, 'public')));

  const sdpBody = express.text({ type: 'application/sdp', limit: MAX_SDP_BYTES });
  const requireSdp = (req: Request, _res: Response, next: NextFunction) => {
    if (!req.is('application/sdp')) {
      return next(new UnsupportedMediaError('Content-Type must be application/sdp, with an SDP offer as the body'));
    }
    next();
  };

  app.post('/v1/rooms/:room/participants', requireSdp, sdpBody, async (req, res) => {
    const roomId = checkRoomId(String(req.params.room));
    if (typeof req.body !== 'string' || req.body.trim() === '') {
      throw new BadRequestError('the request body must be an SDP offer; it was empty', 'bad_sdp');
    }
    const { participant, answer } = await mcu.join(roomId, req.query.name, req.body);
    const location = `/v1/rooms/${encodeURIComponent(roomId)}/participants/${participant.id}`;
    res.status(201).location(location).type('application/sdp').send(answer);
  });

  // WHIP trickle and ICE restart: this server answers with every candidate, so PATCH is not allowed.
  app.patch('/v1/rooms/:room/participants/:id', (_req, res) => {
    res.status(405).set('Allow', 'GET, DELETE').json({ error: { code: 'method_not_allowed', message: 'trickle ICE is not supported; the answer carries all candidates' } });
  });

  app.delete('/v1/rooms/:room/participants/:id', async (req, res) => {
    await mcu.room(String(req.params.room)).leave(String(req.params.id));
    res.status(204).end();
  });

  app.get('/v1/rooms', (_req, res) => {
    res.json(mcu.dump());
  });

  app.get('/v1/rooms/:room', (req, res) => {
    res.json(mcu.room(String(req.params.room)).dump());
  });

  app.get('/v1/rooms/:room/participants/:id', (req, res) => {
    res.json(mcu.room(String(req.params.room)).get(String(req.params.id)).dump());
  });

  app.get('/v1/rooms/:room/participants/:id/view', (req, res) => {
    const c = mcu.room(String(req.params.room)).viewOf(String(req.params.id));
    res.json({
      width: c.width,
      height: c.height,
      layout: c.layout,
      tiles: c.tiles.map((t) => ({ participantId: t.participantId, name: t.name, x: t.x, y: t.y, width: t.width, height: t.height, source: t.source })),
      overflow: c.overflow,
    });
  });

  app.get('/v1/layouts', (_req, res) => {
    res.json({ layouts: mcu.layouts.list() });
  });

  app.use('/v1', (_req, _res, next) => next(new McuError(404, 'not_found', 'no such API route')));

  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const e = err as { status?: number; type?: string; message?: string };
    let status = 500;
    let code = 'internal';
    let message = 'internal error';
    if (err instanceof McuError) {
      ({ status, code, message } = err);
    } else if (e?.type === 'entity.too.large') {
      [status, code, message] = [413, 'too_large', `the body is over ${MAX_SDP_BYTES} bytes`];
    } else if (typeof e?.status === 'number' && e.status >= 400 && e.status < 500) {
      [status, code, message] = [e.status, 'bad_request', e.message ?? 'bad request'];
    }
    if (status >= 500) log.error(`${req.method} ${req.path} failed: ${(err as Error)?.stack ?? err}`);
    else log.debug(`${req.method} ${req.path} -> ${status}: ${message}`);
    res.status(status).json({ error: { code, message } });
  });
  return app;
}
