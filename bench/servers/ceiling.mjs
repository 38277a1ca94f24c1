// The reference ceiling: the least a client_credentials server can do on this machine, written
// with the best technique we know. In-memory clients (secrets stored as HMAC-SHA256 under a pepper,
// compared in constant time), Fastify + @fastify/formbody like Tessera, an RFC 9068 JWT whose
// Ed25519 signature is computed on libuv's thread pool (node:crypto's callback form, as Tessera's
// src/platform/crypto/jws.ts does), so the event loop parses and answers other requests meanwhile;
// the JOSE header is encoded once.
//
// The HTTP floor, POST /token-floor: the same Fastify + formbody route answering a token signed
// once at start, with no client look-up, no secret check, no signature: what HTTP, the framework
// and the load generator alone cost on this machine.
//
// Also a JWT-verifying forward-auth route and a JWKS, as ceilings for those scenarios.
//
// env: PORT, BENCH_CLIENTS_FILE (JSON [[client_id, client_secret], ...])
import { createHmac, KeyObject, randomBytes, randomUUID, sign as nodeSign, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import Fastify from 'fastify';
import formbody from '@fastify/formbody';
import { exportJWK, generateKeyPair, jwtVerify } from 'jose';

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const audience = 'urn:bench:api';
const pepper = randomBytes(32);
const hash = (secret) => createHmac('sha256', pepper).update(secret).digest();

const clients = new Map();
for (const [id, secret] of JSON.parse(readFileSync(process.env.BENCH_CLIENTS_FILE, 'utf8'))) {
  clients.set(id, { id, secretHash: hash(secret), scope: 'api' });
}

// extractable: node:crypto signs with the KeyObject behind jose's CryptoKey.
const { privateKey, publicKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
const signingKey = KeyObject.from(privateKey);
const kid = randomUUID();
const headerB64 = Buffer.from(JSON.stringify({ alg: 'EdDSA', typ: 'at+jwt', kid })).toString('base64url');

/** Compact JWS, the signature computed off the event loop. */
function signJwt(payload) {
  const input = `${headerB64}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}`;
  return new Promise((resolve, reject) =>
    nodeSign(null, Buffer.from(input), signingKey, (err, sig) => (err ? reject(err) : resolve(`${input}.${sig.toString('base64url')}`))),
  );
}
const jwks = { keys: [{ ...(await exportJWK(publicKey)), kid, alg: 'EdDSA', use: 'sig' }] };

const app = Fastify({ logger: false });
await app.register(formbody);

function unauthorized(reply) {
  return reply.code(401).header('www-authenticate', 'Basic').send({ error: 'invalid_client' });
}

app.post('/token', async (request, reply) => {
  let id;
  let secret;
  const auth = request.headers.authorization;
  if (auth?.startsWith('Basic ')) {
    const decoded = Buffer.from(auth.slice(6), 'base64').toString();
    const i = decoded.indexOf(':');
    id = decodeURIComponent(decoded.slice(0, i));
    secret = decodeURIComponent(decoded.slice(i + 1));
  } else {
    id = request.body?.client_id;
    secret = request.body?.client_secret;
  }
  const client = typeof id === 'string' ? clients.get(id) : undefined;
  if (!client || typeof secret !== 'string' || !timingSafeEqual(hash(secret), client.secretHash)) return unauthorized(reply);
  if (request.body?.grant_type !== 'client_credentials') return reply.code(400).send({ error: 'unsupported_grant_type' });
  const now = Math.floor(Date.now() / 1000);
  const token = await signJwt({
    iss: issuer,
    sub: client.id,
    aud: audience,
    iat: now,
    exp: now + 3600,
    jti: randomUUID(),
    client_id: client.id,
    scope: client.scope,
  });
  return reply.header('cache-control', 'no-store').send({ access_token: token, token_type: 'Bearer', expires_in: 3600, scope: client.scope });
});

const floorNow = Math.floor(Date.now() / 1000);
const floorBody = {
  access_token: await signJwt({
    iss: issuer,
    sub: 'floor',
    aud: audience,
    iat: floorNow,
    exp: floorNow + 86400,
    jti: randomUUID(),
    client_id: 'floor',
    scope: 'api',
  }),
  token_type: 'Bearer',
  expires_in: 3600,
  scope: 'api',
};
app.post('/token-floor', async (request, reply) => {
  if (request.body?.grant_type !== 'client_credentials') return reply.code(400).send({ error: 'unsupported_grant_type' });
  return reply.header('cache-control', 'no-store').send(floorBody);
});

app.get('/verify', async (request, reply) => {
  const auth = request.headers.authorization;
  if (!auth?.startsWith('Bearer ')) return reply.code(401).header('www-authenticate', 'Bearer').send();
  try {
    const { payload } = await jwtVerify(auth.slice(7), publicKey, { issuer, audience, typ: 'at+jwt', algorithms: ['EdDSA'] });
    return reply.code(200).header('x-client-id', String(payload.client_id)).header('x-scope', String(payload.scope)).send();
  } catch {
    return reply.code(401).header('www-authenticate', 'Bearer error="invalid_token"').send();
  }
});

app.get('/jwks', async (_request, reply) => reply.header('cache-control', 'public, max-age=300').send(jwks));
app.get('/healthz', async () => ({ status: 'ok' }));

// The same accept queue as Tessera (src/server.ts), so a connection burst treats both alike.
await app.listen({ port, host: '127.0.0.1', backlog: 4096 });
const stop = () => app.close().then(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
