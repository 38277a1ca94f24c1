import t from 'tap';
import { generateKeyPairSync, createHmac, sign as nodeSign } from 'node:crypto';
import { SignJWT, base64url, importJWK, type JWK } from 'jose';
import { bearer, harness } from './support/helper.js';
import { basic, claimsOf, createSdkKey, getToken, headerOf, oauthPost } from './support/oauth-helper.js';

/** A compact JWS with any header and signature bytes, as an attacker would assemble it. */
function forge(header: Record<string, unknown>, payload: Record<string, unknown>, sign: (input: string) => string): string {
  const input = `${base64url.encode(JSON.stringify(header))}.${base64url.encode(JSON.stringify(payload))}`;
  return `${input}.${sign(input)}`;
}

t.test('forged and misdirected tokens are refused by the API and by introspection', async (t) => {
  const h = await harness(t);
  const user = await h.user();
  const key = await createSdkKey(h, user);
  const real = await getToken(h, key);
  const header = headerOf(real);
  const claims = claimsOf(real);
  const jwks = (await h.inject({ method: 'GET', url: '/.well-known/jwks.json' })).json();
  const publicJwk = jwks.keys[0] as JWK;

  const attacker = generateKeyPairSync('ed25519');
  const attackerJwk = attacker.publicKey.export({ format: 'jwk' });
  const hmac = (secret: string | Buffer) => (input: string) => createHmac('sha256', secret).update(input).digest('base64url');

  const forged: Record<string, string> = {
    'alg none': forge({ ...header, alg: 'none' }, claims, () => ''),
    'alg none, no kid': forge({ alg: 'none', typ: 'at+jwt' }, claims, () => ''),
    'HS256 keyed with the public JWK JSON': forge({ ...header, alg: 'HS256' }, claims, hmac(JSON.stringify(publicJwk))),
    'HS256 keyed with the raw public key': forge({ ...header, alg: 'HS256' }, claims, hmac(Buffer.from(publicJwk.x!, 'base64url'))),
    'attacker key under our kid': await new SignJWT(claims).setProtectedHeader(header as never).sign(attacker.privateKey),
    'attacker key with embedded jwk': await new SignJWT(claims)
      .setProtectedHeader({ alg: 'EdDSA', typ: 'at+jwt', kid: 'attacker', jwk: attackerJwk as JWK })
      .sign(attacker.privateKey),
    'attacker key with jku': await new SignJWT(claims)
      .setProtectedHeader({ alg: 'EdDSA', typ: 'at+jwt', kid: header.kid as string, jku: 'https://evil.example/jwks.json' })
      .sign(attacker.privateKey),
    'unknown kid': forge({ ...header, kid: 'nope' }, claims, () => real.split('.')[2]!),
    'signature of another payload': forge(header, { ...claims, scope: 'api quantum_tokens admin' }, () => real.split('.')[2]!),
  };
  for (const [name, token] of Object.entries(forged)) {
    const api = await h.inject({ method: 'GET', url: '/api/sdk-keys', headers: bearer(token) });
    t.equal(api.statusCode, 401, `${name}: API`);
    const intro = await oauthPost(h, '/oauth/introspect', { token }, { authorization: basic(key.client_id, key.client_secret) });
    t.same(intro.json(), { active: false }, `${name}: introspection`);
  }
});

t.test('tokens signed by our own key but with wrong typ, iss, aud, times or claims are refused', async (t) => {
  const h = await harness(t);
  const user = await h.user();
  const key = await createSdkKey(h, user);
  const real = await getToken(h, key);
  const claims = claimsOf(real);
  // Sign with Tessera's real private key, to be sure only the check under test refuses.
  const signer = h.app.oauth.keys.signingKey();
  const pkcs8 = signer.privateKey.export({ format: 'jwk' });
  const priv = await importJWK(pkcs8 as JWK, 'EdDSA');
  const now = Math.floor(h.clock.now() / 1000);
  const sign = (payload: Record<string, unknown>, header: Record<string, unknown> = {}) =>
    new SignJWT(payload).setProtectedHeader({ alg: 'EdDSA', kid: signer.kid, typ: 'at+jwt', ...header } as never).sign(priv);

  // Control: our signature over the same claims verifies.
  const control = await sign(claims);
  t.equal((await h.inject({ method: 'GET', url: '/api/sdk-keys', headers: bearer(control) })).statusCode, 200, 'control');

  const bad: Record<string, string> = {
    'typ JWT': await sign(claims, { typ: 'JWT' }),
    'no typ': await sign(claims, { typ: undefined }),
    'wrong aud': await sign({ ...claims, aud: 'https://elsewhere.example' }),
    'wrong iss': await sign({ ...claims, iss: 'https://evil.example' }),
    'iss with trailing slash': await sign({ ...claims, iss: `${h.config.issuer}/` }),
    expired: await sign({ ...claims, iat: now - 7200, exp: now - 3600 }),
    'not yet valid': await sign({ ...claims, nbf: now + 3600 }),
    'issued in the future': await sign({ ...claims, iat: now + 3600, exp: now + 7200 }),
    'no exp': await sign({ ...claims, exp: undefined }),
    'no jti': await sign({ ...claims, jti: undefined }),
    'sub differs from client_id': await sign({ ...claims, sub: 'someone' }),
    'unknown client': await sign({ ...claims, client_id: 's_00000000-0000-4000-8000-000000000000', sub: 's_00000000-0000-4000-8000-000000000000' }),
    'crit header': forge({ alg: 'EdDSA', kid: signer.kid, typ: 'at+jwt', crit: ['exp2'], exp2: 1 }, claims, (input) =>
      nodeSign(null, Buffer.from(input), signer.privateKey).toString('base64url'),
    ),
  };
  for (const [name, token] of Object.entries(bad)) {
    const api = await h.inject({ method: 'GET', url: '/api/sdk-keys', headers: bearer(token) });
    t.equal(api.statusCode, 401, `${name}: API`);
    const r = await h.app.oauth.verifier.verify(token, { audience: h.config.issuer });
    t.equal(r.ok, false, `${name}: verifier`);
  }
  const r = await h.app.oauth.verifier.verify(bad['wrong aud']!, { audience: h.config.issuer });
  t.same(r, { ok: false, reason: 'audience' });
  t.same(await h.app.oauth.verifier.verify(bad.expired!, { audience: null }), { ok: false, reason: 'expired' });
});

t.test("a revoked signing key's tokens fail at once; retired keys still verify", async (t) => {
  const h = await harness(t);
  const user = await h.user();
  const key = await createSdkKey(h, user);
  const token = await getToken(h, key);
  const kid = headerOf(token).kid as string;
  // Retire it (as rotation would) and make a new active key: the old token keeps working.
  await h.db.updateTable('signing_keys').set({ state: 'retired', retired_at: new Date() }).where('kid', '=', kid).execute();
  await h.app.oauth.keys.ensureActiveKey();
  await h.app.oauth.keys.reload();
  t.not(h.app.oauth.keys.signingKey().kid, kid, 'a new key signs');
  t.equal((await h.inject({ method: 'GET', url: '/api/sdk-keys', headers: bearer(token) })).statusCode, 200, 'retired key verifies');
  const jwks = (await h.inject({ method: 'GET', url: '/.well-known/jwks.json' })).json();
  t.equal(jwks.keys.length, 2, 'both published');
  // Emergency revocation: unpublished, and its tokens fail.
  await h.db.updateTable('signing_keys').set({ state: 'revoked', revoked_at: new Date() }).where('kid', '=', kid).execute();
  await h.app.oauth.keys.reload();
  t.equal((await h.inject({ method: 'GET', url: '/api/sdk-keys', headers: bearer(token) })).statusCode, 401);
  const after = (await h.inject({ method: 'GET', url: '/.well-known/jwks.json' })).json();
  t.same(
    after.keys.map((k: { kid: string }) => k.kid),
    [h.app.oauth.keys.signingKey().kid],
  );
});

t.test('a token verified before is checked again against audience, clock, denylist and client on every call', async (t) => {
  const h = await harness(t);
  const user = await h.user();
  const apiToken = await h.apiToken(user, ['api']);
  const created = await h.inject({ method: 'POST', url: '/api/sdk-keys', headers: bearer(apiToken), payload: { name: 'memo' } });
  const key = created.json();
  const token = await getToken(h, key);
  const v = h.app.oauth.verifier;
  t.equal((await v.verify(token, { audience: h.config.issuer })).ok, true, 'first verification');
  t.equal((await v.verify(token, { audience: h.config.issuer })).ok, true, 'again');
  t.same(await v.verify(token, { audience: 'https://other.example' }), { ok: false, reason: 'audience' });
  t.equal((await v.verify(token, { audience: null })).ok, true, 'any audience (introspection)');
  const { exp } = claimsOf(token) as { exp: number };
  const back = h.clock.ms;
  h.clock.ms = (exp + h.config.clockToleranceSeconds) * 1000;
  t.same(await v.verify(token, { audience: h.config.issuer }), { ok: false, reason: 'expired' });
  h.clock.ms = back;
  t.equal((await v.verify(token, { audience: h.config.issuer })).ok, true, 'valid again at the earlier time');
  // Disabling the SDK key ends its tokens at once, memo or not.
  const off = await h.inject({ method: 'PATCH', url: `/api/sdk-keys/${key.client_id}`, headers: bearer(apiToken), payload: { status: 'disabled' } });
  t.equal(off.statusCode, 200);
  t.same(await v.verify(token, { audience: h.config.issuer }), { ok: false, reason: 'client' });
});
