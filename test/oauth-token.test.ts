import t from 'tap';
import { bearer, countPoolConnections, harness } from './support/helper.js';
import { basic, claimsOf, createSdkKey, FORM, getToken, headerOf, oauthPost } from './support/oauth-helper.js';

const CC = { grant_type: 'client_credentials' };

t.test('client_secret_basic and client_secret_post both get an RFC 9068 access token', async (t) => {
  const h = await harness(t);
  const user = await h.user();
  const org = await h.org('Only org', [[user, 'member']]);
  const key = await createSdkKey(h, user);
  t.match(key.client_id, /^s_[0-9a-f-]{36}$/);
  t.ok(key.client_secret.length >= 43, 'secret carries >= 256 bits');

  const viaBasic = await oauthPost(h, '/oauth/token', CC, { authorization: basic(key.client_id, key.client_secret) });
  t.equal(viaBasic.statusCode, 200, viaBasic.body);
  t.equal(viaBasic.headers['cache-control'], 'no-store');
  t.equal(viaBasic.headers.pragma, 'no-cache');
  const body = viaBasic.json();
  t.same(Object.keys(body).sort(), ['access_token', 'expires_in', 'scope', 'token_type']);
  t.equal(body.token_type, 'Bearer');
  t.equal(body.expires_in, 3600);
  t.equal(body.scope, 'api quantum_tokens');

  const header = headerOf(body.access_token);
  t.same(Object.keys(header).sort(), ['alg', 'kid', 'typ']);
  t.equal(header.typ, 'at+jwt');
  t.equal(header.alg, 'EdDSA');
  const jwks = (await h.inject({ method: 'GET', url: '/.well-known/jwks.json' })).json();
  t.ok(
    jwks.keys.some((k: { kid: string }) => k.kid === header.kid),
    'signed with a published kid',
  );

  const c = claimsOf(body.access_token);
  t.same(Object.keys(c).sort(), ['aud', 'client_id', 'exp', 'iat', 'iss', 'jti', 'org_id', 'scope', 'sub']);
  t.equal(c.iss, h.config.issuer);
  t.equal(c.sub, key.client_id);
  t.equal(c.client_id, key.client_id);
  t.equal(c.aud, h.config.issuer);
  t.equal(c.scope, 'api quantum_tokens');
  t.equal(c.org_id, org.id, "the owner's only organization");
  t.equal((c.exp as number) - (c.iat as number), 3600);
  t.equal(c.iat, Math.floor(h.clock.now() / 1000));

  const viaPost = await oauthPost(h, '/oauth/token', { ...CC, client_id: key.client_id, client_secret: key.client_secret });
  t.equal(viaPost.statusCode, 200, viaPost.body);
  t.not(claimsOf(viaPost.json().access_token).jti, c.jti, 'every token has its own jti');

  // Basic with a body client_id naming the same client is fine.
  const both = await oauthPost(h, '/oauth/token', { ...CC, client_id: key.client_id }, { authorization: basic(key.client_id, key.client_secret) });
  t.equal(both.statusCode, 200);
});

t.test('the token is a bearer credential on the API with its scopes and the key owner', async (t) => {
  const h = await harness(t);
  const user = await h.user();
  const key = await createSdkKey(h, user);
  const token = await getToken(h, key);
  const list = await h.inject({ method: 'GET', url: '/api/sdk-keys', headers: bearer(token) });
  t.equal(list.statusCode, 200, list.body);
  t.equal(list.json().sdk_keys[0].client_id, key.client_id);

  // A token narrowed to quantum_tokens lacks api.
  const narrow = await getToken(h, key, { scope: 'quantum_tokens' });
  t.equal(claimsOf(narrow).scope, 'quantum_tokens');
  const denied = await h.inject({ method: 'GET', url: '/api/sdk-keys', headers: bearer(narrow) });
  t.equal(denied.statusCode, 403);
  t.equal(denied.json().error, 'insufficient_scope');

  // A token for another audience is not for Tessera's API.
  const other = await getToken(h, key, { audience: 'https://backend.example.com' });
  t.equal(claimsOf(other).aud, 'https://backend.example.com');
  const wrongAud = await h.inject({ method: 'GET', url: '/api/sdk-keys', headers: bearer(other) });
  t.equal(wrongAud.statusCode, 401);
  const viaResource = await getToken(h, key, { resource: 'https://qpu.example.com/api' });
  t.equal(claimsOf(viaResource).aud, 'https://qpu.example.com/api');
});

t.test("org_id: null with several organizations, the key's explicit organization when set", async (t) => {
  const h = await harness(t);
  const user = await h.user();
  const a = await h.org('A', [[user, 'member']]);
  await h.org('B', [[user, 'owner']]);
  const plain = await createSdkKey(h, user, { name: 'plain' });
  t.equal(claimsOf(await getToken(h, plain)).org_id, null);
  const pinned = await createSdkKey(h, user, { name: 'pinned', organization_id: a.id });
  t.equal(claimsOf(await getToken(h, pinned)).org_id, a.id);

  const stranger = await h.user();
  const token = await h.apiToken(stranger);
  const res = await h.inject({ method: 'POST', url: '/api/sdk-keys', headers: bearer(token), payload: { name: 'x', organization_id: a.id } });
  t.equal(res.statusCode, 403, 'not a member of that organization');
});

t.test('RFC 6749 §5.2 errors, each with its exact body', async (t) => {
  const h = await harness(t);
  const user = await h.user();
  const key = await createSdkKey(h, user);
  const auth = { authorization: basic(key.client_id, key.client_secret) };
  const expectError = async (res: Awaited<ReturnType<typeof oauthPost>>, status: number, error: string, description?: RegExp) => {
    t.equal(res.statusCode, status, `${error}: ${res.body}`);
    const b = res.json();
    t.equal(b.error, error);
    t.same(Object.keys(b).sort(), ['error', 'error_description']);
    if (description) t.match(b.error_description, description);
    t.equal(res.headers['cache-control'], 'no-store');
  };

  await expectError(
    await oauthPost(h, '/oauth/token', { ...CC, client_id: key.client_id, client_secret: key.client_secret }, auth),
    400,
    'invalid_request',
    /one client authentication method/,
  );
  await expectError(
    await h.inject({
      method: 'POST',
      url: `/oauth/token?client_id=${key.client_id}&client_secret=${key.client_secret}`,
      headers: { 'content-type': FORM },
      payload: 'grant_type=client_credentials',
    }),
    400,
    'invalid_request',
    /not in the URL|never in the URL/,
  );
  await expectError(
    await oauthPost(
      h,
      '/oauth/token',
      [
        ['grant_type', 'client_credentials'],
        ['grant_type', 'client_credentials'],
      ],
      auth,
    ),
    400,
    'invalid_request',
    /grant_type was sent more than once/,
  );
  await expectError(
    await oauthPost(
      h,
      '/oauth/token',
      [
        ['grant_type', 'client_credentials'],
        ['scope', 'api'],
        ['scope', 'api'],
      ],
      auth,
    ),
    400,
    'invalid_request',
    /scope was sent more than once/,
  );
  await expectError(await oauthPost(h, '/oauth/token', {}, auth), 400, 'invalid_request', /grant_type is required/);
  await expectError(await oauthPost(h, '/oauth/token', { grant_type: 'password' }, auth), 400, 'unsupported_grant_type');
  await expectError(await oauthPost(h, '/oauth/token', { grant_type: 'authorization_code', code: 'x' }, auth), 400, 'unsupported_grant_type');
  await expectError(await oauthPost(h, '/oauth/token', { ...CC, scope: 'admin' }, auth), 400, 'invalid_scope');
  await expectError(await oauthPost(h, '/oauth/token', { ...CC, scope: 'api "bad' }, auth), 400, 'invalid_scope');
  await expectError(await oauthPost(h, '/oauth/token', { ...CC, resource: 'not a uri' }, auth), 400, 'invalid_target');
  await expectError(await oauthPost(h, '/oauth/token', { ...CC, resource: 'https://a.example/#frag' }, auth), 400, 'invalid_target');
  await expectError(
    await oauthPost(
      h,
      '/oauth/token',
      [
        ['grant_type', 'client_credentials'],
        ['resource', 'https://qpu.example.com'],
        ['resource', 'https://backend.example.com'],
      ],
      auth,
    ),
    400,
    'invalid_target',
    /single audience/,
  );
  await expectError(
    await h.inject({ method: 'POST', url: '/oauth/token', headers: { ...auth, 'content-type': 'application/json' }, payload: JSON.stringify(CC) }),
    400,
    'invalid_request',
    /x-www-form-urlencoded/,
  );
  const big = await oauthPost(h, '/oauth/token', { ...CC, scope: 'a'.repeat(17 * 1024) }, auth);
  t.equal(big.statusCode, 413);
  t.equal(big.json().error, 'invalid_request');

  // invalid_client: unknown, wrong, disabled, none, malformed: one body, 401, a Basic challenge.
  const unknown = await oauthPost(h, '/oauth/token', CC, { authorization: basic('s_00000000-0000-4000-8000-000000000000', key.client_secret) });
  const wrong = await oauthPost(h, '/oauth/token', CC, { authorization: basic(key.client_id, key.client_secret + 'x') });
  const wrongPost = await oauthPost(h, '/oauth/token', { ...CC, client_id: key.client_id, client_secret: 'nope' });
  const none = await oauthPost(h, '/oauth/token', CC);
  const idOnly = await oauthPost(h, '/oauth/token', { ...CC, client_id: key.client_id });
  const notBasic = await oauthPost(h, '/oauth/token', CC, { authorization: 'Bearer abc' });
  const garbled = await oauthPost(h, '/oauth/token', CC, { authorization: 'Basic !!!' });
  const malformedId = await oauthPost(h, '/oauth/token', CC, { authorization: basic('someone', 'x') });
  const token = await h.apiToken(user);
  await h.inject({ method: 'PATCH', url: `/api/sdk-keys/${key.client_id}`, headers: bearer(token), payload: { status: 'disabled' } });
  const disabled = await oauthPost(h, '/oauth/token', CC, auth);
  for (const [name, res] of Object.entries({ unknown, wrong, wrongPost, none, idOnly, notBasic, garbled, malformedId, disabled })) {
    t.equal(res.statusCode, 401, name);
    t.same(res.json(), { error: 'invalid_client', error_description: 'client authentication failed' }, name);
    t.equal(res.headers['www-authenticate'], 'Basic realm="tessera"', name);
  }
});

t.test('TESSERA_AUDIENCES: only listed audiences besides the issuer; unset allows none, "*" any', async (t) => {
  const issuer = 'http://localhost:8080';
  const audOf = async (h: Awaited<ReturnType<typeof harness>>, auth: Record<string, string>, params: Record<string, string>) => {
    const res = await oauthPost(h, '/oauth/token', { ...CC, ...params }, auth);
    return res.statusCode === 200 ? claimsOf(res.json().access_token).aud : `${res.statusCode} ${res.json().error}`;
  };
  const setUp = async (audiences: string) => {
    const h = await harness(t, { env: { TESSERA_AUDIENCES: audiences } });
    const key = await createSdkKey(h, await h.user());
    return { h, auth: { authorization: basic(key.client_id, key.client_secret) } };
  };

  const none = await setUp('');
  t.equal(await audOf(none.h, none.auth, {}), issuer, 'no audience asked: the issuer');
  t.equal(await audOf(none.h, none.auth, { resource: issuer }), issuer, 'the issuer by name');
  t.equal(await audOf(none.h, none.auth, { audience: 'https://qpu.example.com' }), '400 invalid_target');
  t.equal(await audOf(none.h, none.auth, { resource: 'https://qpu.example.com' }), '400 invalid_target');
  const refused = await oauthPost(none.h, '/oauth/token', { ...CC, resource: 'https://qpu.example.com' }, none.auth);
  t.match(refused.json().error_description, /TESSERA_AUDIENCES/);

  const listed = await setUp('https://qpu.example.com/api, urn:tessera:backend');
  t.equal(await audOf(listed.h, listed.auth, { resource: 'https://qpu.example.com/api' }), 'https://qpu.example.com/api');
  t.equal(await audOf(listed.h, listed.auth, { audience: 'urn:tessera:backend' }), 'urn:tessera:backend');
  t.equal(await audOf(listed.h, listed.auth, { resource: 'https://qpu.example.com/api/' }), '400 invalid_target', 'exact match only');
  t.equal(await audOf(listed.h, listed.auth, { resource: 'https://qpu.example.com' }), '400 invalid_target');

  const any = await setUp('*');
  t.equal(await audOf(any.h, any.auth, { resource: 'https://anything.example/x' }), 'https://anything.example/x');
});

t.test("a suspended owner's key authenticates no more", async (t) => {
  const h = await harness(t);
  const user = await h.user();
  const key = await createSdkKey(h, user);
  const token = await getToken(h, key);
  await h.db.updateTable('users').set({ status: 'suspended' }).where('id', '=', user.id).execute();
  h.app.oauth.clients.invalidateUser(user.id);
  const res = await oauthPost(h, '/oauth/token', CC, { authorization: basic(key.client_id, key.client_secret) });
  t.equal(res.statusCode, 401);
  const api = await h.inject({ method: 'GET', url: '/api/sdk-keys', headers: bearer(token) });
  t.equal(api.statusCode, 401);
});

t.test('a cached client is authenticated without Postgres, and last_used_at is stamped in batches', async (t) => {
  const h = await harness(t);
  const user = await h.user();
  const key = await createSdkKey(h, user);
  // Let the create's own change event arrive (it drops the entry once), then warm the cache.
  await new Promise((r) => setTimeout(r, 300));
  await getToken(h, key);
  // From here on, token requests take no database connection at all.
  const connections = countPoolConnections(t, h);
  for (let i = 0; i < 20; i++) await getToken(h, key);
  t.equal(connections(), 0, 'no connection taken for a cached client');
  await h.app.usage.flush();
  const row = await h.db.selectFrom('sdk_keys').select('last_used_at').where('client_id', '=', key.client_id).executeTakeFirstOrThrow();
  t.ok(row.last_used_at, 'last_used_at stamped by the batch');
});
