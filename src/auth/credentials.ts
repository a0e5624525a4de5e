import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { jwtVerify, SignJWT } from 'jose';
import { BadRequestError } from '../core/errors.js';

/**
 * What a join token allows, named as LiveKit names its video grants so that operators who know
 * LiveKit's access tokens know these. `room` is one room id, or "*" for every room.
 */
export interface Grants {
  room: string;
  roomJoin: boolean;
  canPublish: boolean;
  canSubscribe: boolean;
  roomRecord: boolean;
  roomAdmin: boolean;
}

/** A token's role picks its grants: the shapes of participant operators ask for. */
export const ROLES = {
  /** Sends and receives: a person in the call. */
  participant: { roomJoin: true, canPublish: true, canSubscribe: true, roomRecord: false, roomAdmin: false },
  /** Receives only: a viewer, a lobby screen, a low-power device that shows the meeting. */
  viewer: { roomJoin: true, canPublish: false, canSubscribe: true, roomRecord: false, roomAdmin: false },
  /** Joins, and runs the room: layouts, pins, removing people, recordings. */
  moderator: { roomJoin: true, canPublish: true, canSubscribe: true, roomRecord: true, roomAdmin: true },
  /** Runs the room without joining it: an operator's software. */
  admin: { roomJoin: false, canPublish: false, canSubscribe: false, roomRecord: true, roomAdmin: true },
} as const satisfies Record<string, Omit<Grants, 'room'>>;
export type Role = keyof typeof ROLES;

export const DEFAULT_TTL_SECONDS = 6 * 3600;
export const MAX_TTL_SECONDS = 30 * 24 * 3600;
const ISSUER = 'webrtc-mcu';

/** Who is asking: the holder of the API key, or the holder of a token with its grants. */
export type Principal =
  | { kind: 'key' }
  | {
      kind: 'token';
      grants: Grants;
      role: Role;
      /** The participant's name the token carries, if it names one. */
      name?: string;
      /** Identifies this token (a hash of it), so that a participant's later requests match its join. */
      tokenId: string;
      expiresAt: number;
    };

export interface TokenRequest {
  room: string;
  name?: string;
  role?: Role;
  ttlSeconds?: number;
}

const hash = (s: string) => createHash('sha256').update(s).digest();

/** Issues and checks credentials: the admin API key, and JWT join tokens signed with the API secret (HS256, by jose). */
export class Credentials {
  readonly #keyHash: Buffer;
  readonly #secret: Uint8Array;

  constructor(apiKey: string, apiSecret: string) {
    if (apiKey.length < 16) throw new BadRequestError('MCU_API_KEY must be at least 16 characters', 'bad_config');
    if (apiSecret.length < 32) throw new BadRequestError('MCU_API_SECRET must be at least 32 characters', 'bad_config');
    this.#keyHash = hash(apiKey);
    this.#secret = new TextEncoder().encode(apiSecret);
  }

  /** A new random key or secret: 32 bytes, base64url. */
  static randomSecret(): string {
    return randomBytes(32).toString('base64url');
  }

  async issue(req: TokenRequest, now = Date.now()): Promise<{ token: string; expiresAt: string }> {
    const role = req.role ?? 'participant';
    if (!Object.hasOwn(ROLES, role)) throw new BadRequestError(`role must be one of ${Object.keys(ROLES).join(', ')}`, 'bad_token_request');
    const ttl = req.ttlSeconds ?? DEFAULT_TTL_SECONDS;
    if (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_TTL_SECONDS) {
      throw new BadRequestError(`ttlSeconds must be an integer from 1 to ${MAX_TTL_SECONDS}`, 'bad_token_request');
    }
    const iat = Math.floor(now / 1000);
    const grants: Grants = { room: req.room, ...ROLES[role] };
    const jwt = new SignJWT({ video: grants, role, ...(req.name ? { name: req.name } : {}) })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setIssuer(ISSUER)
      .setIssuedAt(iat)
      .setNotBefore(iat)
      .setExpirationTime(iat + ttl)
      .setJti(randomBytes(12).toString('base64url'));
    if (req.name) jwt.setSubject(req.name);
    return { token: await jwt.sign(this.#secret), expiresAt: new Date((iat + ttl) * 1000).toISOString() };
  }

  /**
   * The principal behind an `Authorization` header, or undefined when there is none or it is not
   * valid (wrong key, bad signature, expired, malformed): the caller answers 401 without saying which.
   */
  async authenticate(header: string | undefined): Promise<Principal | undefined> {
    const m = /^Bearer +([^\s]+) *$/i.exec(header ?? '');
    if (!m) return undefined;
    const presented = m[1];
    if (timingSafeEqual(hash(presented), this.#keyHash)) return { kind: 'key' };
    if (presented.split('.').length !== 3) return undefined;
    try {
      const { payload } = await jwtVerify(presented, this.#secret, {
        algorithms: ['HS256'],
        issuer: ISSUER,
        requiredClaims: ['exp', 'iat'],
        clockTolerance: 5,
      });
      const v = payload.video as Partial<Grants> | undefined;
      const role = payload.role as Role;
      if (!v || typeof v.room !== 'string' || !Object.hasOwn(ROLES, role)) return undefined;
      const grants: Grants = {
        room: v.room,
        roomJoin: v.roomJoin === true,
        canPublish: v.canPublish === true,
        canSubscribe: v.canSubscribe === true,
        roomRecord: v.roomRecord === true,
        roomAdmin: v.roomAdmin === true,
      };
      return {
        kind: 'token',
        grants,
        role,
        name: typeof payload.name === 'string' ? payload.name : undefined,
        tokenId: hash(presented).toString('base64url').slice(0, 22),
        expiresAt: (payload.exp as number) * 1000,
      };
    } catch {
      return undefined;
    }
  }
}

/** What a principal may do. Pure, so the HTTP layer's checks read as one line each. */
export const may = {
  /** Everything: the API key, or a token with roomAdmin over every room. */
  admin: (p: Principal) => p.kind === 'key' || (p.grants.roomAdmin && p.grants.room === '*'),
  roomAdmin: (p: Principal, room: string) => may.admin(p) || (p.kind === 'token' && p.grants.roomAdmin && p.grants.room === room),
  record: (p: Principal, room: string) => may.roomAdmin(p, room) || (p.kind === 'token' && p.grants.roomRecord && inRoom(p, room)),
  join: (p: Principal, room: string) => p.kind === 'key' || (p.grants.roomJoin && inRoom(p, room)),
};
const inRoom = (p: Principal & { kind: 'token' }, room: string) => p.grants.room === room || p.grants.room === '*';
