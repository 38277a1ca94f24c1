// The client SDK's local verifier and Fastify plugin with DPoP-bound tokens (RFC 9449 §7), against a
// real listening Tessera: a bound token is accepted only with a proof for the request, signed by the
// bound key, once; an unbound token is refused with the DPoP scheme; the plugin answers DPoP challenges.
import t from 'tap';
import { createHash, randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import Fastify from 'fastify';
import { Redis } from 'ioredis';
import { createVerifier, redisProofReplayStore, TesseraVerifyError, type Verifier, type VerifyCallOptions } from '../src/client/index.js';
import { tesseraAuth } from '../src/client/fastify.js';
import { basic, createSdkKey, FORM, type SdkKey } from './support/oauth-helper.js';
import { liveTessera } from './support/client-helper.js';
import { binary, startRedis } from './support/cluster-helper.js';

const redisServer = binary('redis-server', '--version');

type Keys = { privateKey: Parameters<SignJWT['sign']>[0]; jwk: JWK; alg: string };

async function keyPair(alg = 'ES256'): Promise<Keys> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { privateKey, jwk: await exportJWK(publicKey), alg };
}

function proof(keys: Keys, claims: Record<string, unknown>, header: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT({ jti: randomUUID(), iat: Math.floor(Date.now() / 1000), ...claims })
    .setProtectedHeader({ typ: 'dpop+jwt', alg: keys.alg, jwk: keys.jwk, ...header })
    .sign(keys.privateKey);
}

const ath = (token: string) => createHash('sha256').update(token).digest('base64url');

/** A DPoP-bound access token for `key`, bound to `keys` (the token endpoint must answer token_type DPoP). */
async function dpopBoundToken(issuer: string, key: SdkKey, keys: Keys): Promise<string> {
  const res = await fetch(`${issuer}/oauth/token`, {
    method: 'POST',
    headers: {
      authorization: basic(key.client_id, key.client_secret),
      'content-type': FORM,
      dpop: await proof(keys, { htm: 'POST', htu: `${issuer}/oauth/token` }),
    },
    body: 'grant_type=client_credentials',
  });
  const json = (await res.json()) as { access_token: string; token_type: string };
  if (json.token_type !== 'DPoP') throw new Error(`no DPoP-bound token: ${res.status} ${JSON.stringify(json)}`);
  return json.access_token;
}

async function refusal(v: Verifier, token: string, call?: VerifyCallOptions): Promise<TesseraVerifyError> {
  try {
    await v.verify(token, call);
  } catch (err) {
    if (err instanceof TesseraVerifyError) return err;
    throw err;
  }
  throw new Error('the token was accepted');
}

t.test('a locally-verifying resource server accepts a DPoP-bound token only with a fresh proof for its request', async (t) => {
  const { h, issuer } = await liveTessera(t);
  const key = await createSdkKey(h, await h.user(), { name: 'pop', scopes: ['api'] });
  const keys = await keyPair();
  const bound = await dpopBoundToken(issuer, key, keys);
  const plainRes = await fetch(`${issuer}/oauth/token`, {
    method: 'POST',
    headers: { authorization: basic(key.client_id, key.client_secret), 'content-type': FORM },
    body: 'grant_type=client_credentials',
  });
  const plain = ((await plainRes.json()) as { access_token: string }).access_token;

  const v = createVerifier({ issuer, audience: issuer });
  t.teardown(() => v.close());
  const api = 'https://api.example/jobs';
  const call = async (claims: Record<string, unknown> = {}, signer = keys, header: Record<string, unknown> = {}) => ({
    dpop: { proof: await proof(signer, { htm: 'GET', htu: api, ath: ath(bound), ...claims }, header), method: 'GET', url: `${api}?page=2` },
  });

  const first = await call();
  const ok = await v.verify(bound, first);
  t.equal(ok.clientId, key.client_id);
  t.match(ok.claims, { cnf: { jkt: String } });

  const reasons: [string, TesseraVerifyError][] = [
    ['no proof', await refusal(v, bound)],
    ['the same proof again', await refusal(v, bound, first)],
    ['another URL', await refusal(v, bound, await call({ htu: 'https://api.example/other' }))],
    ['another method', await refusal(v, bound, await call({ htm: 'POST' }))],
    ['another access token', await refusal(v, bound, await call({ ath: ath(plain) }))],
    ['no ath', await refusal(v, bound, await call({ ath: undefined }))],
    ['an old proof', await refusal(v, bound, await call({ iat: Math.floor(Date.now() / 1000) - 600 }))],
    ['a proof from the future', await refusal(v, bound, await call({ iat: Math.floor(Date.now() / 1000) + 600 }))],
    ['another key', await refusal(v, bound, await call({}, await keyPair()))],
    ['another typ', await refusal(v, bound, await call({}, keys, { typ: 'JWT' }))],
    ['an unbound token with a proof', await refusal(v, plain, { dpop: { ...(await call()).dpop } })],
  ];
  const edKeys = await keyPair('EdDSA');
  const privateJwk = { ...edKeys.jwk, d: 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' };
  reasons.push(['a proof carrying a private key', await refusal(v, bound, await call({}, edKeys, { jwk: privateJwk }))]);
  for (const [what, err] of reasons) {
    t.equal(err.reason, 'dpop', what);
    t.equal(err.status, 401, what);
  }
  // The unbound token stays a bearer token.
  t.equal((await v.verify(plain)).clientId, key.client_id);

  // verifyRequest reads the DPoP scheme and header, and needs the request's method and URL.
  const req = async () => ({ authorization: `DPoP ${bound}`, dpop: await proof(keys, { htm: 'GET', htu: api, ath: ath(bound) }) });
  t.equal((await v.verifyRequest(await req(), { method: 'GET', url: api })).clientId, key.client_id);
  await t.rejects(v.verifyRequest(await req(), {}), /method and options\.url/);
  const reasonOf = (p: Promise<unknown>) =>
    p.then(
      () => 'accepted',
      (err: unknown) => (err instanceof TesseraVerifyError ? err.reason : String(err)),
    );
  t.equal(await reasonOf(v.verifyRequest({ authorization: `Bearer ${bound}` }, { method: 'GET', url: api })), 'dpop', 'bound token as Bearer');
  t.equal(await reasonOf(v.verifyRequest({ authorization: `DPoP ${bound}` }, { method: 'GET', url: api })), 'dpop', 'DPoP scheme without a proof');
});

t.test('the Fastify plugin: DPoP requests to a protected route, DPoP challenges when refused', async (t) => {
  const { h, issuer } = await liveTessera(t);
  const key = await createSdkKey(h, await h.user(), { name: 'pop-plugin', scopes: ['api'] });
  const keys = await keyPair('EdDSA');
  const bound = await dpopBoundToken(issuer, key, keys);

  const api = Fastify();
  await api.register(tesseraAuth, { issuer, audience: issuer });
  api.get('/jobs', { preHandler: api.tesseraAuth(['api']) }, async (request) => ({ client: request.tessera!.clientId }));
  await api.listen({ port: 0, host: '127.0.0.1' });
  t.teardown(async () => {
    await api.close();
    api.tesseraVerifier.close();
  });
  const base = `http://127.0.0.1:${(api.server.address() as { port: number }).port}`;

  const ok = await fetch(`${base}/jobs?x=1`, {
    headers: { authorization: `DPoP ${bound}`, dpop: await proof(keys, { htm: 'GET', htu: `${base}/jobs`, ath: ath(bound) }) },
  });
  t.equal(ok.status, 200);
  t.same(await ok.json(), { client: key.client_id });

  const asBearer = await fetch(`${base}/jobs`, { headers: { authorization: `Bearer ${bound}` } });
  t.equal(asBearer.status, 401);
  t.match(asBearer.headers.get('www-authenticate'), /^DPoP realm="tessera", error="invalid_token"/);
  const wrongUrl = await fetch(`${base}/jobs`, {
    headers: { authorization: `DPoP ${bound}`, dpop: await proof(keys, { htm: 'GET', htu: `${base}/other`, ath: ath(bound) }) },
  });
  t.equal(wrongUrl.status, 401);
  t.match(await wrongUrl.json(), { error: 'invalid_token', message: /another URL/ });
});

t.test('the replay memory: bounded by maxRemembered, the oldest tenth forgotten at once when full, expired proofs first', async (t) => {
  const { h, issuer } = await liveTessera(t);
  const key = await createSdkKey(h, await h.user(), { name: 'pop-memory', scopes: ['api'] });
  const keys = await keyPair();
  const bound = await dpopBoundToken(issuer, key, keys);
  let clock = Date.now();
  // 20 remembered: the tenth is 2; a proof's memory lasts maxAge + 2 * tolerance + 1 = 13 s.
  const options = { issuer, audience: issuer, now: () => clock, clockToleranceSeconds: 1, dpop: { maxRemembered: 20, maxAgeSeconds: 10 } };
  const v = createVerifier(options);
  t.teardown(() => v.close());
  const api = 'https://api.example/jobs';
  const call = async (jti: string) => ({
    dpop: { proof: await proof(keys, { jti, iat: Math.floor(clock / 1000), htm: 'GET', htu: api, ath: ath(bound) }), method: 'GET', url: api },
  });
  const outcome = (verifier: Verifier, c: VerifyCallOptions) =>
    verifier.verify(bound, c).then(
      () => 'accepted',
      (err: unknown) => (err instanceof TesseraVerifyError ? `${err.reason}: ${err.message}` : String(err)),
    );
  const replay = 'dpop: the DPoP proof was used before';

  const p: VerifyCallOptions[] = [];
  for (let i = 0; i <= 20; i++) p.push(await call(`p${i}`));
  t.equal(await outcome(v, p[0]!), 'accepted');
  t.equal(await outcome(v, p[0]!), replay, 'a replay is refused while remembered');
  for (let i = 1; i < 20; i++) t.equal(await outcome(v, p[i]!), 'accepted', `p${i}`);
  t.equal(await outcome(v, p[0]!), replay, 'the memory holds maxRemembered proofs: p0 with 19 accepted after it');

  t.equal(await outcome(v, p[20]!), 'accepted', 'a proof beyond a full memory of live proofs');
  t.equal(await outcome(v, p[2]!), replay, 'p2 stays (18 accepted since: maxRemembered - the tenth)');
  for (let i = 3; i <= 20; i++) t.equal(await outcome(v, p[i]!), replay, `p${i} stays`);
  t.equal(await outcome(v, p[1]!), 'accepted', 'the oldest tenth (p0, p1) was forgotten at once: its replay is no longer seen');
  t.equal(await outcome(v, p[1]!), replay, 'and, accepted again, it is remembered again');
  t.equal(await outcome(v, p[0]!), 'accepted', 'p0 was forgotten with p1');

  // Past the memory's lifetime every proof held has expired: the whole expired prefix goes, not a tenth of it.
  clock += 14_000;
  const r: VerifyCallOptions[] = [];
  for (let i = 0; i < 20; i++) r.push(await call(`r${i}`));
  for (let i = 0; i < 20; i++) t.equal(await outcome(v, r[i]!), 'accepted', `r${i} into a memory of expired proofs`);
  for (let i = 0; i < 20; i++) t.equal(await outcome(v, r[i]!), replay, `r${i} is remembered: only expired proofs made room`);
  t.equal(await outcome(v, p[5]!), 'dpop: the DPoP proof is invalid', 'an expired proof is refused on its iat, remembered or not');

  // A jti seen again after its entry expired (a new proof that reuses it) moves to the end of the memory.
  clock = Date.now();
  const w = createVerifier(options);
  t.teardown(() => w.close());
  t.equal(await outcome(w, await call('x')), 'accepted');
  for (let i = 0; i < 5; i++) t.equal(await outcome(w, await call(`b${i}`)), 'accepted');
  clock += 14_000;
  const x = await call('x');
  t.equal(await outcome(w, x), 'accepted', 'the jti x again, in a proof made after its entry expired');
  for (let i = 0; i < 15; i++) t.equal(await outcome(w, await call(`c${i}`)), 'accepted', `c${i}`);
  t.equal(await outcome(w, x), replay, 'x was moved to the end: the expired b0..b4 before it went, not x');
});

t.test('dpop.maxRemembered must be a positive integer', async (t) => {
  for (const maxRemembered of [0, -1, 1.5, Number.NaN]) {
    t.throws(() => createVerifier({ issuer: 'https://tessera.example', audience: 'x', dpop: { maxRemembered } }), /maxRemembered must be a positive integer/);
  }
});

t.test(
  'verifier processes sharing a Redis record of used proofs refuse a proof replayed at another one; without Redis reachable, none is accepted',
  { skip: redisServer ? false : 'redis-server is not installed (apt-get install -y redis-server)' },
  async (t) => {
    const { h, issuer } = await liveTessera(t);
    const key = await createSdkKey(h, await h.user(), { name: 'pop-shared', scopes: ['api'] });
    const keys = await keyPair();
    const bound = await dpopBoundToken(issuer, key, keys);
    const redis = await startRedis(t, redisServer!);
    // Two gateway processes: each its own verifier and Redis connection, one Redis between them.
    const clients = [0, 1].map(() => new Redis(redis.url, { maxRetriesPerRequest: 0, enableOfflineQueue: false, lazyConnect: true }));
    await Promise.all(clients.map((c) => c.connect()));
    const [a, b] = clients.map((c) => createVerifier({ issuer, audience: issuer, dpop: { replay: redisProofReplayStore(c) } }));
    const alone = createVerifier({ issuer, audience: issuer });
    t.teardown(() => {
      for (const v of [a!, b!, alone]) v.close();
      for (const c of clients) c.disconnect();
    });
    const api = 'https://api.example/jobs';
    const call = async () => ({ dpop: { proof: await proof(keys, { htm: 'GET', htu: api, ath: ath(bound) }), method: 'GET', url: api } });

    const first = await call();
    t.equal((await a!.verify(bound, first)).clientId, key.client_id, 'accepted where first presented');
    t.equal((await refusal(b!, bound, first)).reason, 'dpop', 'the same proof at the other process is refused');
    t.equal((await refusal(a!, bound, first)).reason, 'dpop', 'and again at the first');
    t.equal((await alone.verify(bound, first)).clientId, key.client_id, 'a verifier without the shared record cannot know (what the option is for)');
    const second = await call();
    t.equal((await b!.verify(bound, second)).clientId, key.client_id, 'a fresh proof is accepted at either');
    t.equal((await refusal(a!, bound, second)).reason, 'dpop');
    const records = await clients[0]!.keys('tessera:dpop-proof:*');
    t.equal(records.length, 2, 'one record per proof, under the prefix');
    for (const r of records) t.ok((await clients[0]!.pttl(r)) > 0, 'each record expires');

    await redis.stop();
    const down = await refusal(a!, bound, await call());
    t.equal(down.reason, 'unavailable', 'Redis unreachable: refused, never accepted unchecked');
    t.equal(down.status, 503);
  },
);
