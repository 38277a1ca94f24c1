// A small issuer for verifier tests: it publishes one ES256 key as its JWKS and serves a security
// events stream of SETs signed with it, as Tessera does.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Test } from 'tap';
import { exportJWK, generateKeyPair, SignJWT, type JWTPayload } from 'jose';

export const REVOKED = 'urn:tessera:secevent:access-token-revoked';

export type Key = Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];

/** An issuer that publishes one ES256 key and serves `events(lastEventId)` as its security events stream. */
export async function fakeIssuer(t: Test, events: (lastEventId: string | null) => string) {
  const published = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(published.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
  const lastIds: (string | null)[] = [];
  const server = http.createServer((req, res) => {
    if (req.url === '/.well-known/jwks.json') {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ keys: [jwk] }));
    }
    if (req.url === '/events/stream') {
      const last = (req.headers['last-event-id'] as string | undefined) ?? null;
      lastIds.push(last);
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      return res.write(events(last));
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, key: published.privateKey, jwk, lastIds };
}

/** An access token of the issuer, as Tessera signs them. */
export function accessToken(url: string, key: Key, jti: string, lifetime = '10m') {
  return new SignJWT({ client_id: 'c1', scope: 'api' })
    .setProtectedHeader({ alg: 'ES256', kid: 'k1', typ: 'at+jwt' })
    .setIssuer(url)
    .setAudience(url)
    .setSubject('u1')
    .setJti(jti)
    .setIssuedAt()
    .setExpirationTime(lifetime)
    .sign(key);
}

/**
 * A SET revoking `revokes` until `exp` (epoch s; default 10 minutes from now; null: none given);
 * `claims` override (undefined deletes) the standard ones.
 */
export function set(o: {
  url: string;
  key: Key;
  id: string;
  revokes: string;
  exp?: number | null;
  aud?: string;
  typ?: string;
  claims?: Record<string, unknown>;
}) {
  const exp = o.exp === undefined ? Math.floor(Date.now() / 1000) + 600 : o.exp;
  const payload: JWTPayload = {
    iss: o.url,
    aud: o.aud ?? 'gw-1',
    iat: Math.floor(Date.now() / 1000),
    jti: o.id,
    sub_id: { format: 'jwt_id', iss: o.url, jti: o.revokes },
    events: { [REVOKED]: { jti: o.revokes, client_id: 'c1', ...(exp === null ? {} : { exp }) } },
  };
  for (const [k, v] of Object.entries(o.claims ?? {})) {
    if (v === undefined) delete payload[k];
    else payload[k] = v;
  }
  return new SignJWT(payload).setProtectedHeader({ alg: 'ES256', kid: 'k1', typ: o.typ ?? 'secevent+jwt' }).sign(o.key);
}
