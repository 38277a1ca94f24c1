import t from 'tap';
import { bearer, harness, TestClock } from './support/helper.js';
import { basic, claimsOf, createSdkKey, getToken, oauthPost } from './support/oauth-helper.js';

t.test('introspection by an SDK key: its own tokens active with their claims, everything else {active:false}', async (t) => {
  const h = await harness(t);
  const user = await h.user();
  const key = await createSdkKey(h, user);
  const other = await createSdkKey(h, await h.user());
  const auth = { authorization: basic(key.client_id, key.client_secret) };
  const token = await getToken(h, key);
  const c = claimsOf(token);

  const res = await oauthPost(h, '/oauth/introspect', { token, token_type_hint: 'access_token' }, auth);
  t.equal(res.statusCode, 200, res.body);
  t.equal(res.headers['cache-control'], 'no-store');
  t.same(res.json(), {
    active: true,
    scope: c.scope,
    client_id: key.client_id,
    sub: key.client_id,
    exp: c.exp,
    iat: c.iat,
    iss: h.config.issuer,
    aud: h.config.issuer,
    jti: c.jti,
    token_type: 'Bearer',
    org_id: null,
    user_id: user.id,
    credential_kind: 'client',
  });
  // client_secret_post works too.
  const post = await oauthPost(h, '/oauth/introspect', { token, client_id: key.client_id, client_secret: key.client_secret });
  t.equal(post.json().active, true);

  const foreign = await getToken(h, other);
  const apiToken = await h.apiToken(user);
  for (const [name, tok] of Object.entries({
    foreign,
    garbage: 'garbage',
    dots: 'a.b.c',
    apiToken,
    tampered: token.slice(0, -4) + (token.endsWith('AAAA') ? 'BBBB' : 'AAAA'),
  })) {
    const r = await oauthPost(h, '/oauth/introspect', { token: tok }, auth);
    t.equal(r.statusCode, 200, name);
    t.same(r.json(), { active: false }, name);
  }

  // Missing token, and unauthenticated callers.
  const missing = await oauthPost(h, '/oauth/introspect', {}, auth);
  t.equal(missing.statusCode, 400);
  t.same(missing.json(), { error: 'invalid_request', error_description: 'token is required' });
  const anon = await oauthPost(h, '/oauth/introspect', { token });
  t.equal(anon.statusCode, 401);
  t.equal(anon.json().error, 'invalid_client');
  const wrong = await oauthPost(h, '/oauth/introspect', { token }, { authorization: basic(key.client_id, 'nope') });
  t.equal(wrong.statusCode, 401);
});

t.test('introspection by a bearer with scope introspect or admin covers every token kind', async (t) => {
  const h = await harness(t);
  const user = await h.user();
  const key = await createSdkKey(h, user);
  const token = await getToken(h, key, { audience: 'https://qpu.example.com' });
  const introspector = await h.apiToken(await h.user(), ['introspect']);
  const admin = await h.apiToken(await h.user(), ['admin']);
  const apiOnly = await h.apiToken(user, ['api']);

  const a = await oauthPost(h, '/oauth/introspect', { token }, bearer(introspector));
  t.equal(a.json().active, true, 'any audience is reported to resource servers');
  t.equal(a.json().aud, 'https://qpu.example.com');
  const b = await oauthPost(h, '/oauth/introspect', { token: apiOnly }, bearer(admin));
  t.equal(b.json().active, true);
  t.equal(b.json().credential_kind, 'api_token');
  t.equal(b.json().sub, user.id);
  t.equal(b.json().scope, 'api');

  const denied = await oauthPost(h, '/oauth/introspect', { token }, bearer(apiOnly));
  t.equal(denied.statusCode, 403);
  t.equal(denied.json().error, 'insufficient_scope');
  const bad = await oauthPost(h, '/oauth/introspect', { token }, bearer('tsr_pat_nope'));
  t.equal(bad.statusCode, 401);
  t.equal(bad.json().error, 'invalid_token');
  t.match(bad.headers['www-authenticate'], /^Bearer /);
});

t.test('expired tokens are inactive (clock tolerance respected)', async (t) => {
  const clock = new TestClock();
  const h = await harness(t, { clock, env: { TESSERA_ACCESS_TOKEN_TTL: '60', TESSERA_CLOCK_TOLERANCE: '5' } });
  const user = await h.user();
  const key = await createSdkKey(h, user);
  const auth = { authorization: basic(key.client_id, key.client_secret) };
  const token = await getToken(h, key);
  clock.advance(63);
  t.equal((await oauthPost(h, '/oauth/introspect', { token }, auth)).json().active, true, 'within tolerance');
  t.equal((await h.inject({ method: 'GET', url: '/api/sdk-keys', headers: bearer(token) })).statusCode, 200);
  clock.advance(3);
  t.same((await oauthPost(h, '/oauth/introspect', { token }, auth)).json(), { active: false });
  t.equal((await h.inject({ method: 'GET', url: '/api/sdk-keys', headers: bearer(token) })).statusCode, 401);
});

t.test("revocation: own token denylisted on every instance; another client's token 400 and still active; unknown 200", async (t) => {
  const h = await harness(t);
  const user = await h.user();
  const key = await createSdkKey(h, user);
  const other = await createSdkKey(h, await h.user());
  const auth = { authorization: basic(key.client_id, key.client_secret) };
  const second = await h.instance();
  const token = await getToken(h, key);
  const spare = await getToken(h, key);
  t.equal((await second.inject({ method: 'GET', url: '/api/sdk-keys', headers: bearer(token) })).statusCode, 200);

  const foreign = await getToken(h, other);
  const refused = await oauthPost(h, '/oauth/revoke', { token: foreign }, auth);
  t.equal(refused.statusCode, 400);
  t.same(refused.json(), { error: 'invalid_request', error_description: 'the token was not issued to this client' });
  const stillActive = await oauthPost(h, '/oauth/introspect', { token: foreign }, { authorization: basic(other.client_id, other.client_secret) });
  t.equal(stillActive.json().active, true);

  const ok = await oauthPost(h, '/oauth/revoke', { token, token_type_hint: 'access_token' }, auth);
  t.equal(ok.statusCode, 200);
  t.equal(ok.body, '');
  t.same((await oauthPost(h, '/oauth/introspect', { token }, auth)).json(), { active: false });
  t.equal((await h.inject({ method: 'GET', url: '/api/sdk-keys', headers: bearer(token) })).statusCode, 401);
  let status = 0;
  for (let i = 0; i < 20 && status !== 401; i++) {
    await new Promise((r) => setTimeout(r, 50));
    status = (await second.inject({ method: 'GET', url: '/api/sdk-keys', headers: bearer(token) })).statusCode;
  }
  t.equal(status, 401, 'the other instance within a second');
  t.equal((await h.inject({ method: 'GET', url: '/api/sdk-keys', headers: bearer(spare) })).statusCode, 200, 'only that jti');

  const row = await h.db
    .selectFrom('revoked_tokens')
    .selectAll()
    .where('jti', '=', claimsOf(token).jti as string)
    .executeTakeFirstOrThrow();
  t.equal(row.expires_at.getTime(), (claimsOf(token).exp as number) * 1000);
  t.equal((await oauthPost(h, '/oauth/revoke', { token }, auth)).statusCode, 200, 'again: 200');
  t.equal((await oauthPost(h, '/oauth/revoke', { token: 'unknown-token' }, auth)).statusCode, 200);
  t.equal((await oauthPost(h, '/oauth/revoke', {}, auth)).statusCode, 400);
  t.equal((await oauthPost(h, '/oauth/revoke', { token: spare })).statusCode, 401);

  // A fresh instance loads the denylist at start.
  const third = await h.instance();
  t.equal((await third.inject({ method: 'GET', url: '/api/sdk-keys', headers: bearer(token) })).statusCode, 401);
});
