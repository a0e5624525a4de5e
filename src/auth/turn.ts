import { createHmac } from 'node:crypto';

/**
 * TURN credentials for a peer, in the "TURN REST API" form that coturn checks with its
 * `use-auth-secret` / `static-auth-secret`: the username is the expiry (Unix seconds) and an id, the
 * password the base64 HMAC-SHA1 of the username under the shared secret. Nothing to store: coturn
 * recomputes it, and it stops working at the expiry.
 */
export function turnCredentials(secret: string, id: string, ttlSeconds: number, now = Date.now()): { username: string; credential: string } {
  const username = `${Math.floor(now / 1000) + ttlSeconds}:${id}`;
  return { username, credential: createHmac('sha1', secret).update(username).digest('base64') };
}

/** RFC 9725 section 4.6: each ICE server as a `Link` header value, with its credentials. */
export function iceServerLinks(urls: string[], creds?: { username: string; credential: string }): string[] {
  const q = (s: string) => `"${s.replace(/["\\]/g, '\\$&')}"`;
  return urls.map((url) =>
    url.startsWith('turn')
      ? `<${url}>; rel="ice-server"${creds ? `; username=${q(creds.username)}; credential=${q(creds.credential)}; credential-type="password"` : ''}`
      : `<${url}>; rel="ice-server"`,
  );
}
