// Credential rules: a credential never outlives, or exceeds the scopes of, the credential that
// created it; SDK-key JWTs never manage credentials; suspension cuts off every earlier token for good.
import t, { type Test } from 'tap';
import type { LightMyRequestResponse } from 'fastify';
import { bearer, harness, type Harness } from './support/helper.js';
import { basic, claimsOf, createSdkKey, getToken, oauthPost, type SdkKey } from './support/oauth-helper.js';
import { issueApiToken } from '../src/api-tokens/api-tokens.service.js';
import { SDK_KEY_TOKEN_CANNOT_MANAGE } from '../src/platform/errors/api-error.js';
import type { User } from '../src/identity/users.repository.js';

const CC = { grant_type: 'client_credentials' };
const REFUSED_JWT = { error: 'insufficient_scope', message: SDK_KEY_TOKEN_CANNOT_MANAGE };
const IONQ = { credential: { api_key: 'ionq-secret-value-123456' } };

async function apiTokenWith(h: Harness, u: User, scopes: string[], expiresInSeconds: number | null) {
  const { token, row } = await issueApiToken(h.db, h.config.pepper, {
    userId: u.id,
    name: 'root',
    scopes,
    expiresAt: expiresInSeconds === null ? null : new Date(h.clock.now() + expiresInSeconds * 1000),
  });
  return { token, id: row.id, expiresAt: row.expires_at };
}

async function login(h: Pick<Harness, 'inject'>, apiToken: string): Promise<string> {
  const res = await h.inject({ method: 'POST', url: '/api/users/loginWithToken', payload: { apiToken } });
  if (res.statusCode !== 200) throw new Error(`login: ${res.statusCode} ${res.body}`);
  return res.json().id;
}

async function createdToken(h: Pick<Harness, 'inject'>, cred: string, payload: Record<string, unknown>) {
  const res = await h.inject({ method: 'POST', url: '/api/access-tokens', headers: bearer(cred), payload: { name: 'child', scopes: ['api'], ...payload } });
  if (res.statusCode !== 201) throw new Error(`create token: ${res.statusCode} ${res.body}`);
  return res.json() as { id: string; token: string; expires_at: string | null; scopes: string[] };
}

async function createdKey(h: Pick<Harness, 'inject'>, cred: string, payload: Record<string, unknown> = {}): Promise<SdkKey & { expires_at: string | null }> {
  const res = await h.inject({ method: 'POST', url: '/api/sdk-keys', headers: bearer(cred), payload: { name: 'k', ...payload } });
  if (res.statusCode !== 201) throw new Error(`create key: ${res.statusCode} ${res.body}`);
  return res.json();
}

const me = (h: Pick<Harness, 'inject'>, cred: string) => h.inject({ method: 'GET', url: '/api/users/me', headers: bearer(cred) }).then((r) => r.statusCode);
const mint = (h: Pick<Harness, 'inject'>, key: SdkKey) =>
  oauthPost(h, '/oauth/token', CC, { authorization: basic(key.client_id, key.client_secret) }).then((r) => r.statusCode);

function refusedAsJwt(t: Test, res: LightMyRequestResponse, what: string) {
  t.equal(res.statusCode, 403, `${what}: 403`);
  t.same(res.json(), REFUSED_JWT, `${what}: insufficient_scope, saying why`);
  t.equal(
    res.headers['www-authenticate'],
    `Bearer realm="tessera", error="insufficient_scope", error_description="${SDK_KEY_TOKEN_CANNOT_MANAGE}"`,
    `${what}: RFC 6750 challenge`,
  );
}

t.test('an SDK-key JWT cannot create, change or delete credentials; it still reads', async (t) => {
  const h = await harness(t);
  const u = await h.user();
  const lab = await h.org('Lab', [[u, 'owner']]);
  const other = await h.user();
  const pat = await apiTokenWith(h, u, ['api', 'quantum_tokens'], null);
  const key = await createdKey(h, pat.token);
  const jwt = await getToken(h, key);
  await h.inject({ method: 'PUT', url: '/api/provider-tokens/ionq', headers: bearer(pat.token), payload: IONQ });

  const writes: Array<[string, string, unknown?]> = [
    ['POST', '/api/access-tokens', { name: 'forever', scopes: ['api'] }],
    ['POST', '/api/sdk-keys', { name: 'another' }],
    ['PATCH', `/api/sdk-keys/${key.client_id}`, { status: 'enabled' }],
    ['DELETE', `/api/sdk-keys/${key.client_id}`],
    ['DELETE', `/api/access-tokens/${pat.id}`],
    ['PUT', '/api/provider-tokens/ionq', { credential: { api_key: 'attacker-value-1234567' } }],
    ['DELETE', '/api/provider-tokens/ionq'],
    ['PUT', `/api/organizations/${lab.id}/provider-tokens/ionq`, IONQ],
    ['DELETE', `/api/organizations/${lab.id}/provider-tokens/ionq`],
    ['PUT', `/api/organizations/${lab.id}/members/${other.id}`, { role: 'owner' }],
    ['DELETE', `/api/organizations/${lab.id}/members/${u.id}`],
  ];
  for (const [method, url, payload] of writes) {
    const res = await h.inject({ method: method as 'POST', url, headers: bearer(jwt), ...(payload ? { payload: payload as object } : {}) });
    refusedAsJwt(t, res, `${method} ${url}`);
  }
  for (const url of [
    '/api/users/me',
    '/api/users/me/organizations',
    '/api/sdk-keys',
    '/api/access-tokens',
    '/api/provider-tokens',
    `/api/organizations/${lab.id}/members`,
  ]) {
    t.equal((await h.inject({ method: 'GET', url, headers: bearer(jwt) })).statusCode, 200, `GET ${url} still reads`);
  }
  t.equal((await h.db.selectFrom('api_tokens').select('id').execute()).length, 1, 'no API token was created');
  t.equal((await h.db.selectFrom('sdk_keys').select('id').execute()).length, 1, 'no SDK key was created');
  t.equal((await h.db.selectFrom('memberships').select('user_id').execute()).length, 1, 'nobody was added');
  t.equal(await me(h, pat.token), 200, 'the API token was not revoked');
});

t.test('revoking an API token revokes what was created from it, transitively: tokens, SDK keys and their JWTs, sessions', async (t) => {
  const h = await harness(t);
  const other = await h.instance();
  const u = await h.user();
  const op = await apiTokenWith(h, u, ['api', 'quantum_tokens'], null);
  const root = await apiTokenWith(h, u, ['api', 'quantum_tokens'], null);
  const child = await createdToken(h, root.token, { scopes: ['api', 'quantum_tokens'] });
  const grandchild = await createdToken(h, child.token, {});
  const key = await createdKey(h, grandchild.token);
  const jwt = await getToken(h, key);
  const session = await login(h, child.token);
  const rows = await h.db.selectFrom('api_tokens').select(['id', 'parent_api_token_id']).execute();
  const parentOf = new Map(rows.map((r) => [r.id, r.parent_api_token_id]));
  t.equal(parentOf.get(root.id), null, 'operator-made: no parent');
  t.equal(parentOf.get(child.id), root.id);
  t.equal(parentOf.get(grandchild.id), child.id);
  const keyRow = await h.db.selectFrom('sdk_keys').select(['parent_api_token_id']).executeTakeFirstOrThrow();
  t.equal(keyRow.parent_api_token_id, grandchild.id);
  for (const cred of [child.token, grandchild.token, jwt, session]) t.equal(await me(other, cred), 200, 'works before (and is cached on the other instance)');

  const del = await h.inject({ method: 'DELETE', url: `/api/access-tokens/${root.id}`, headers: bearer(op.token) });
  t.equal(del.statusCode, 204);
  for (const [name, cred] of [
    ['child', child.token],
    ['grandchild', grandchild.token],
    ["JWT of the grandchild's key", jwt],
    ['session of the child', session],
  ]) {
    t.equal(await me(h, cred!), 401, `${name}: refused at once`);
    let status = 0;
    for (let i = 0; i < 20 && status !== 401; i++) {
      status = await me(other, cred!);
      if (status !== 401) await new Promise((r) => setTimeout(r, 50));
    }
    t.equal(status, 401, `${name}: refused by the other instance`);
  }
  t.equal(await mint(h, key), 401, 'the SDK key no longer mints');
  t.equal((await h.db.selectFrom('sdk_keys').select('id').execute()).length, 0, 'the SDK key is deleted (its slot is free again)');
  t.equal(await me(h, op.token), 200, 'unrelated tokens live on');

  const audit = await h.db
    .selectFrom('audit_events')
    .select(['action', 'target_id', 'details'])
    .where('action', 'in', ['api_token.revoke', 'sdk_key.delete'])
    .orderBy('id')
    .execute();
  t.same(
    audit.map((a) => [a.action, a.target_id, (a.details as { reason?: string }).reason ?? null]),
    [
      ['api_token.revoke', root.id, null],
      ['api_token.revoke', child.id, 'parent_revoked'],
      ['api_token.revoke', grandchild.id, 'parent_revoked'],
      ['sdk_key.delete', key.client_id, 'parent_revoked'],
    ],
  );
});

t.test("a token created by a session dies with the session's API token (not with the session)", async (t) => {
  const h = await harness(t);
  const u = await h.user();
  const pat = await apiTokenWith(h, u, ['api'], null);
  const session = await login(h, pat.token);
  const res = await h.inject({
    method: 'POST',
    url: '/api/access-tokens',
    headers: { 'x-access-token': session },
    payload: { name: 'from session', scopes: ['api'] },
  });
  t.equal(res.statusCode, 201);
  const made = res.json();
  const row = await h.db.selectFrom('api_tokens').select(['parent_api_token_id']).where('id', '=', made.id).executeTakeFirstOrThrow();
  t.equal(row.parent_api_token_id, pat.id, 'the session acts for its API token');
  const key = await createdKey(h, session);
  t.equal((await h.db.selectFrom('sdk_keys').select('parent_api_token_id').executeTakeFirstOrThrow()).parent_api_token_id, pat.id);

  t.equal((await h.inject({ method: 'POST', url: '/api/users/logout', headers: { 'x-access-token': session } })).statusCode, 204);
  t.equal(await me(h, made.token), 200, 'a logout ends the session only');

  const keeper = await h.apiToken(u);
  t.equal((await h.inject({ method: 'DELETE', url: `/api/access-tokens/${pat.id}`, headers: bearer(keeper) })).statusCode, 204);
  t.equal(await me(h, made.token), 401, 'revoking the API token the session came from revokes it');
  t.equal(await mint(h, key), 401, 'and the SDK key it made');
});

t.test("a child never outlives its parent: expiry capped (API tokens, SDK keys, their JWTs) and scopes within the parent's", async (t) => {
  const h = await harness(t);
  const u = await h.user();
  const parent = await apiTokenWith(h, u, ['api', 'quantum_tokens'], 1800);
  const parentExp = parent.expiresAt!.toISOString();

  t.equal((await createdToken(h, parent.token, {})).expires_at, parentExp, "no expiry asked: the parent's");
  t.equal((await createdToken(h, parent.token, { expires_in: 86400 })).expires_at, parentExp, "later than the parent: the parent's");
  const short = await createdToken(h, parent.token, { expires_in: 600 });
  t.equal(short.expires_at, new Date(h.clock.now() + 600_000).toISOString(), 'earlier: as asked');

  const session = await login(h, parent.token);
  t.equal((await createdToken(h, session, {})).expires_at, parentExp, "through a session: the API token's expiry, not the session's");

  const narrow = await createdToken(h, parent.token, { scopes: ['api'] });
  const wider = await h.inject({
    method: 'POST',
    url: '/api/access-tokens',
    headers: bearer(narrow.token),
    payload: { name: 'x', scopes: ['api', 'quantum_tokens'] },
  });
  t.equal(wider.statusCode, 403);
  t.same(wider.json(), { error: 'forbidden', message: "a token cannot grant scopes its creator's credential lacks: quantum_tokens" });
  const widerKey = await h.inject({ method: 'POST', url: '/api/sdk-keys', headers: bearer(narrow.token), payload: { name: 'x', scopes: ['quantum_tokens'] } });
  t.equal(widerKey.statusCode, 403);
  t.equal(widerKey.json().error, 'forbidden');

  const key = await createdKey(h, parent.token);
  t.equal(key.expires_at, parentExp, 'the SDK key expires with its parent');
  const listed = (await h.inject({ method: 'GET', url: `/api/sdk-keys/${key.client_id}`, headers: bearer(parent.token) })).json();
  t.equal(listed.expires_at, parentExp);
  const tok = await oauthPost(h, '/oauth/token', CC, { authorization: basic(key.client_id, key.client_secret) });
  t.equal(tok.json().expires_in, 1800, 'the JWT lives as long as the key, not the 1 h TTL');
  const jwt = tok.json().access_token as string;
  t.equal(claimsOf(jwt).exp, Math.floor(parent.expiresAt!.getTime() / 1000));

  h.clock.advance(1800);
  t.equal(await me(h, parent.token), 401, 'the parent expired');
  t.equal(await me(h, session), 401);
  t.equal(await me(h, narrow.token), 401, 'its children with it');
  t.equal(await me(h, jwt), 401, 'and the JWT of its key');
  const refused = await oauthPost(h, '/oauth/token', CC, { authorization: basic(key.client_id, key.client_secret) });
  t.equal(refused.statusCode, 401);
  t.equal(refused.json().error, 'invalid_client', 'an expired key mints nothing');
});

t.test('a creation racing the revocation of its parent leaves no live child', async (t) => {
  const h = await harness(t);
  const u = await h.user();
  const op = await apiTokenWith(h, u, ['api'], null);
  for (let round = 0; round < 5; round++) {
    const root = await apiTokenWith(h, u, ['api'], null);
    const child = await createdToken(h, root.token, {});
    const creations = Array.from({ length: 6 }, () =>
      h.inject({ method: 'POST', url: '/api/access-tokens', headers: bearer(child.token), payload: { name: 'race', scopes: ['api'] } }),
    );
    const revoke = h.inject({ method: 'DELETE', url: `/api/access-tokens/${root.id}`, headers: bearer(op.token) });
    const results = await Promise.all([...creations, revoke]);
    t.equal(results.at(-1)!.statusCode, 204);
    for (const r of results.slice(0, -1)) t.ok([201, 401].includes(r.statusCode), `creation: ${r.statusCode}`);
  }
  const live = await h.db.selectFrom('api_tokens').select('id').where('revoked_at', 'is', null).execute();
  t.same(
    live.map((r) => r.id),
    [op.id],
    'every token created from a revoked one is revoked',
  );
});

t.test('a JWT minted before suspension stays refused after reactivation; the old SDK key no longer mints', async (t) => {
  const h = await harness(t);
  const other = await h.instance();
  const operator = await h.user();
  const admin = await h.apiToken(operator, ['admin']);
  const u = await h.user();
  const key = await createSdkKey(h, u);
  const jwt = await getToken(h, key);
  t.equal(await me(h, jwt), 200);
  t.equal(await me(other, jwt), 200, 'cached on another instance');

  h.clock.advance(2);
  const suspended = await h.inject({ method: 'POST', url: `/admin/users/${u.id}/suspend`, headers: bearer(admin) });
  t.equal(suspended.statusCode, 200);
  h.clock.advance(2);
  t.equal((await h.inject({ method: 'POST', url: `/admin/users/${u.id}/activate`, headers: bearer(admin) })).json().status, 'active');

  t.equal(await me(h, jwt), 401, 'the old JWT stays refused after reactivation');
  let status = 0;
  for (let i = 0; i < 20 && status !== 401; i++) {
    status = await me(other, jwt);
    if (status !== 401) await new Promise((r) => setTimeout(r, 50));
  }
  t.equal(status, 401, 'on every instance');
  t.equal(await mint(h, key), 401, 'the old SDK key no longer mints');
  t.equal(await mint(other, key), 401);

  // The user re-enables the key with a new API token: new tokens work, the old JWT stays dead.
  const fresh = await h.apiToken(u);
  const shown = await h.inject({ method: 'GET', url: `/api/sdk-keys/${key.client_id}`, headers: bearer(fresh) });
  t.equal(shown.json().status, 'disabled', 'reactivation re-enables nothing');
  h.clock.advance(2);
  t.equal((await h.inject({ method: 'PATCH', url: `/api/sdk-keys/${key.client_id}`, headers: bearer(fresh), payload: { status: 'enabled' } })).statusCode, 200);
  const newJwt = await getToken(h, key);
  t.equal(await me(h, newJwt), 200, 'tokens minted after re-enabling work');
  t.equal(await me(h, jwt), 401, 'the JWT from before the suspension does not');

  const audit = await h.db
    .selectFrom('audit_events')
    .select(['action', 'target_id', 'details'])
    .where('action', 'in', ['user.suspend', 'sdk_key.disable'])
    .orderBy('id')
    .execute();
  t.same(
    audit.map((a) => [a.action, a.target_id]),
    [
      ['sdk_key.disable', key.client_id],
      ['user.suspend', u.id],
    ],
  );
  t.match(audit[1]!.details, { sdk_keys_disabled: 1 });
});
