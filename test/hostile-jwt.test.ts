// Hostile JWTs, beyond oauth-verify.test.ts: `alg: none` in any case, hostile kids with
// no key reload and no database work, x5u, damaged signatures, claim boundaries at the clock
// tolerance, and credentials of one kind used where another is required.
import t from 'tap';
import { SignJWT, base64url, importJWK, type JWK } from 'jose';
import { bearer, countPoolConnections, harness } from './support/helper.js';
import { basic, claimsOf, createSdkKey, getToken, headerOf, oauthPost } from './support/oauth-helper.js';
import { databaseDigest, leaksInternals } from './support/db-digest.js';

function forge(header: Record<string, unknown>, payload: Record<string, unknown>, sig = ''): string {
  return `${base64url.encode(JSON.stringify(header))}.${base64url.encode(JSON.stringify(payload))}.${sig}`;
}

t.test('alg none in any spelling, hostile kids, x5u, damaged signatures: 401 everywhere, no key reload, no database work', async (t) => {
  const h = await harness(t);
  const user = await h.user();
  const key = await createSdkKey(h, user);
  const real = await getToken(h, key);
  const header = headerOf(real);
  const claims = claimsOf(real);
  const [p0, p1, sig] = real.split('.') as [string, string, string];
  await new Promise((r) => setTimeout(r, 200));
  const sigBytes = Buffer.from(sig, 'base64url');
  const flipped = Buffer.from(sigBytes);
  flipped[10] = flipped[10]! ^ 0x01;
  const attacker = await new SignJWT(claims)
    .setProtectedHeader({ alg: 'EdDSA', typ: 'at+jwt', kid: header.kid as string })
    .sign((await import('node:crypto')).generateKeyPairSync('ed25519').privateKey);

  const cases: Record<string, string> = {};
  for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
    cases[`alg ${alg}`] = forge({ ...header, alg }, claims);
    cases[`alg ${alg} with the real signature`] = forge({ ...header, alg }, claims, sig);
  }
  for (const kid of ['../../../../etc/passwd', "' or 1=1 --", 'k'.repeat(2000), '\u0000', '', 'https://evil.example/key']) {
    cases[`kid ${JSON.stringify(kid.slice(0, 24))}`] = forge({ ...header, kid }, claims, sig);
  }
  cases['kid a number'] = forge({ ...header, kid: 1 }, claims, sig);
  cases['kid an object'] = forge({ ...header, kid: { $ne: null } }, claims, sig);
  cases['kid null'] = forge({ ...header, kid: null }, claims, sig);
  cases['x5u to an attacker certificate'] = forge({ ...header, kid: 'attacker', x5u: 'https://evil.example/cert.pem' }, claims, sig);
  cases['attacker key under our kid, x5c attached'] = attacker.replace(/^[^.]+/, base64url.encode(JSON.stringify({ ...header, x5c: ['MIIB'] })));
  cases['signature truncated by one char'] = `${p0}.${p1}.${sig.slice(0, -1)}`;
  cases['signature truncated to half'] = `${p0}.${p1}.${sig.slice(0, sig.length / 2)}`;
  cases['signature empty'] = `${p0}.${p1}.`;
  cases['one signature bit flipped'] = `${p0}.${p1}.${flipped.toString('base64url')}`;
  cases['signature with a byte appended'] = `${p0}.${p1}.${Buffer.concat([sigBytes, Buffer.from([0])]).toString('base64url')}`;
  cases['payload bit flipped'] = `${p0}.${p1.slice(0, 5)}${p1[5] === 'A' ? 'B' : 'A'}${p1.slice(6)}.${sig}`;
  cases['header not JSON'] = `${base64url.encode('{"alg":')}.${p1}.${sig}`;
  cases['payload not JSON'] = `${p0}.${base64url.encode('[1,2')}.${sig}`;
  cases['payload an array'] = forge(header, [] as unknown as Record<string, unknown>, sig);
  cases['four segments'] = `${real}.x`;

  const before = await databaseDigest(h.db);
  let reloads = 0;
  const reload = h.app.oauth.keys.reload.bind(h.app.oauth.keys);
  h.app.oauth.keys.reload = async () => {
    reloads++;
    return reload();
  };
  t.teardown(() => {
    h.app.oauth.keys.reload = reload;
  });
  const auth = { authorization: basic(key.client_id, key.client_secret) };
  for (const [name, token] of Object.entries(cases)) {
    const api = await h.inject({ method: 'GET', url: '/api/sdk-keys', headers: bearer(token) });
    t.equal(api.statusCode, 401, `${name}: API 401`);
    t.equal(api.json().error, 'invalid_token', `${name}: invalid_token`);
    t.notOk(leaksInternals(api.body), `${name}: no internals`);
    const gw = await h.inject({ method: 'GET', url: '/gateway/verify', headers: bearer(token) });
    t.ok(gw.statusCode === 401 || gw.statusCode === 400, `${name}: gateway refuses`);
    const intro = await oauthPost(h, '/oauth/introspect', { token }, auth);
    t.same(intro.json(), { active: false }, `${name}: introspection inactive`);
    const rev = await oauthPost(h, '/oauth/revoke', { token }, auth);
    t.equal(rev.statusCode, 200, `${name}: revocation is a no-op`);
  }
  // A hundred more unknown kids: still no reload, no connection (no refetch storm).
  await h.app.usage.flush();
  const connections = countPoolConnections(t, h);
  for (let i = 0; i < 100; i++) {
    await h.inject({ method: 'GET', url: '/api/sdk-keys', headers: bearer(forge({ ...header, kid: `k${i}` }, claims, sig)) });
  }
  t.equal(reloads, 0, 'no signing-key reload for unknown or hostile kids');
  t.equal(connections(), 0, 'no database connection for tokens that fail verification');
  t.same(await databaseDigest(h.db), before, 'nothing written (the real token was never revoked)');
  t.equal((await h.inject({ method: 'GET', url: '/api/sdk-keys', headers: bearer(real) })).statusCode, 200, 'the real token still works');
});

t.test('iat and nbf at the clock tolerance: inside accepted, beyond refused; client_id and sub required', async (t) => {
  const h = await harness(t);
  const user = await h.user();
  const key = await createSdkKey(h, user);
  const claims = claimsOf(await getToken(h, key));
  const signer = h.app.oauth.keys.signingKey();
  const priv = await importJWK(signer.privateKey.export({ format: 'jwk' }) as JWK, 'EdDSA');
  const sign = (payload: Record<string, unknown>) => new SignJWT(payload).setProtectedHeader({ alg: 'EdDSA', kid: signer.kid, typ: 'at+jwt' }).sign(priv);
  const now = Math.floor(h.clock.now() / 1000);
  const tol = h.config.clockToleranceSeconds;
  t.equal(tol, 30, 'default tolerance');
  const status = async (p: Record<string, unknown>) => (await h.inject({ method: 'GET', url: '/api/sdk-keys', headers: bearer(await sign(p)) })).statusCode;
  t.equal(await status({ ...claims, iat: now + tol - 5, exp: now + 3600 }), 200, 'iat inside the tolerance');
  t.equal(await status({ ...claims, iat: now + tol + 5, exp: now + 3600 }), 401, 'iat beyond the tolerance');
  t.equal(await status({ ...claims, nbf: now + tol - 5 }), 200, 'nbf inside the tolerance');
  t.equal(await status({ ...claims, nbf: now + tol + 5 }), 401, 'nbf beyond the tolerance');
  t.equal(await status({ ...claims, exp: now - tol + 5 }), 200, 'exp just passed, inside the tolerance');
  t.equal(await status({ ...claims, exp: now - tol - 5 }), 401, 'exp beyond the tolerance');
  t.equal(await status({ ...claims, client_id: undefined }), 401, 'no client_id');
  t.equal(await status({ ...claims, sub: undefined }), 401, 'no sub');
  t.equal(await status({ ...claims, scope: undefined }), 401, 'no scope');
  t.equal(await status({ ...claims, iat: undefined }), 401, 'no iat');
  t.equal(await status({ ...claims, iat: String(now) }), 401, 'iat a string');
  t.ok([200, 401].includes(await status({ ...claims, exp: 1e20 })), 'a huge exp does not crash');
  t.equal(await status({ ...claims, client_id: ['x'], sub: ['x'] }), 401, 'client_id an array');
  t.equal(await status({ ...claims, aud: [h.config.issuer, 'https://other.example'] }), 401, 'aud an array (Tessera issues one audience)');
});

t.test('a session token where a client token is required, and the other way round', async (t) => {
  const h = await harness(t);
  const user = await h.user();
  const key = await createSdkKey(h, user);
  const jwt = await getToken(h, key);
  const apiToken = await h.apiToken(user, ['api', 'introspect']);
  const session = (await h.inject({ method: 'POST', url: '/api/users/loginWithToken', payload: { apiToken } })).json().id as string;
  const auth = { authorization: basic(key.client_id, key.client_secret) };

  // A session token is not an access token of this client: introspection by the client says inactive, revocation does nothing.
  t.same((await oauthPost(h, '/oauth/introspect', { token: session }, auth)).json(), { active: false });
  t.equal((await oauthPost(h, '/oauth/revoke', { token: session }, auth)).statusCode, 200);
  t.equal((await h.inject({ method: 'GET', url: '/api/users/me', headers: { 'x-access-token': session } })).statusCode, 200, 'the session lives on');
  // A session or JWT is not a client credential at the token endpoint.
  for (const cred of [session, jwt, apiToken]) {
    const res = await oauthPost(h, '/oauth/token', { grant_type: 'client_credentials' }, bearer(cred));
    t.equal(res.statusCode, 401);
    t.equal(res.json().error, 'invalid_client');
    const asSecret = await oauthPost(h, '/oauth/token', { grant_type: 'client_credentials', client_id: key.client_id, client_secret: cred });
    t.equal(asSecret.statusCode, 401);
  }
  // A JWT or a session where an API token is required (login), and a JWT where a session is required (logout).
  for (const cred of [jwt, session]) {
    const res = await h.inject({ method: 'POST', url: '/api/users/loginWithToken', payload: { apiToken: cred } });
    t.ok(res.statusCode === 401 || res.statusCode === 400, `login with ${cred.slice(0, 8)}: refused`);
  }
  const logoutJwt = await h.inject({ method: 'POST', url: '/api/users/logout', headers: bearer(jwt) });
  t.equal(logoutJwt.statusCode, 400);
  t.equal(logoutJwt.json().error, 'invalid_request');
  const logoutApi = await h.inject({ method: 'POST', url: '/api/users/logout', headers: bearer(apiToken) });
  t.equal(logoutApi.statusCode, 400, 'an API token cannot be "logged out"');
  t.equal((await h.inject({ method: 'GET', url: '/api/users/me', headers: bearer(jwt) })).statusCode, 200, 'the JWT still works');
  // Introspection with a session holding scope introspect sees the client token as active.
  const intro = await oauthPost(h, '/oauth/introspect', { token: jwt }, bearer(session));
  t.equal(intro.json().active, true);
  // Unauthenticated introspection: 401 invalid_client with a challenge.
  const anon = await oauthPost(h, '/oauth/introspect', { token: jwt });
  t.equal(anon.statusCode, 401);
  t.same(anon.json(), { error: 'invalid_client', error_description: 'client authentication failed' });
  t.match(anon.headers['www-authenticate'], /^Basic /);
});
