// The TypeScript client's proof of possession against a real listening Tessera: a key pair made
// locally and registered through the API (private_key_jwt, no secret anywhere), DPoP-bound tokens
// used with proofs, and the use_dpop_nonce retry at the token endpoint and at the API.
import t, { type Test } from 'tap';
import { ClientCredentials, ClientCredentialsAuth, createVerifier, DpopKey, PrivateKeyJwt } from '../src/client/index.js';
import { freePort, harness } from './support/helper.js';
import { claimsOf } from './support/oauth-helper.js';

for (const nonce of ['off', 'on']) {
  t.test(`private_key_jwt registration and DPoP-bound tokens through the client (nonces ${nonce})`, async (t) => {
    const port = await freePort();
    const issuer = `http://127.0.0.1:${port}`;
    const h = await harness(t, { env: { TESSERA_ISSUER: issuer, TESSERA_DPOP_NONCE: nonce } });
    await h.app.listen({ port, host: '127.0.0.1' });
    const user = await h.user();
    const apiToken = await h.apiToken(user, ['api']);

    const {
      auth: keyAuth,
      privateJwk,
      clientId,
    } = await PrivateKeyJwt.register({ issuer, apiToken, name: 'laptop', scopes: ['api'], dpopBoundAccessTokens: true });
    t.ok(privateJwk.d, 'the private half stays with the caller');
    const row = await h.db
      .selectFrom('sdk_keys')
      .select(['secret_hash', 'public_jwk', 'dpop_bound_access_tokens'])
      .where('client_id', '=', clientId)
      .executeTakeFirstOrThrow();
    t.equal(row.secret_hash, null);
    t.notOk(row.public_jwk && 'd' in row.public_jwk, 'only the public half is registered');
    t.equal(row.dpop_bound_access_tokens, true);

    // Without DPoP, the key gets nothing.
    const bearerOnly = new ClientCredentials({ issuer, privateKeyJwt: keyAuth });
    await t.rejects(bearerOnly.getToken(), { code: 'invalid_request' });

    const dpop = await DpopKey.generate('ES256');
    const credentials = new ClientCredentials({ issuer, privateKeyJwt: await PrivateKeyJwt.fromJwk(clientId, privateJwk), dpop });
    const token = await credentials.getAccessToken();
    t.equal(token.tokenType, 'DPoP');
    t.same(claimsOf(token.accessToken).cnf, { jkt: await dpop.thumbprint() });

    const auth = new ClientCredentialsAuth(credentials);
    for (const path of ['/api/users/me', '/gateway/verify', '/api/users/me']) {
      const res = await auth.fetch(`${issuer}${path}`);
      t.equal(res.status, 200, path);
    }
    const asBearer = await fetch(`${issuer}/api/users/me`, { headers: { authorization: `Bearer ${token.accessToken}` } });
    t.equal(asBearer.status, 401, 'the same token as a bearer token');
  });
}

// A proxy that forwards a request and then loses Tessera's answer (503 instead): the server has
// seen, and recorded, the proof and the assertion of that attempt, so a retry must make new ones.
function losingFetch(lose: Set<string>, lost: Array<{ path: string; status: number; dpop: string | null }>) {
  return async (input: string | URL, init?: RequestInit): Promise<Response> => {
    const path = new URL(String(input)).pathname;
    const res = await fetch(input, init);
    if (!lose.has(path)) return res;
    lose.delete(path);
    await res.arrayBuffer();
    lost.push({ path, status: res.status, dpop: new Headers(init?.headers).get('dpop') });
    return new Response(JSON.stringify({ error: 'temporarily_unavailable' }), { status: 503, headers: { 'content-type': 'application/json' } });
  };
}

for (const nonce of ['off', 'on']) {
  t.test(`a DPoP-bound key discovers its organization with proofs, and retries with new ones (nonces ${nonce})`, async (t) => {
    const port = await freePort();
    const issuer = `http://127.0.0.1:${port}`;
    const h = await harness(t, { env: { TESSERA_ISSUER: issuer, TESSERA_DPOP_NONCE: nonce } });
    await h.app.listen({ port, host: '127.0.0.1' });
    const user = await h.user();
    // Two organizations: the key's tokens carry no org_id, so the client asks the API.
    const orgs = [await h.org('Photon Lab', [[user, 'owner']]), await h.org('Ion Trap Lab', [[user, 'member']])];
    const apiToken = await h.apiToken(user, ['api']);
    const { auth: keyAuth } = await PrivateKeyJwt.register({ issuer, apiToken, name: 'runner', scopes: ['api'], dpopBoundAccessTokens: true });

    const lost: Array<{ path: string; status: number; dpop: string | null }> = [];
    const lose = new Set(['/oauth/token', '/api/users/me/organizations']);
    const dpop = await DpopKey.generate('ES256');
    const credentials = new ClientCredentials({
      issuer,
      privateKeyJwt: keyAuth,
      dpop,
      env: {},
      fetch: losingFetch(lose, lost),
      sleep: async () => undefined,
      logger: { warn: (m) => warnings.push(m) },
    });
    const warnings: string[] = [];
    const org = await credentials.organizationId();
    t.ok(org !== null && orgs.some((o) => o.id === org), 'the organization comes from /api/users/me/organizations with a DPoP-bound token');
    t.match(warnings, [/belongs to 2 organizations/]);
    t.same(
      lost.map((l) => l.path),
      ['/oauth/token', '/api/users/me/organizations'],
      'one answer of each was lost',
    );
    // With nonces on, the first token request meets use_dpop_nonce; either way the server consumed the proof.
    t.ok(lost.every((l) => l.dpop !== null && l.status !== 503));
    const token = await credentials.getAccessToken();
    t.equal(token.tokenType, 'DPoP');

    // Headers for any HTTP client: a proof per request.
    const auth = new ClientCredentialsAuth(credentials);
    await t.rejects(auth.headers(), { name: 'TesseraConfigError' }, 'a DPoP-bound token needs the request to make a proof for');
    const url = `${issuer}/api/users/me`;
    const headers = await auth.headers('GET', url);
    t.match(headers.authorization, /^DPoP /);
    t.equal((await fetch(url, { headers })).status, 200, 'headers(method, url) carry a proof for that request');
    t.equal((await fetch(url, { headers })).status, 401, 'and for that request only: sent again, the proof is a replay');
    t.equal((await credentials.authorizedRequest(url)).status, 200, 'authorizedRequest makes a proof of its own');
  });
}

/** A listening Tessera and a DPoP-bound private_key_jwt key of one scope, as the client uses it. */
async function dpopBoundKeyOf(t: Test, name: string, scope: string, env: Record<string, string> = {}) {
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const h = await harness(t, { env: { TESSERA_ISSUER: issuer, ...env } });
  await h.app.listen({ port, host: '127.0.0.1' });
  const user = await h.user();
  const { auth } = await PrivateKeyJwt.register({
    issuer,
    apiToken: await h.apiToken(user, ['api', scope]),
    name,
    scopes: [scope],
    dpopBoundAccessTokens: true,
  });
  const credentials = new ClientCredentials({ issuer, privateKeyJwt: auth, dpop: await DpopKey.generate('ES256'), env: {} });
  return { h, issuer, user, credentials };
}

t.test('the verifier introspects with a DPoP-bound SDK key: a fresh proof per introspection', async (t) => {
  const { h, issuer, user, credentials } = await dpopBoundKeyOf(t, 'gateway', 'introspect');
  const verifier = createVerifier({ issuer, audience: issuer, remote: { introspectionAuth: credentials, cacheTtlMs: 0 } });
  for (const opaque of [await h.apiToken(user, ['api']), await h.apiToken(user, ['api'])]) {
    const v = await verifier.verify(opaque);
    t.equal(v.checkedRemotely, true);
    t.equal(v.userId, user.id);
  }
  t.equal((await credentials.getAccessToken()).tokenType, 'DPoP', 'the introspecting token is DPoP-bound');
});

for (const nonce of ['off', 'on']) {
  t.test(`the revocation stream subscribes with a DPoP-bound SDK key (nonces ${nonce})`, async (t) => {
    const { issuer, credentials } = await dpopBoundKeyOf(t, 'receiver', 'events:read', { TESSERA_DPOP_NONCE: nonce });
    if (nonce === 'on') {
      // The nonce the client remembers has gone stale (the server's moved on): the stream meets use_dpop_nonce.
      await credentials.getAccessToken();
      await credentials.dpop!.nonceChallenge(issuer, new Response(null, { headers: { 'dpop-nonce': 'a-nonce-the-server-no-longer-takes' } }));
    }
    const warnings: string[] = [];
    const verifier = createVerifier({
      issuer,
      audience: issuer,
      revocations: 'stream',
      events: { auth: credentials },
      logger: { warn: (m) => warnings.push(m) },
    });
    t.teardown(() => verifier.close());
    // A deadline, not a measurement: without a proof the stream answers 401 and never goes live.
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), 30_000)));
    const outcome = await Promise.race([verifier.revocationStream!.ready().then(() => 'ready' as const), deadline]);
    clearTimeout(timer);
    t.equal(outcome, 'ready', `the stream went live (warnings: ${warnings.join('; ')})`);
    t.equal(verifier.revocationStream!.check({}, undefined), 'ok', 'live, so local checks are trusted');
    t.equal((await credentials.getAccessToken()).tokenType, 'DPoP');
    // A use_dpop_nonce answer is met by sending again with the nonce: no failed connection, and the token is kept.
    t.same(warnings, [], 'connected without a failed attempt');
  });
}
