// DPoP (RFC 9449) end to end: a third-party client (oauth4webapi) gets DPoP-bound tokens over real
// HTTP and uses them with proofs; bearer use, replays (on this and another instance), proofs for
// another request, a wrong ath and hostile proofs are refused.
import t, { type Test } from 'tap';
import { randomUUID, createHash } from 'node:crypto';
import * as oauth from 'oauth4webapi';
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import { bearer, freePort, harness } from './support/helper.js';
import { claimsOf, createSdkKey, oauthPost, basic } from './support/oauth-helper.js';
import { ReplayGuard, pruneUsedJtis } from '../src/platform/database/replay-guard.js';

const insecure = { [oauth.allowInsecureRequests]: true } as const;

async function start(t: Test, env: Record<string, string> = {}) {
  const port = await freePort();
  const issuerUrl = `http://127.0.0.1:${port}`;
  const h = await harness(t, { env: { TESSERA_ISSUER: issuerUrl, ...env } });
  await h.app.listen({ port, host: '127.0.0.1' });
  const issuer = new URL(issuerUrl);
  const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...insecure }));
  return { h, issuerUrl, as };
}

/** A proof signed by hand, for the cases a well-behaved library never makes. */
async function proof(
  keys: { privateKey: Parameters<SignJWT['sign']>[0]; jwk: JWK },
  claims: Record<string, unknown>,
  header: Record<string, unknown> = {},
  alg = 'ES256',
): Promise<string> {
  return new SignJWT({ jti: randomUUID(), iat: Math.floor(Date.now() / 1000), ...claims })
    .setProtectedHeader({ typ: 'dpop+jwt', alg, jwk: keys.jwk, ...header })
    .sign(keys.privateKey);
}

const ath = (token: string) => createHash('sha256').update(token).digest('base64url');

async function ecKeys() {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  return { privateKey, jwk: await exportJWK(publicKey) };
}

t.test('oauth4webapi gets a DPoP-bound token and uses it at /gateway/verify and /api/users/me; bearer use and replays are refused', async (t) => {
  const { h, issuerUrl, as } = await start(t);
  const key = await createSdkKey(h, await h.user(), { name: 'dpop', scopes: ['api'] });
  const client: oauth.Client = { client_id: key.client_id };
  const keyPair = await oauth.generateKeyPair('ES256');
  const DPoP = oauth.DPoP(client, keyPair);

  t.ok(as.dpop_signing_alg_values_supported?.includes('ES256'), 'metadata lists the DPoP algorithms');

  const res = await oauth.clientCredentialsGrantRequest(as, client, oauth.ClientSecretBasic(key.client_secret), { scope: 'api' }, { DPoP, ...insecure });
  const tokens = await oauth.processClientCredentialsResponse(as, client, res);
  t.equal(tokens.token_type, 'dpop');
  const jkt = await DPoP.calculateThumbprint();
  t.same(claimsOf(tokens.access_token).cnf, { jkt }, 'cnf.jkt is the thumbprint of the proof key');

  // Proofs recorded as they are sent, to replay them.
  const sent: Array<{ url: string; method: string; headers: Record<string, string> }> = [];
  const recording = {
    ...insecure,
    DPoP,
    [oauth.customFetch]: (url: string, init: RequestInit) => {
      sent.push({ url, method: init.method ?? 'GET', headers: Object.fromEntries(new Headers(init.headers).entries()) });
      return fetch(url, init);
    },
  };
  const verify = await oauth.protectedResourceRequest(tokens.access_token, 'GET', new URL(`${issuerUrl}/gateway/verify`), undefined, undefined, recording);
  t.equal(verify.status, 200);
  t.equal(verify.headers.get('x-tessera-client-id'), key.client_id);
  const me = await oauth.protectedResourceRequest(tokens.access_token, 'GET', new URL(`${issuerUrl}/api/users/me`), undefined, undefined, recording);
  t.equal(me.status, 200);
  t.match(sent[0]!.headers.authorization, /^DPoP /);

  // The same token as a bearer token.
  for (const url of ['/gateway/verify', '/api/users/me']) {
    const r = await fetch(`${issuerUrl}${url}`, { headers: bearer(tokens.access_token) });
    t.equal(r.status, 401, `${url} as Bearer`);
    t.match(r.headers.get('www-authenticate'), /^DPoP .*error="invalid_token"/);
    t.equal(((await r.json()) as { error: string }).error, 'invalid_token');
  }
  const xat = await fetch(`${issuerUrl}/gateway/verify`, { headers: { 'x-access-token': tokens.access_token } });
  t.equal(xat.status, 401, 'x-access-token is bearer use too');

  // A replayed proof, on this instance and on another one.
  const first = sent[0]!;
  const replay = await fetch(first.url, { headers: first.headers });
  t.equal(replay.status, 401);
  t.match(replay.headers.get('www-authenticate'), /error="invalid_dpop_proof"/);
  const other = await h.instance();
  const sent2 = sent[1]!;
  const replay2 = await other.inject({ method: 'GET', url: '/api/users/me', headers: sent2.headers });
  t.equal(replay2.statusCode, 401, 'replay on a second instance');
  t.equal(replay2.json().error, 'invalid_dpop_proof');

  // A fresh proof made for the second instance's own use works there.
  const fresh = await oauth.protectedResourceRequest(tokens.access_token, 'GET', new URL(`${issuerUrl}/gateway/verify`), undefined, undefined, {
    ...insecure,
    DPoP,
    [oauth.customFetch]: async (url: string, init: RequestInit) => {
      const r = await other.inject({ method: 'GET', url: new URL(url).pathname, headers: Object.fromEntries(new Headers(init.headers).entries()) });
      return new Response(r.statusCode === 200 ? null : r.body, { status: r.statusCode, headers: r.headers as Record<string, string> });
    },
  });
  t.equal(fresh.status, 200, 'a new proof is accepted by the other instance');

  // Proofs for another URL, another method, a wrong ath, another key.
  const mine = { privateKey: keyPair.privateKey, jwk: await exportJWK(keyPair.publicKey) };
  const dpopAuth = { authorization: `DPoP ${tokens.access_token}` };
  const base = { htm: 'GET', htu: `${issuerUrl}/gateway/verify`, ath: ath(tokens.access_token) };
  const cases: Array<[string, string, Record<string, unknown>]> = [
    ['another URL', 'invalid_dpop_proof', { ...base, htu: `${issuerUrl}/api/users/me` }],
    ['another method', 'invalid_dpop_proof', { ...base, htm: 'POST' }],
    ['a wrong ath', 'invalid_dpop_proof', { ...base, ath: ath('another token') }],
    ['no ath', 'invalid_dpop_proof', { htm: base.htm, htu: base.htu }],
    ['an old iat', 'invalid_dpop_proof', { ...base, iat: Math.floor(Date.now() / 1000) - 3600 }],
  ];
  for (const [what, error, claims] of cases) {
    const r = await fetch(`${issuerUrl}/gateway/verify`, { headers: { ...dpopAuth, dpop: await proof(mine, claims) } });
    t.equal(r.status, 401, what);
    t.equal(((await r.json()) as { error: string }).error, error, what);
  }
  const ok = await fetch(`${issuerUrl}/gateway/verify?scope=api`, { headers: { ...dpopAuth, dpop: await proof(mine, base) } });
  t.equal(ok.status, 200, 'a hand-made proof of the same shape is accepted (htu ignores the query)');
  const otherKey = await ecKeys();
  const stranger = await fetch(`${issuerUrl}/gateway/verify`, { headers: { ...dpopAuth, dpop: await proof(otherKey, base) } });
  t.equal(stranger.status, 401, 'a proof by another key');
  t.equal(((await stranger.json()) as { error: string }).error, 'invalid_dpop_proof');
  const noProof = await fetch(`${issuerUrl}/gateway/verify`, { headers: dpopAuth });
  t.equal(noProof.status, 401);

  // A bearer token under the DPoP scheme is refused.
  const plain = await oauth.processClientCredentialsResponse(
    as,
    client,
    await oauth.clientCredentialsGrantRequest(as, client, oauth.ClientSecretBasic(key.client_secret), { scope: 'api' }, insecure),
  );
  t.equal(plain.token_type, 'bearer');
  const mixed = await fetch(`${issuerUrl}/gateway/verify`, {
    headers: { authorization: `DPoP ${plain.access_token}`, dpop: await proof(mine, { ...base, ath: ath(plain.access_token) }) },
  });
  t.equal(mixed.status, 401, 'a bearer token with the DPoP scheme');

  // Introspection reports the binding.
  const intro = await oauthPost(h, '/oauth/introspect', { token: tokens.access_token }, { authorization: basic(key.client_id, key.client_secret) });
  t.equal(intro.json().token_type, 'DPoP');
  t.same(intro.json().cnf, { jkt });
});

t.test('dpop_bound_access_tokens refuses bearer issuance for that key, set at creation or by PATCH', async (t) => {
  const { h, as } = await start(t);
  const user = await h.user();
  const key = await createSdkKey(h, user, { name: 'bound', scopes: ['api'], dpop_bound_access_tokens: true });
  const client: oauth.Client = { client_id: key.client_id };
  const created = await h.inject({ method: 'GET', url: `/api/sdk-keys/${key.client_id}`, headers: bearer(await h.apiToken(user, ['api'])) });
  t.equal(created.json().dpop_bound_access_tokens, true);
  const refused = await oauthPost(h, '/oauth/token', { grant_type: 'client_credentials' }, { authorization: basic(key.client_id, key.client_secret) });
  t.equal(refused.statusCode, 400);
  t.equal(refused.json().error, 'invalid_request');
  const DPoP = oauth.DPoP(client, await oauth.generateKeyPair('EdDSA'));
  const ok = await oauth.processClientCredentialsResponse(
    as,
    client,
    await oauth.clientCredentialsGrantRequest(as, client, oauth.ClientSecretPost(key.client_secret), {}, { DPoP, ...insecure }),
  );
  t.equal(ok.token_type, 'dpop');

  const other = await createSdkKey(h, user, { name: 'later', scopes: ['api'] });
  t.equal(
    (await oauthPost(h, '/oauth/token', { grant_type: 'client_credentials' }, { authorization: basic(other.client_id, other.client_secret) })).statusCode,
    200,
  );
  const token = await h.apiToken(user, ['api']);
  const patched = await h.inject({
    method: 'PATCH',
    url: `/api/sdk-keys/${other.client_id}`,
    headers: bearer(token),
    payload: { dpop_bound_access_tokens: true },
  });
  t.equal(patched.statusCode, 200);
  t.equal(patched.json().dpop_bound_access_tokens, true);
  const after = await oauthPost(h, '/oauth/token', { grant_type: 'client_credentials' }, { authorization: basic(other.client_id, other.client_secret) });
  t.equal(after.statusCode, 400, 'bearer issuance refused after the PATCH');
});

t.test('server nonces: use_dpop_nonce at the token endpoint and the API, and oauth4webapi retries with the nonce', async (t) => {
  const { h, issuerUrl, as } = await start(t, { TESSERA_DPOP_NONCE: 'on' });
  const key = await createSdkKey(h, await h.user(), { name: 'nonce', scopes: ['api'] });
  const client: oauth.Client = { client_id: key.client_id };
  const DPoP = oauth.DPoP(client, await oauth.generateKeyPair('ES256'));
  const request = () => oauth.clientCredentialsGrantRequest(as, client, oauth.ClientSecretBasic(key.client_secret), {}, { DPoP, ...insecure });
  let tokens: oauth.TokenEndpointResponse;
  try {
    tokens = await oauth.processClientCredentialsResponse(as, client, await request());
    t.fail('the first request has no nonce');
    return;
  } catch (err) {
    t.ok(oauth.isDPoPNonceError(err), 'use_dpop_nonce');
    tokens = await oauth.processClientCredentialsResponse(as, client, await request());
  }
  t.equal(tokens.token_type, 'dpop');
  // The nonce the token endpoint gave is valid at the API too (every instance makes the same ones).
  const r = await oauth.protectedResourceRequest(tokens.access_token, 'GET', new URL(`${issuerUrl}/gateway/verify`), undefined, undefined, {
    DPoP,
    ...insecure,
  });
  t.equal(r.status, 200);
  // A proof without nonce at the API: 401 use_dpop_nonce with the nonce to use.
  const keys = await ecKeys();
  const noNonce = await fetch(`${issuerUrl}/gateway/verify`, {
    headers: {
      authorization: `DPoP ${tokens.access_token}`,
      dpop: await proof(keys, { htm: 'GET', htu: `${issuerUrl}/gateway/verify`, ath: ath(tokens.access_token) }),
    },
  });
  t.equal(noNonce.status, 401);
  t.match(noNonce.headers.get('www-authenticate'), /error="use_dpop_nonce"/);
  t.ok(noNonce.headers.get('dpop-nonce'));
});

t.test('hostile proofs at the token endpoint and the gateway: 4xx with RFC-shaped bodies', async (t) => {
  const { h, issuerUrl } = await start(t);
  const key = await createSdkKey(h, await h.user(), { name: 'hostile', scopes: ['api'] });
  const keys = await ecKeys();
  const { privateKey: edPrivate, publicKey: edPublic } = await generateKeyPair('EdDSA', { extractable: true });
  const edPrivateJwk = await exportJWK(edPrivate);
  const tokenClaims = { htm: 'POST', htu: `${issuerUrl}/oauth/token` };
  const unsigned = (header: object, payload: object) =>
    `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.`;
  const hostile: Array<[string, string]> = [
    ['not a JWT', 'not-a-jwt'],
    ['three dots of nothing', '..'],
    ['huge', 'a'.repeat(12_000)],
    ['alg none', unsigned({ typ: 'dpop+jwt', alg: 'none', jwk: keys.jwk }, { ...tokenClaims, jti: randomUUID(), iat: Math.floor(Date.now() / 1000) })],
    [
      'HS256',
      await new SignJWT({ ...tokenClaims, jti: randomUUID(), iat: Math.floor(Date.now() / 1000) })
        .setProtectedHeader({ typ: 'dpop+jwt', alg: 'HS256', jwk: { kty: 'oct', k: 'c2VjcmV0' } as unknown as JWK })
        .sign(new TextEncoder().encode('secret-secret-secret-secret-secret')),
    ],
    ['unknown alg', unsigned({ typ: 'dpop+jwt', alg: 'XX999', jwk: keys.jwk }, tokenClaims)],
    ['jwk with d', await proof({ privateKey: edPrivate, jwk: edPrivateJwk }, tokenClaims, {}, 'EdDSA')],
    ['wrong typ', await proof(keys, tokenClaims, { typ: 'JWT' })],
    ['no jwk', await proof(keys, tokenClaims, { jwk: undefined })],
    ['jwk of another key', await proof({ privateKey: keys.privateKey, jwk: await exportJWK(edPublic) }, tokenClaims)],
    ['no jti', await proof(keys, { ...tokenClaims, jti: undefined })],
    ['future iat', await proof(keys, { ...tokenClaims, iat: Math.floor(Date.now() / 1000) + 3600 })],
    ['jwk an array', unsigned({ typ: 'dpop+jwt', alg: 'ES256', jwk: [] }, tokenClaims)],
  ];
  for (const [what, value] of hostile) {
    const r = await oauthPost(h, '/oauth/token', { grant_type: 'client_credentials' }, { authorization: basic(key.client_id, key.client_secret), dpop: value });
    t.equal(r.statusCode, 400, `token endpoint: ${what}`);
    t.equal(r.json().error, 'invalid_dpop_proof', `token endpoint: ${what}`);
    t.type(r.json().error_description, 'string');
    const g = await h.inject({ method: 'GET', url: '/gateway/verify', headers: { authorization: 'DPoP abc.def.ghi', dpop: value } });
    t.equal(g.statusCode, 401, `gateway: ${what}`);
    t.match(g.headers['www-authenticate'], /^DPoP /);
  }
  const malformedScheme = await h.inject({ method: 'GET', url: '/gateway/verify', headers: { authorization: 'DPoP', dpop: 'x' } });
  t.equal(malformedScheme.statusCode, 401);
});

t.test('the replay record: first use wins across instances, nothing raw is stored, expired rows are pruned', async (t) => {
  const h = await harness(t);
  const other = await h.instance();
  const later = new Date(Date.now() + 60_000);
  const results = await Promise.all([h.app.replayGuard, other.replayGuard, h.app.replayGuard].map((g) => g.firstUse('dpop', 'thumb', 'jti-1', later)));
  t.same(results.filter(Boolean).length, 1, 'one of three concurrent uses wins');
  t.equal(await new ReplayGuard(h.db).firstUse('client_assertion', 'thumb', 'jti-1', later), true, 'namespaces are apart');
  t.equal(await h.app.replayGuard.firstUse('dpop', 'other-key', 'jti-1', later), true, 'the same jti from another key is another proof');
  const rows = await h.db.selectFrom('used_jtis').selectAll().execute();
  t.equal(rows.length, 3);
  t.ok(
    rows.every((r) => r.jti_hash.length === 32 && !r.jti_hash.toString('latin1').includes('jti-1')),
    'only hashes are stored',
  );
  await h.app.replayGuard.firstUse('dpop', 'thumb', 'old', new Date(Date.now() - 1000));
  t.equal(await pruneUsedJtis(h.db, new Date()), 1, 'the expired record goes');
  t.equal((await h.db.selectFrom('used_jtis').selectAll().execute()).length, 3);
});
