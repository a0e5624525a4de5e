import cors from 'cors';
import express, { type NextFunction, type Request, type Response } from 'express';
import { rateLimit } from 'express-rate-limit';
import path from 'node:path';
import client from 'prom-client';
import { may, type Credentials, type Principal, type Role } from '../auth/credentials.js';
import { iceServerLinks, turnCredentials } from '../auth/turn.js';
import { LimitError } from '../core/admission.js';
import { BadRequestError, McuError, NotFoundError, UnsupportedMediaError } from '../core/errors.js';
import { createLogger } from '../core/log.js';
import { PROJECT_ROOT } from '../core/pipelines.js';
import { MAX_SDP_BYTES } from '../rtc/sdp.js';
import { isPlainRtpOffer, type PlainAudioCodec } from '../rtc/plainSdp.js';
import { checkRoomId, type Mcu } from '../room/Mcu.js';
import { parseLayout } from '../core/layouts.js';
import { parseLimits } from '../core/profiles.js';
import { createMetrics } from './metrics.js';
import { openApiDocument, validateBody } from './openapi.js';
import { ForbiddenError, guards, UnauthorizedError } from './auth.js';
import { testHooks } from './testHooks.js';
import { clusterRouter, isNodeOrigin } from '../cluster/http.js';
import type { Registry } from '../cluster/Registry.js';

const log = createLogger('http');

/**
 * The REST API (WHIP-shaped join) and the built-in join page. Every route checks credentials (README, Security).
 * With a cluster registry, requests for rooms and recordings held by other nodes are redirected there (README, Clustering).
 */
export function createApp(mcu: Mcu, creds: Credentials, cluster?: Registry): express.Express {
  const app = express();
  app.disable('x-powered-by');
  const { limits, auth } = mcu.config;
  // Browser WHIP clients on other origins: only those on the allow-list (MCU_CORS_ORIGINS), and in
  // a cluster the pages of its other nodes (the join page follows a redirect to the room's node).
  if (auth.corsOrigins.length || cluster) {
    const any = auth.corsOrigins.includes('*');
    app.use(
      cors({
        origin: cluster
          ? (origin, cb) => cb(null, any || (!!origin && (auth.corsOrigins.includes(origin) || isNodeOrigin(cluster, origin))))
          : any
            ? '*'
            : auth.corsOrigins,
        methods: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'],
        allowedHeaders: ['Authorization', 'Content-Type', 'If-Match'],
        exposedHeaders: ['Location', 'Link', 'ETag', 'Retry-After', 'WWW-Authenticate', 'Content-Range', 'RateLimit', 'RateLimit-Policy', ...(cluster ? ['X-Mcu-Node'] : [])],
        maxAge: 600,
        // A plain OPTIONS (WHIP asking for its ICE servers) goes on to its route; a preflight ends below.
        preflightContinue: true,
      }),
    );
    app.use((req, res, next) => (req.method === 'OPTIONS' && req.get('Access-Control-Request-Method') ? res.status(204).end() : next()));
  }
  app.use(express.static(path.join(PROJECT_ROOT, 'public')));
  const need = guards(creds);

  // Joins per second from one client address (express-rate-limit), before the offer is even read.
  const joinRate = rateLimit({
    windowMs: 1000,
    limit: limits.joinsPerSecond,
    standardHeaders: 'draft-8',
    legacyHeaders: false,
    handler: (_req, _res, next) =>
      next(new LimitError(429, 'joins_per_second', `too many joins from this address: ${limits.joinsPerSecond} a second is the limit (MCU_JOINS_PER_SECOND)`, 1)),
  });

  /** The participant's own credential (the token it joined with), or one that runs its room. */
  const own = (req: Request, _res: Response, next: NextFunction) => {
    const room = String(req.params.room);
    try {
      need.check(
        req,
        (p: Principal) =>
          may.roomAdmin(p, room) ||
          (p.kind === 'token' && (p.grants.room === room || p.grants.room === '*') && mcu.ownedBy(String(req.params.id), p.tokenId)),
      );
      next();
    } catch (err) {
      next(err);
    }
  };

  const sdpBody = express.text({ type: 'application/sdp', limit: MAX_SDP_BYTES });
  const requireSdp = (req: Request, _res: Response, next: NextFunction) => {
    if (!req.is('application/sdp')) {
      return next(new UnsupportedMediaError('Content-Type must be application/sdp, with an SDP offer as the body'));
    }
    next();
  };

  // Before the routes: rooms and recordings held elsewhere are redirected, listings cover the cluster.
  if (cluster) app.use(clusterRouter(mcu, cluster, need));

  app.post('/v1/tokens', need.admin, express.json({ limit: '4kb' }), async (req, res) => {
    const body = validateBody<{ room: string; name?: string; role?: Role; ttlSeconds?: number }>('TokenRequest', req.body);
    res.status(201).json(await creds.issue(body));
  });

  /** The ICE servers a peer may use (RFC 9725 4.6), with TURN credentials of its own. */
  const announceIceServers = (req: Request, res: Response) => {
    const { urls, secret, ttlSeconds } = mcu.config.ice;
    if (!urls.length) return;
    const p = req.principal!;
    const who = p.kind === 'token' ? p.tokenId : 'admin';
    res.append('Link', iceServerLinks(urls, secret ? turnCredentials(secret, who, ttlSeconds) : undefined));
  };

  // WHIP: a client asks which ICE servers to use before it makes its offer.
  app.options('/v1/rooms/:room/participants', need.join, (req, res) => {
    announceIceServers(req, res);
    res.set('Accept-Post', 'application/sdp').status(204).end();
  });

  app.post('/v1/rooms/:room/participants', need.join, joinRate, requireSdp, sdpBody, async (req, res) => {
    const roomId = checkRoomId(String(req.params.room), limits.roomIdLength);
    if (typeof req.body !== 'string' || req.body.trim() === '') {
      throw new BadRequestError('the request body must be an SDP offer; it was empty', 'bad_sdp');
    }
    const screenshare = req.query.screenshare === 'true' || req.query.screenshare === '1';
    const p = req.principal!;
    // A plain RTP leg (RTP/AVP: no ICE, no DTLS) is unencrypted and unauthenticated: an admin's call.
    if (isPlainRtpOffer(req.body) && !may.admin(p)) throw new ForbiddenError();
    // A token that names the participant decides its name; ?name= is for tokens that do not.
    const name = p.kind === 'token' && p.name ? p.name : req.query.name;
    const { participant, answer } = await mcu.join(roomId, name, req.body, {
      screenshare,
      // ?maxWidth=&maxHeight=&maxFps=&maxBitrate=: the most this viewer's device takes.
      limits: parseLimits(req.query as Record<string, unknown>),
      owner: p.kind === 'token' ? p.tokenId : undefined,
      canPublish: p.kind === 'key' || p.grants.canPublish,
      canSubscribe: p.kind === 'key' || p.grants.canSubscribe,
    });
    const location = `/v1/rooms/${encodeURIComponent(roomId)}/participants/${participant.id}`;
    announceIceServers(req, res);
    res.status(201).location(location).type('application/sdp').send(answer);
  });

  // WHIP trickle and ICE restart: this server answers with every candidate, so PATCH is not allowed.
  app.patch('/v1/rooms/:room/participants/:id', (_req, res) => {
    res.status(405).set('Allow', 'GET, DELETE').json({ error: { code: 'method_not_allowed', message: 'trickle ICE is not supported; the answer carries all candidates' } });
  });

  app.delete('/v1/rooms/:room/participants/:id', need.any, own, async (req, res) => {
    await mcu.room(String(req.params.room)).leave(String(req.params.id));
    res.status(204).end();
  });

  app.get('/v1/rooms', need.admin, (_req, res) => {
    res.json(mcu.dump());
  });

  app.get('/v1/rooms/:room', need.roomAdmin, (req, res) => {
    res.json(mcu.room(String(req.params.room)).dump());
  });

  app.get('/v1/rooms/:room/participants/:id', need.any, own, (req, res) => {
    res.json(mcu.room(String(req.params.room)).get(String(req.params.id)).dump());
  });

  app.get('/v1/rooms/:room/participants/:id/view', need.any, own, (req, res) => {
    const c = mcu.room(String(req.params.room)).viewOf(String(req.params.id));
    res.json({
      width: c.width,
      height: c.height,
      layout: c.layout,
      tiles: c.tiles.map((t) => ({ participantId: t.participantId, name: t.name, x: t.x, y: t.y, width: t.width, height: t.height, z: t.z, source: t.source })),
      overflow: c.overflow,
    });
  });

  const parseJson = express.json({ limit: '64kb' });
  /** A JSON body, or none: a body of another type is refused (415) rather than read as no body. */
  const jsonBody = (req: Request, res: Response, next: NextFunction) => {
    // req.is() answers null when the request has no body at all.
    const type = req.is('*/*');
    if (type !== null && !req.is('application/json')) return next(new UnsupportedMediaError('Content-Type must be application/json'));
    parseJson(req, res, next);
  };
  const room = (req: Request) => mcu.room(String(req.params.room));

  const metrics = createMetrics(mcu);
  // In a cluster every series says which node it is from.
  if (cluster) metrics.setDefaultLabels({ node: cluster.id });
  const refusals = new client.Counter({ name: 'mcu_refusals_total', help: 'Requests refused by a limit, by limit', labelNames: ['limit'], registers: [metrics] });
  app.get('/metrics', ...(auth.metricsPublic ? [] : [need.admin]), async (_req, res) => {
    res.type(metrics.contentType).send(await metrics.metrics());
  });

  app.get('/v1/openapi.json', (_req, res) => {
    res.json(openApiDocument);
  });

  app.get('/v1/layouts', need.any, (_req, res) => {
    res.json({ layouts: mcu.layouts.list() });
  });

  app.get('/v1/layouts/:layout', need.any, (req, res) => {
    res.json(mcu.layouts.get(String(req.params.layout)));
  });

  app.put('/v1/layouts/:layout', need.admin, jsonBody, (req, res) => {
    const raw = { ...(typeof req.body === 'object' && req.body !== null ? req.body : {}), id: req.body?.id ?? req.params.layout };
    if (raw.id !== req.params.layout) {
      throw new BadRequestError(`field "id" (${String(JSON.stringify(raw.id)).slice(0, 100)}) must match the layout id in the path (${JSON.stringify(req.params.layout)})`, 'invalid_layout');
    }
    validateBody('Layout', raw);
    const layout = parseLayout(raw, 'layout');
    const { created } = mcu.layouts.put(layout);
    mcu.layoutChanged(layout.id);
    res.status(created ? 201 : 200).json(mcu.layouts.get(layout.id));
  });

  app.delete('/v1/layouts/:layout', need.admin, (req, res) => {
    mcu.layouts.delete(String(req.params.layout));
    mcu.layoutChanged(String(req.params.layout));
    res.status(204).end();
  });

  // An SDP-less plain RTP leg, for media gateways that do not negotiate (Asterisk's externalMedia).
  app.post('/v1/rooms/:room/rtp-legs', need.admin, jsonBody, async (req, res) => {
    const roomId = checkRoomId(String(req.params.room), limits.roomIdLength);
    const body = validateBody<{ name?: string; codec: PlainAudioCodec; payloadType?: number; dtmfPayloadType?: number; remote?: { host: string; port: number } }>(
      'RtpLegRequest',
      req.body,
    );
    const { name, ...leg } = body;
    const { participant, host, port } = await mcu.addRtpLeg(roomId, name, leg);
    const t = participant.tracks.audio!;
    res
      .status(201)
      .location(`/v1/rooms/${encodeURIComponent(roomId)}/participants/${participant.id}`)
      .json({ id: participant.id, host, port, codec: t.codec, payloadType: t.payloadType });
  });

  app.post('/v1/rooms', need.any, jsonBody, async (req, res) => {
    const body = validateBody<{ id: string; layout?: string; autoRecord?: boolean | Record<string, unknown> }>('CreateRoomRequest', req.body);
    need.check(req, (p) => may.roomAdmin(p, body.id));
    const r = await mcu.createRoom(body.id, { layout: body.layout, autoRecord: body.autoRecord as never });
    res.status(201).location(`/v1/rooms/${encodeURIComponent(r.id)}`).json(r.dump());
  });

  app.post('/v1/rooms/:room/recordings', need.record, jsonBody, async (req, res) => {
    const opts = validateBody<Record<string, never>>('RecordingRequest', req.body ?? {});
    const rec = await mcu.startRecording(String(req.params.room), opts);
    res.status(201).location(`/v1/recordings/${rec.id}`).json(rec.dump());
  });

  /** A recording, for those who may see it: an admin, or a token that records or runs its room. */
  const recordingFor = (req: Request) => {
    const rec = mcu.recording(String(req.params.rec));
    need.check(req, (p) => may.record(p, rec.roomId));
    return rec;
  };

  const roomRecording = (req: Request) => {
    const rec = mcu.recording(String(req.params.rec));
    if (rec.roomId !== req.params.room) throw new NotFoundError(`no recording "${req.params.rec}" in room "${req.params.room}"`);
    return rec;
  };

  app.post('/v1/rooms/:room/recordings/:rec/stop', need.record, async (req, res) => {
    roomRecording(req);
    res.json((await mcu.stopRecording(String(req.params.rec))).dump());
  });

  app.put('/v1/rooms/:room/recordings/:rec/layout', need.record, jsonBody, (req, res) => {
    const rec = roomRecording(req);
    room(req).setRecordingPrefs(rec, validateBody('RecordingLayoutRequest', req.body));
    res.json(rec.dump());
  });

  app.get('/v1/recordings', need.any, (req, res) => {
    // An admin sees every recording; a token with roomRecord or roomAdmin, its room's.
    const p = req.principal!;
    if (!may.admin(p) && !(p.kind === 'token' && (p.grants.roomRecord || p.grants.roomAdmin))) throw new ForbiddenError();
    res.json({ recordings: [...mcu.recordings.values()].filter((r) => may.record(p, r.roomId)).map((r) => r.dump()) });
  });

  app.get('/v1/recordings/:rec', need.any, (req, res) => {
    res.json(recordingFor(req).dump());
  });

  app.delete('/v1/recordings/:rec', need.any, async (req, res) => {
    recordingFor(req);
    await mcu.deleteRecording(String(req.params.rec));
    res.status(204).end();
  });

  app.get('/v1/recordings/:rec/file', need.any, (req, res, next) => {
    const rec = recordingFor(req);
    if (rec.sizeBytes() === null) throw new NotFoundError(`recording ${rec.id} has no file`);
    res.type(rec.mimeType);
    res.attachment(`${rec.roomId}-${rec.id}.${rec.options.format}`);
    // express's sendFile answers Range requests with 206 and Content-Range.
    res.sendFile(rec.file, { acceptRanges: true, cacheControl: false, lastModified: true }, (err) => err && next(err));
  });

  app.put('/v1/rooms/:room/layout', need.roomAdmin, jsonBody, (req, res) => {
    const r = room(req);
    r.setLayout(validateBody<{ layout?: string; selfView?: boolean }>('RoomLayoutRequest', req.body));
    res.json(r.dump());
  });

  app.put('/v1/rooms/:room/participants/:id/layout', need.any, own, jsonBody, (req, res) => {
    const r = room(req);
    r.setViewerPrefs(String(req.params.id), validateBody('ViewerLayoutRequest', req.body));
    res.json(r.get(String(req.params.id)).dump());
  });

  app.delete('/v1/rooms/:room/participants/:id/layout', need.any, own, (req, res) => {
    room(req).clearViewerPrefs(String(req.params.id));
    res.status(204).end();
  });

  app.put('/v1/rooms/:room/pin', need.roomAdmin, jsonBody, (req, res) => {
    const r = room(req);
    r.setPin(validateBody<{ participantId: string | null }>('PinRequest', req.body).participantId);
    res.json(r.dump());
  });

  app.delete('/v1/rooms/:room/pin', need.roomAdmin, (req, res) => {
    room(req).setPin(null);
    res.status(204).end();
  });

  // What this viewer receives at most, during the call: it moves to a composite of that size.
  app.put('/v1/rooms/:room/participants/:id/output', need.any, own, jsonBody, (req, res) => {
    const limits = parseLimits(validateBody<Record<string, unknown>>('OutputRequest', req.body));
    res.json(room(req).setOutputLimits(String(req.params.id), limits).dump());
  });

  app.put('/v1/rooms/:room/participants/:id/pin', need.any, own, jsonBody, (req, res) => {
    const r = room(req);
    const { participantId } = validateBody<{ participantId: string | null }>('PinRequest', req.body);
    r.setViewerPrefs(String(req.params.id), { pin: participantId });
    res.json(r.get(String(req.params.id)).dump());
  });

  app.delete('/v1/rooms/:room/participants/:id/pin', need.any, own, (req, res) => {
    room(req).setViewerPrefs(String(req.params.id), { pin: null });
    res.status(204).end();
  });

  // Probes for orchestrators (no credential; they say nothing about rooms): alive, and ready for
  // new rooms (not draining, and in a cluster, registered).
  app.get('/healthz', (_req, res) => {
    res.json({ ok: true });
  });
  app.get('/readyz', (_req, res) => {
    const draining = cluster?.draining ?? false;
    const registered = cluster ? cluster.up : true;
    res.status(!draining && registered ? 200 : 503).json({ ready: !draining && registered, draining, registered });
  });

  /** Rooms that still hold someone, or a recording: what a drain waits for. */
  const busyRooms = () => [...mcu.rooms.values()].filter((r) => r.participants.size > 0 || r.recording);
  if (cluster) {
    // Drain (a Kubernetes preStop runs `webrtc-mcu drain`): no new rooms from now on; the running
    // ones go on. GET says when none is left; SIGTERM then closes the node at once.
    app.post('/v1/drain', need.admin, async (_req, res) => {
      await cluster.drain();
      res.status(202).json({ draining: true, busyRooms: busyRooms().length });
    });
    app.get('/v1/drain', need.admin, (_req, res) => {
      const busy = busyRooms();
      res.json({ draining: cluster.draining, busyRooms: busy.length, participants: busy.reduce((n, r) => n + r.participants.size, 0), done: cluster.draining && busy.length === 0 });
    });
  }

  if (mcu.config.testHooks) app.use('/v1/test', need.admin, testHooks(mcu));

  app.use('/v1', (_req, _res, next) => next(new McuError(404, 'not_found', 'no such API route')));

  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const e = err as { status?: number; type?: string; message?: string };
    let status = 500;
    let code = 'internal';
    let message = 'internal error';
    if (err instanceof McuError) {
      ({ status, code, message } = err);
      if (err instanceof UnauthorizedError) res.set('WWW-Authenticate', 'Bearer realm="webrtc-mcu"');
      if (err instanceof LimitError) {
        refusals.inc({ limit: err.limit });
        if (err.retryAfterSeconds) res.set('Retry-After', String(err.retryAfterSeconds));
      }
    } else if (e?.type === 'entity.too.large') {
      [status, code, message] = [413, 'too_large', 'the request body is too large'];
    } else if (e?.type === 'entity.parse.failed') {
      [status, code, message] = [400, 'bad_json', `the body is not valid JSON: ${e.message}`];
    } else if (typeof e?.status === 'number' && e.status >= 400 && e.status < 500) {
      [status, code, message] = [e.status, 'bad_request', e.message ?? 'bad request'];
    }
    if (status === 503) {
      if (!res.get('Retry-After')) res.set('Retry-After', '2');
      log.warn(`${req.method} ${req.path} -> 503: ${message}`);
    } else if (status >= 500) log.error(`${req.method} ${req.path} failed: ${(err as Error)?.stack ?? err}`);
    else log.debug(`${req.method} ${req.path} -> ${status}: ${message}`);
    res.status(status).json({ error: { code, message, ...(err instanceof LimitError ? { limit: err.limit } : {}) } });
  });
  return app;
}
