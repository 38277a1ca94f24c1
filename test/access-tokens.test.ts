import t from 'tap';
import { bearer, harness } from './support/helper.js';
import { isWellFormedApiToken } from '../src/api-tokens/api-token.js';

t.test('create -> the token once; list never shows it; it works as a bearer credential', async (t) => {
  const h = await harness(t);
  const u = await h.user();
  const boot = await h.apiToken(u, ['api', 'quantum_tokens']);
  const res = await h.inject({
    method: 'POST',
    url: '/api/access-tokens',
    headers: bearer(boot),
    payload: { name: 'laptop', scopes: ['api'], expires_in: 3600 },
  });
  t.equal(res.statusCode, 201);
  t.equal(res.headers['cache-control'], 'no-store');
  const created = res.json();
  t.ok(isWellFormedApiToken(created.token), 'prefixed, checksummed');
  t.equal(created.name, 'laptop');
  t.same(created.scopes, ['api']);
  t.equal(new Date(created.expires_at).getTime(), h.clock.now() + 3600_000);
  t.equal(created.display_prefix, created.token.slice(0, 12));

  const list = await h.inject({ method: 'GET', url: '/api/access-tokens', headers: bearer(created.token) });
  t.equal(list.statusCode, 200);
  const items = list.json().access_tokens;
  t.equal(items.length, 2);
  t.notOk(list.body.includes(created.token.slice(12)), 'no secret in the list');
  for (const it of items) t.same(Object.keys(it).sort(), ['created_at', 'display_prefix', 'expires_at', 'id', 'last_used_at', 'name', 'scopes']);

  // Stored hashed.
  const rows = await h.db.selectFrom('api_tokens').selectAll().execute();
  t.notOk(JSON.stringify(rows).includes(created.token.slice(12)));
  const audit = await h.db.selectFrom('audit_events').select(['action', 'target_id']).where('target_type', '<>', 'signing_key').execute();
  t.same(audit, [{ action: 'api_token.create', target_id: created.id }]);
});

t.test('scopes: a token cannot grant what its creator lacks; admin only from admin', async (t) => {
  const h = await harness(t);
  const u = await h.user();
  const plain = await h.apiToken(u, ['api']);
  const op = await h.apiToken(u, ['api', 'admin']);
  const create = (tok: string, scopes: string[]) =>
    h.inject({ method: 'POST', url: '/api/access-tokens', headers: bearer(tok), payload: { name: 'x', scopes } });

  const noAdmin = await create(plain, ['api', 'admin']);
  t.equal(noAdmin.statusCode, 403);
  t.equal(noAdmin.json().error, 'forbidden');
  t.match(noAdmin.json().message, /admin/);
  t.equal((await create(plain, ['quantum_tokens'])).statusCode, 403, 'quantum_tokens not held either');
  t.equal((await create(op, ['api', 'admin'])).statusCode, 201, 'admin can grant admin');

  // A session carries its token's scopes, and no more.
  const s = (await h.inject({ method: 'POST', url: '/api/users/loginWithToken', payload: { apiToken: plain } })).json().id;
  t.equal(
    (await h.inject({ method: 'POST', url: '/api/access-tokens', headers: { 'x-access-token': s }, payload: { name: 'x', scopes: ['admin'] } })).statusCode,
    403,
  );

  // Missing scope api: 403 insufficient_scope with the RFC 6750 challenge.
  const qOnly = await h.apiToken(u, ['quantum_tokens']);
  for (const [method, url] of [
    ['GET', '/api/access-tokens'],
    ['GET', '/api/users/me'],
    ['GET', '/api/users/me/organizations'],
  ] as const) {
    const r = await h.inject({ method, url, headers: bearer(qOnly) });
    t.equal(r.statusCode, 403, `${url} without api`);
    t.same(r.json(), { error: 'insufficient_scope', message: 'this request needs scope: api' });
    t.equal(r.headers['www-authenticate'], 'Bearer realm="tessera", error="insufficient_scope", scope="api"');
  }
  const admin = await h.inject({ method: 'GET', url: '/admin/users', headers: bearer(plain) });
  t.equal(admin.statusCode, 403);
  t.equal(admin.json().error, 'insufficient_scope');

  // Malformed bodies.
  for (const payload of [
    { name: 'x' },
    { scopes: ['api'] },
    { name: 'x', scopes: [] },
    { name: 'x', scopes: ['root'] },
    { name: 'x', scopes: ['api', 'api'] },
    { name: '  ', scopes: ['api'] },
    { name: 'x', scopes: ['api'], expires_in: 5 },
    { name: 'x', scopes: ['api'], other: 1 },
  ]) {
    const r = await h.inject({ method: 'POST', url: '/api/access-tokens', headers: bearer(op), payload });
    t.equal(r.statusCode, 400, `400 for ${JSON.stringify(payload)}`);
    t.equal(r.json().error, 'invalid_request');
  }
});

t.test('delete: only your own tokens (others 404); revoked tokens stop working', async (t) => {
  const h = await harness(t);
  const alice = await h.user();
  const bob = await h.user();
  const a1 = await h.apiToken(alice);
  const a2 = await h.apiToken(alice);
  const b1 = await h.apiToken(bob);
  const aliceItems = (await h.inject({ method: 'GET', url: '/api/access-tokens', headers: bearer(a1) })).json().access_tokens;
  const bobItems = (await h.inject({ method: 'GET', url: '/api/access-tokens', headers: bearer(b1) })).json().access_tokens;
  t.equal(aliceItems.length, 2);
  t.equal(bobItems.length, 1, 'each sees only their own');

  const notYours = await h.inject({ method: 'DELETE', url: `/api/access-tokens/${aliceItems[1].id}`, headers: bearer(b1) });
  t.equal(notYours.statusCode, 404);
  t.equal(notYours.json().error, 'not_found');
  t.equal((await h.inject({ method: 'GET', url: '/api/users/me', headers: bearer(a2) })).statusCode, 200, 'still works');

  t.equal((await h.inject({ method: 'DELETE', url: `/api/access-tokens/${aliceItems[1].id}`, headers: bearer(a1) })).statusCode, 204);
  const gone = await h.inject({ method: 'GET', url: '/api/users/me', headers: bearer(a2) });
  t.equal(gone.statusCode, 401);
  t.match(gone.headers['www-authenticate'], /error="invalid_token"/);
  t.equal((await h.inject({ method: 'DELETE', url: `/api/access-tokens/${aliceItems[1].id}`, headers: bearer(a1) })).statusCode, 404, 'twice');
  t.equal((await h.inject({ method: 'DELETE', url: '/api/access-tokens/not-a-uuid', headers: bearer(a1) })).statusCode, 400);
  t.equal((await h.inject({ method: 'GET', url: '/api/access-tokens', headers: bearer(a1) })).json().access_tokens.length, 1, 'revoked not listed');
});

t.test('/api/users/me and organization discovery', async (t) => {
  const h = await harness(t);
  const u = await h.user({ name: 'Ada' });
  const other = await h.user();
  const o1 = await h.org('Lab One', [
    [u, 'owner'],
    [other, 'member'],
  ]);
  const o2 = await h.org('Lab Two', [[u, 'member']]);
  await h.org('Not mine', [[other, 'owner']]);
  const tok = await h.apiToken(u);
  const me = await h.inject({ method: 'GET', url: '/api/users/me', headers: bearer(tok) });
  t.equal(me.statusCode, 200);
  t.match(me.json(), { id: u.id, email: u.email, name: 'Ada', status: 'active', credential: { kind: 'api_token', scopes: ['api'], expires_at: null } });
  const orgs = await h.inject({ method: 'GET', url: '/api/users/me/organizations', headers: bearer(tok) });
  t.same(orgs.json(), {
    organizations: [
      { id: o1.id, name: 'Lab One', role: 'owner' },
      { id: o2.id, name: 'Lab Two', role: 'member' },
    ],
  });
  const noAuth = await h.inject({ method: 'GET', url: '/api/users/me' });
  t.equal(noAuth.statusCode, 401);
  t.equal(noAuth.headers['www-authenticate'], 'Bearer realm="tessera"');
});

t.test('admin users API: create, list, get, suspend, activate (scope admin)', async (t) => {
  const h = await harness(t);
  const op = await h.user();
  const tok = await h.apiToken(op, ['admin']);
  const created = await h.inject({ method: 'POST', url: '/admin/users', headers: bearer(tok), payload: { email: 'New@Example.com', name: 'New' } });
  t.equal(created.statusCode, 201);
  t.match(created.json(), { email: 'new@example.com', name: 'New', status: 'active' });
  const dup = await h.inject({ method: 'POST', url: '/admin/users', headers: bearer(tok), payload: { email: 'new@example.com', name: 'Again' } });
  t.equal(dup.statusCode, 409);
  t.equal((await h.inject({ method: 'POST', url: '/admin/users', headers: bearer(tok), payload: { email: 'nope', name: 'x' } })).statusCode, 400);

  const page1 = await h.inject({ method: 'GET', url: '/admin/users?limit=1', headers: bearer(tok) });
  t.equal(page1.json().users.length, 1);
  t.ok(page1.json().next_after);
  const page2 = await h.inject({ method: 'GET', url: `/admin/users?limit=1&after=${page1.json().next_after}`, headers: bearer(tok) });
  t.equal(page2.json().users.length, 1);
  t.not(page2.json().users[0].id, page1.json().users[0].id);

  const id = created.json().id;
  t.equal((await h.inject({ method: 'GET', url: `/admin/users/${id}`, headers: bearer(tok) })).json().email, 'new@example.com');
  t.equal((await h.inject({ method: 'GET', url: '/admin/users/00000000-0000-4000-8000-000000000000', headers: bearer(tok) })).statusCode, 404);
  t.equal((await h.inject({ method: 'POST', url: '/admin/users/00000000-0000-4000-8000-000000000000/suspend', headers: bearer(tok) })).statusCode, 404);
  t.equal((await h.inject({ method: 'POST', url: `/admin/users/${id}/suspend`, headers: bearer(tok) })).json().status, 'suspended');
  t.equal((await h.inject({ method: 'POST', url: `/admin/users/${id}/activate`, headers: bearer(tok) })).json().status, 'active');
  const actions = (await h.db.selectFrom('audit_events').select('action').where('target_type', '<>', 'signing_key').orderBy('id').execute()).map(
    (r) => r.action,
  );
  t.same(actions, ['user.create', 'user.suspend', 'user.activate']);
});
