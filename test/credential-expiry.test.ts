// Chosen expiry dates on SDK keys and API tokens, and regenerating an API token: an expired
// credential is refused everywhere it was accepted, nothing it created outlives it, and a
// regenerated token's old value stops at once with everything made from it.
import t from 'tap';
import { bearer, harness, type Harness } from './support/helper.js';
import { basic, claimsOf, oauthPost, type SdkKey } from './support/oauth-helper.js';

const iso = (ms: number) => new Date(ms).toISOString();

async function owner(h: Harness): Promise<string> {
  return h.apiToken(await h.user(), ['api', 'quantum_tokens']);
}

const tokenRequest = (h: Harness, key: SdkKey) =>
  oauthPost(h, '/oauth/token', { grant_type: 'client_credentials' }, { authorization: basic(key.client_id, key.client_secret) });

const me = (h: Harness, token: string) => h.inject({ method: 'GET', url: '/api/users/me', headers: bearer(token) });
const verify = (h: Harness, token: string) => h.inject({ method: 'GET', url: '/gateway/verify', headers: bearer(token) });
const login = (h: Harness, apiToken: string) => h.inject({ method: 'POST', url: '/api/users/loginWithToken', payload: { apiToken } });

t.test('an SDK key with expires_at: tokens capped at it, invalid_client after it', async (t) => {
  const h = await harness(t);
  const tok = await owner(h);
  const at = h.clock.now() + 30 * 60_000; // sooner than the default one-hour token lifetime
  const res = await h.inject({ method: 'POST', url: '/api/sdk-keys', headers: bearer(tok), payload: { name: 'short', expires_at: iso(at) } });
  t.equal(res.statusCode, 201);
  t.equal(res.json().expires_at, iso(at), 'shown in the representation');
  const key: SdkKey = res.json();
  const issued = await tokenRequest(h, key);
  t.equal(issued.statusCode, 200);
  const exp = claimsOf(issued.json().access_token).exp as number;
  t.ok(exp <= Math.floor(at / 1000), 'the token never outlives the key');
  t.equal((await me(h, issued.json().access_token)).statusCode, 200);

  h.clock.advance(30 * 60 + 1);
  const late = await tokenRequest(h, key);
  t.equal(late.statusCode, 401);
  t.equal(late.json().error, 'invalid_client', 'an expired key authenticates nothing');
});

t.test("an SDK key's chosen expiry never passes its parent token's", async (t) => {
  const h = await harness(t);
  const u = await h.user();
  const parentExpiry = h.clock.now() + 3600_000;
  const parent = await h.inject({
    method: 'POST',
    url: '/api/access-tokens',
    headers: bearer(await h.apiToken(u, ['api', 'quantum_tokens'])),
    payload: { name: 'parent', scopes: ['api', 'quantum_tokens'], expires_at: iso(parentExpiry) },
  });
  t.equal(parent.statusCode, 201);
  t.equal(parent.json().expires_at, iso(parentExpiry));
  const res = await h.inject({
    method: 'POST',
    url: '/api/sdk-keys',
    headers: bearer(parent.json().token),
    payload: { name: 'k', expires_at: iso(h.clock.now() + 86400_000) },
  });
  t.equal(res.statusCode, 201);
  t.equal(res.json().expires_at, iso(parentExpiry), "capped at the parent's expiry");
});

t.test('an expired API token gets 401 invalid_token everywhere, and its sessions end with it', async (t) => {
  const h = await harness(t);
  const u = await h.user();
  const at = h.clock.now() + 2 * 3600_000;
  const res = await h.inject({
    method: 'POST',
    url: '/api/access-tokens',
    headers: bearer(await h.apiToken(u, ['api'])),
    payload: { name: 'dated', scopes: ['api'], expires_at: iso(at) },
  });
  t.equal(res.statusCode, 201);
  const token = res.json().token as string;
  const session = await login(h, token);
  t.equal(session.statusCode, 200);
  t.ok(session.json().ttl <= 2 * 3600, "the session's ttl never passes the API token's expiry");
  const sessionToken = session.json().id as string;
  t.equal((await me(h, token)).statusCode, 200);
  t.equal((await verify(h, sessionToken)).statusCode, 200);

  h.clock.advance(2 * 3600 + 1);
  for (const [what, r] of [
    ['API: the token', await me(h, token)],
    ['gateway: the token', await verify(h, token)],
    ['API: its session', await me(h, sessionToken)],
    ['gateway: its session', await verify(h, sessionToken)],
  ] as const) {
    t.equal(r.statusCode, 401, `${what}: 401`);
    t.match(r.headers['www-authenticate'], /error="invalid_token"/, `${what}: RFC 6750 invalid_token`);
  }
  t.equal((await login(h, token)).statusCode, 401, 'no new session from an expired token');
});

t.test('expiry dates out of bounds are 400 {error, message}', async (t) => {
  const h = await harness(t);
  const tok = await owner(h);
  const now = h.clock.now();
  const bad: unknown[] = [
    iso(now - 1000),
    iso(now + 30_000),
    iso(now + 11 * 365 * 86400_000),
    'tomorrow',
    '2026-13-45T00:00:00Z',
    '',
    -1,
    1e308,
    null,
    'x'.repeat(5000),
  ];
  for (const expires_at of bad) {
    for (const [url, body] of [
      ['/api/sdk-keys', { name: 'k', expires_at }],
      ['/api/access-tokens', { name: 't', scopes: ['api'], expires_at }],
    ] as const) {
      const res = await h.inject({ method: 'POST', url, headers: bearer(tok), payload: body });
      t.equal(res.statusCode, 400, `${url} expires_at ${JSON.stringify(expires_at).slice(0, 40)}: 400`);
      t.type(res.json().message, 'string');
    }
  }
  const both = await h.inject({
    method: 'POST',
    url: '/api/access-tokens',
    headers: bearer(tok),
    payload: { name: 't', scopes: ['api'], expires_in: 3600, expires_at: iso(now + 3600_000) },
  });
  t.equal(both.statusCode, 400, 'expires_in and expires_at at once: 400');
  const keys = await h.inject({ method: 'GET', url: '/api/sdk-keys', headers: bearer(tok) });
  t.equal(keys.json().sdk_keys.length, 0, 'nothing was created');
});

t.test('regenerate: new value works, old is 401, sessions and credentials made from the old end; name, scopes, expiry kept', async (t) => {
  const h = await harness(t);
  const u = await h.user();
  const root = await h.apiToken(u, ['api', 'quantum_tokens']);
  const at = h.clock.now() + 86400_000;
  const created = await h.inject({
    method: 'POST',
    url: '/api/access-tokens',
    headers: bearer(root),
    payload: { name: 'laptop', scopes: ['api'], expires_at: iso(at) },
  });
  const old = created.json();
  const session = (await login(h, old.token)).json().id as string;
  const child = await h.inject({ method: 'POST', url: '/api/access-tokens', headers: bearer(old.token), payload: { name: 'child', scopes: ['api'] } });
  t.equal(child.statusCode, 201);
  const key = await h.inject({ method: 'POST', url: '/api/sdk-keys', headers: bearer(old.token), payload: { name: 'from-old' } });
  t.equal(key.statusCode, 201);
  t.equal((await me(h, session)).statusCode, 200);

  const res = await h.inject({ method: 'POST', url: `/api/access-tokens/${old.id}/regenerate`, headers: bearer(root) });
  t.equal(res.statusCode, 201);
  t.equal(res.headers['cache-control'], 'no-store');
  const fresh = res.json();
  t.not(fresh.token, old.token);
  t.not(fresh.id, old.id);
  t.same([fresh.name, fresh.scopes, fresh.expires_at], ['laptop', ['api'], iso(at)], 'name, scopes and expiry kept');

  t.equal((await me(h, old.token)).statusCode, 401, 'the old value is refused');
  t.equal((await me(h, fresh.token)).statusCode, 200, 'the new value works');
  t.equal((await me(h, session)).statusCode, 401, 'a session made from the old value ended');
  t.equal((await verify(h, session)).statusCode, 401, 'at the gateway too');
  t.equal((await me(h, child.json().token)).statusCode, 401, 'an API token created from the old value was revoked');
  const clientIds = (await h.db.selectFrom('sdk_keys').select('client_id').where('user_id', '=', u.id).execute()).map((r) => r.client_id);
  t.notOk(clientIds.includes(key.json().client_id), 'an SDK key created from the old value was deleted');

  const list = (await h.inject({ method: 'GET', url: '/api/access-tokens', headers: bearer(root) })).json().access_tokens as Array<{ id: string }>;
  t.ok(
    list.some((r) => r.id === fresh.id),
    'listed',
  );
  t.notOk(
    list.some((r) => r.id === old.id),
    'the old one is gone from the list',
  );
  const parents = await h.db.selectFrom('api_tokens').select(['id', 'parent_api_token_id']).where('id', 'in', [old.id, fresh.id]).execute();
  t.equal(parents.find((p) => p.id === fresh.id)!.parent_api_token_id, parents.find((p) => p.id === old.id)!.parent_api_token_id, 'same parent');

  const audit = await h.db.selectFrom('audit_events').select(['action', 'target_id', 'details']).where('action', '=', 'api_token.regenerate').execute();
  t.equal(audit.length, 1, 'audited');
  t.equal(audit[0]!.target_id, fresh.id);
  t.equal((audit[0]!.details as Record<string, unknown>).previous_api_token_id, old.id);
  t.notMatch(JSON.stringify(audit), fresh.token, 'never the token');

  t.equal((await h.inject({ method: 'POST', url: `/api/access-tokens/${old.id}/regenerate`, headers: bearer(root) })).statusCode, 404, 'the old one is gone');
});

t.test('regenerate: the caller must cover the token; its own token works; others are 404', async (t) => {
  const h = await harness(t);
  const u = await h.user();
  const narrow = await h.inject({
    method: 'POST',
    url: '/api/access-tokens',
    headers: bearer(await h.apiToken(u, ['api'])),
    payload: { name: 'narrow', scopes: ['api'], expires_in: 3600 },
  });
  const wide = await h.apiToken(u, ['api', 'quantum_tokens']);
  const rows = await h.db.selectFrom('api_tokens').select(['id', 'scopes']).where('user_id', '=', u.id).execute();
  const wideId = rows.find((r) => r.scopes.includes('quantum_tokens'))!.id;
  const refused = await h.inject({ method: 'POST', url: `/api/access-tokens/${wideId}/regenerate`, headers: bearer(narrow.json().token) });
  t.equal(refused.statusCode, 403, 'a narrower credential cannot mint a wider token');
  t.same(Object.keys(refused.json()).sort(), ['error', 'message']);
  t.equal((await me(h, wide)).statusCode, 200, 'the refused request revoked nothing');

  const self = await h.inject({ method: 'POST', url: `/api/access-tokens/${narrow.json().id}/regenerate`, headers: bearer(narrow.json().token) });
  t.equal(self.statusCode, 201, 'a token may regenerate itself');
  t.equal((await me(h, narrow.json().token)).statusCode, 401);
  t.equal((await me(h, self.json().token)).statusCode, 200);

  const stranger = await h.apiToken(await h.user(), ['api', 'quantum_tokens']);
  t.equal((await h.inject({ method: 'POST', url: `/api/access-tokens/${wideId}/regenerate`, headers: bearer(stranger) })).statusCode, 404);
  t.equal((await h.inject({ method: 'POST', url: '/api/access-tokens/not-a-uuid/regenerate', headers: bearer(wide) })).statusCode, 400);
  t.equal((await me(h, wide)).statusCode, 200, 'still live');
});
