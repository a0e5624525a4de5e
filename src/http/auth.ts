import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { may, type Credentials, type Principal } from '../auth/credentials.js';
import { McuError } from '../core/errors.js';

/** No credentials, or credentials that are not valid: the response does not say which. */
export class UnauthorizedError extends McuError {
  constructor() {
    super(401, 'unauthorized', 'missing or invalid credentials: send Authorization: Bearer <API key or join token>');
  }
}

/** Valid credentials used outside their grants. */
export class ForbiddenError extends McuError {
  constructor() {
    super(403, 'forbidden', 'these credentials do not allow this request');
  }
}

declare module 'express-serve-static-core' {
  interface Request {
    principal?: Principal;
  }
}

/**
 * Route guards. Each reads the Bearer credential once (the API key, or a join token checked by
 * jose), then allows the request or answers 401 (no valid credential) or 403 (outside its grants).
 */
export function guards(creds: Credentials) {
  const authenticated = async (req: Request): Promise<Principal> => {
    req.principal ??= await creds.authenticate(req.get('authorization'));
    if (!req.principal) throw new UnauthorizedError();
    return req.principal;
  };
  const guard =
    (allowed: (p: Principal, req: Request) => boolean): RequestHandler =>
    async (req: Request, _res: Response, next: NextFunction) => {
      try {
        if (!allowed(await authenticated(req), req)) throw new ForbiddenError();
        next();
      } catch (err) {
        next(err);
      }
    };
  const room = (req: Request) => String(req.params.room);
  return {
    /** Any valid credential. */
    any: guard(() => true),
    /** The API key, or a token with roomAdmin over every room ("*"). */
    admin: guard((p) => may.admin(p)),
    /** Runs the room in the path. */
    roomAdmin: guard((p, req) => may.roomAdmin(p, room(req))),
    /** Joins the room in the path. */
    join: guard((p, req) => may.join(p, room(req))),
    /** Records the room in the path. */
    record: guard((p, req) => may.record(p, room(req))),
    /** A check that needs what the route looks up (a recording's room, a participant's owner). */
    check: (req: Request, allowed: (p: Principal) => boolean): void => {
      if (!req.principal) throw new UnauthorizedError();
      if (!allowed(req.principal)) throw new ForbiddenError();
    },
  };
}
