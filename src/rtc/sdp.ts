import { BadRequestError, UnsupportedMediaError } from '../core/errors.js';

/**
 * What we need to know of an offer before werift sees it: it is an SDP at all, it has ICE
 * credentials and a DTLS fingerprint, and which codecs the peer prefers. Pure; no werift here.
 */
export type Direction = 'sendrecv' | 'sendonly' | 'recvonly' | 'inactive';

/**
 * The answer's direction for an offered one, within the peer's grants: a peer that may not publish
 * gets an answer that receives nothing from it, one that may not subscribe an answer that sends it nothing.
 */
export const answerDirection = (offered: Direction, grants: { canPublish?: boolean; canSubscribe?: boolean } = {}): Direction => {
  const recv = (offered === 'sendrecv' || offered === 'sendonly') && grants.canPublish !== false;
  const send = (offered === 'sendrecv' || offered === 'recvonly') && grants.canSubscribe !== false;
  return recv && send ? 'sendrecv' : recv ? 'recvonly' : send ? 'sendonly' : 'inactive';
};

export interface OfferedMedia {
  kind: 'audio' | 'video';
  mid?: string;
  direction: Direction;
  /** Codecs we support, in the peer's order of preference. */
  codecs: Array<'vp8' | 'h264' | 'opus' | 'pcmu' | 'pcma'>;
}

export interface OfferSummary {
  media: OfferedMedia[];
}

export const MAX_SDP_BYTES = 64 * 1024;

const H264_OK = (fmtp: string | undefined) =>
  !!fmtp && /packetization-mode=1/.test(fmtp) && /profile-level-id=42(e0|c0|00|80)[0-9a-f]{2}/i.test(fmtp);

/**
 * An offer's lines: the session part, and one list per m-line (each starting with its m= line).
 * Throws a 400 for a body that is not an SDP offer at all.
 */
export function splitOffer(sdp: string): { session: string[]; sections: string[][] } {
  if (!sdp || !sdp.trim()) throw new BadRequestError('the request body must be an SDP offer; it was empty', 'bad_sdp');
  if (sdp.length > MAX_SDP_BYTES) throw new BadRequestError(`the SDP offer is over ${MAX_SDP_BYTES} bytes`, 'bad_sdp');
  const lines = sdp.split(/\r?\n/).filter((l) => l.length > 0);
  if (lines[0] !== 'v=0' || !lines.some((l) => l.startsWith('o=')) || !lines.some((l) => l.startsWith('m='))) {
    throw new BadRequestError('the body is not an SDP offer: it must start with "v=0" and have o= and m= lines', 'bad_sdp');
  }
  const sessionEnd = lines.findIndex((l) => l.startsWith('m='));
  const sections: string[][] = [];
  for (const l of lines.slice(sessionEnd)) {
    if (l.startsWith('m=')) sections.push([l]);
    else sections[sections.length - 1].push(l);
  }
  return { session: lines.slice(0, sessionEnd), sections };
}

export function inspectOffer(sdp: string): OfferSummary {
  const { session, sections } = splitOffer(sdp);
  const has = (sec: string[], prefix: string) => sec.some((l) => l.startsWith(prefix)) || session.some((l) => l.startsWith(prefix));
  const media: OfferedMedia[] = [];
  // Each m-line names itself with its own a=mid (RFC 8843). werift takes two that share one, and
  // then waits 5 s for a transport that never comes (found by test/api/hostile.test.ts).
  const mids = new Set<string>();
  for (const sec of sections) {
    const mid = sec.find((l) => l.startsWith('a=mid:'))?.slice(6);
    if (mid === undefined) continue;
    if (mids.has(mid)) throw new BadRequestError(`two m-lines share a=mid:${mid.slice(0, 32)}; each must have its own`, 'bad_sdp');
    mids.add(mid);
  }
  for (const sec of sections) {
    const m = /^m=(\w+) (\d+) ([\w/]+) (.*)$/.exec(sec[0]);
    if (!m) throw new BadRequestError(`malformed media line "${sec[0].slice(0, 80)}"`, 'bad_sdp');
    const [, kind, port, , fmts] = m;
    if (kind !== 'audio' && kind !== 'video') continue; // data channels and others are ignored
    if (port === '0') continue; // rejected m-line
    if (!has(sec, 'a=ice-ufrag:') || !has(sec, 'a=ice-pwd:')) {
      throw new BadRequestError(`the ${kind} m-line has no ICE credentials (a=ice-ufrag and a=ice-pwd)`, 'bad_sdp');
    }
    if (!has(sec, 'a=fingerprint:')) throw new BadRequestError(`the ${kind} m-line has no DTLS fingerprint (a=fingerprint)`, 'bad_sdp');
    const rtpmap = new Map<string, string>();
    const fmtp = new Map<string, string>();
    for (const l of sec) {
      const r = /^a=rtpmap:(\d+) ([^/]+)\//.exec(l);
      if (r) rtpmap.set(r[1], r[2].toLowerCase());
      const f = /^a=fmtp:(\d+) (.*)$/.exec(l);
      if (f) fmtp.set(f[1], f[2]);
    }
    const codecs: OfferedMedia['codecs'] = [];
    for (const pt of fmts.trim().split(/\s+/)) {
      const name = rtpmap.get(pt);
      const c =
        name === 'vp8' ? 'vp8' : name === 'opus' || name === 'pcmu' || name === 'pcma' ? name : name === 'h264' && H264_OK(fmtp.get(pt)) ? 'h264' : undefined;
      const audio = c === 'opus' || c === 'pcmu' || c === 'pcma';
      if (c && !codecs.includes(c) && audio === (kind === 'audio')) codecs.push(c);
    }
    const dir = sec.find((l) => /^a=(sendrecv|sendonly|recvonly|inactive)$/.test(l));
    media.push({
      kind,
      mid: sec.find((l) => l.startsWith('a=mid:'))?.slice(6),
      direction: (dir?.slice(2) as Direction) ?? 'sendrecv',
      codecs,
    });
  }
  if (media.length === 0) throw new BadRequestError('the offer has no audio or video m-line', 'bad_sdp');
  const usable = media.filter((m) => m.codecs.length > 0);
  if (usable.length === 0) {
    const kinds = media.map((m) => m.kind).join(' and ');
    throw new UnsupportedMediaError(
      `no common codec for ${kinds}: this server speaks VP8, H.264 (constrained baseline, packetization-mode=1), Opus, PCMU and PCMA`,
    );
  }
  return { media };
}

/** Drops mDNS (.local) candidates: resolving them takes multicast, and the peer's checks reach us anyway. */
export function stripMdnsCandidates(sdp: string): string {
  return sdp
    .split(/\r?\n/)
    .filter((l) => !(l.startsWith('a=candidate:') && /\s[^\s]+\.local\s/.test(l)))
    .join('\r\n');
}
