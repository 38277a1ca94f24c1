import t from 'tap';
import pg from 'pg';
import type { Test } from 'tap';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { bearer, harness, TestClock } from './support/helper.js';
import { isWellFormedSessionToken } from '../src/sessions/session-token.js';
import type { ChangeEventType } from '../src/platform/database/notifications.js';

async function login(h: { inject(o: InjectOptions): Promise<LightMyRequestResponse> }, apiToken: string) {
  return h.inject({ method: 'POST', url: '/api/users/loginWithToken', payload: { apiToken } });
}

const xat = (token: string) => ({ 'x-access-token': token });

function assertInvalidToken(t: Test, res: LightMyRequestResponse, what: string) {
  t.equal(res.statusCode, 401, `${what}: 401`);
  t.match(String(res.headers['www-authenticate']), /^Bearer .*error="invalid_token"/, `${what}: Bearer challenge`);
  t.equal(res.json().error, 'invalid_token', `${what}: error code`);
}

t.test('loginWithToken answers the IBM Quantum shape, and the token works as x-access-token and Bearer', async (t) => {
  const h = await harness(t);
  const u = await h.user();
  const apiToken = await h.apiToken(u, ['api']);
  const res = await login(h, apiToken);
  t.equal(res.statusCode, 200);
  const body = res.json();
  t.same(Object.keys(body).sort(), ['created', 'id', 'ttl', 'userId']);
  t.equal(body.userId, u.id);
  t.equal(body.ttl, 3600);
  t.ok(isWellFormedSessionToken(body.id), 'recognisable, checksummed token');
  t.ok(body.id.length >= 8 + 43, '>= 256 bits');
  t.equal(new Date(body.created).getTime(), h.clock.now(), 'created from the injected clock');
  t.equal(res.headers['cache-control'], 'no-store');

  const viaHeader = await h.inject({ method: 'GET', url: '/api/users/me', headers: xat(body.id) });
  t.equal(viaHeader.statusCode, 200);
  t.equal(viaHeader.json().id, u.id);
  t.equal(viaHeader.json().credential.kind, 'session');
  t.same(viaHeader.json().credential.scopes, ['api']);
  const viaBearer = await h.inject({ method: 'GET', url: '/api/users/me', headers: bearer(body.id) });
  t.equal(viaBearer.statusCode, 200);

  // Stored hashed: the token appears nowhere in the database.
  const rows = await h.db.selectFrom('sessions').selectAll().execute();
  t.equal(rows.length, 1);
  t.notOk(JSON.stringify(rows).includes(body.id.slice(8)), 'no raw token stored');
});

t.test('login refuses bad, revoked, expired tokens and suspended users with 401; malformed bodies with 400', async (t) => {
  const h = await harness(t);
  const u = await h.user();
  const good = await h.apiToken(u);
  const bogus = good.slice(0, -10) + 'AAAAAAAAAA';
  assertInvalidToken(t, await login(h, bogus), 'bad checksum');
  assertInvalidToken(t, await login(h, 'tsr_pat_' + 'x'.repeat(49)), 'unknown');
  assertInvalidToken(t, await login(h, 'nonsense'), 'not a token');

  for (const payload of [{}, { apiToken: 1 }, { apiToken: '' }, { apiToken: good, extra: 1 }, []]) {
    const res = await h.inject({ method: 'POST', url: '/api/users/loginWithToken', payload });
    t.equal(res.statusCode, 400, `400 for ${JSON.stringify(payload)}`);
    t.equal(res.json().error, 'invalid_request');
  }
  const notJson = await h.inject({
    method: 'POST',
    url: '/api/users/loginWithToken',
    headers: { 'content-type': 'application/json' },
    payload: '{"apiToken":',
  });
  t.equal(notJson.statusCode, 400);

  // Expired API token.
  const expiring = await h.db
    .updateTable('api_tokens')
    .set({ expires_at: new Date(h.clock.now() + 1000) })
    .where('user_id', '=', u.id)
    .returning('id')
    .execute();
  t.equal(expiring.length, 1);
  t.equal((await login(h, good)).statusCode, 200);
  h.clock.advance(2);
  assertInvalidToken(t, await login(h, good), 'expired API token');
});

t.test('login -> use -> logout -> reuse gets 401 everywhere; a second logout gets 401', async (t) => {
  const h = await harness(t);
  const u = await h.user();
  const { id } = (await login(h, await h.apiToken(u))).json();
  t.equal((await h.inject({ method: 'GET', url: '/api/users/me', headers: xat(id) })).statusCode, 200);
  t.equal((await h.inject({ method: 'GET', url: '/gateway/verify', headers: xat(id) })).statusCode, 200);

  const out = await h.inject({ method: 'POST', url: '/api/users/logout', headers: xat(id) });
  t.equal(out.statusCode, 204);
  t.equal(out.body, '');
  // Durable before the 204.
  const row = await h.db.selectFrom('sessions').select('revoked_at').executeTakeFirstOrThrow();
  t.ok(row.revoked_at, 'revoked in Postgres');

  for (const url of ['/api/users/me', '/api/users/me/organizations', '/api/access-tokens', '/gateway/verify']) {
    assertInvalidToken(t, await h.inject({ method: 'GET', url, headers: xat(id) }), `x-access-token ${url}`);
    assertInvalidToken(t, await h.inject({ method: 'GET', url, headers: bearer(id) }), `Bearer ${url}`);
  }
  assertInvalidToken(t, await h.inject({ method: 'POST', url: '/api/users/logout', headers: xat(id) }), 'second logout');
  assertInvalidToken(t, await h.inject({ method: 'POST', url: '/api/users/logout', headers: bearer(id) }), 'third logout, Bearer');

  // Logout needs a session token.
  const missing = await h.inject({ method: 'POST', url: '/api/users/logout' });
  t.equal(missing.statusCode, 401);
  t.equal(missing.headers['www-authenticate'], 'Bearer realm="tessera"');
  const withApiToken = await h.inject({ method: 'POST', url: '/api/users/logout', headers: bearer(await h.apiToken(u)) });
  t.equal(withApiToken.statusCode, 400);

  // The audit trail has both.
  const actions = (await h.db.selectFrom('audit_events').select('action').where('target_type', '<>', 'signing_key').orderBy('id').execute()).map(
    (r) => r.action,
  );
  t.same(actions, ['session.create', 'session.logout']);
});

t.test('logout on one instance: 401 on a second instance sharing the database, even with the session cached there', async (t) => {
  const h = await harness(t);
  const b = await h.instance();
  const u = await h.user();
  const apiToken = await h.apiToken(u);
  for (let i = 0; i < 25; i++) {
    const { id } = (await login(h, apiToken)).json();
    // B verifies it (and caches it) before the logout; twice, so the second is a cache hit.
    t.equal((await b.inject({ method: 'GET', url: '/gateway/verify', headers: xat(id) })).statusCode, 200);
    t.equal((await b.inject({ method: 'GET', url: '/gateway/verify', headers: bearer(id) })).statusCode, 200);
    t.ok(b.sessionCache.size > 0, 'cached on B');
    // Logout on A, then straight to B: no waiting for the notification.
    t.equal((await h.inject({ method: 'POST', url: '/api/users/logout', headers: xat(id) })).statusCode, 204);
    const reuse = await b.inject({ method: 'GET', url: '/gateway/verify', headers: xat(id) });
    if (reuse.statusCode !== 401) t.fail(`round ${i}: B accepted a logged-out token`);
    assertInvalidToken(t, reuse, `round ${i} on B`);
    assertInvalidToken(t, await b.inject({ method: 'GET', url: '/api/users/me', headers: bearer(id) }), `round ${i} on B /me`);
    assertInvalidToken(t, await b.inject({ method: 'POST', url: '/api/users/logout', headers: xat(id) }), `round ${i} logout on B`);
  }
  // Logout on B, not cached on A beforehand: A refuses too.
  const { id } = (await login(h, apiToken)).json();
  t.equal((await b.inject({ method: 'POST', url: '/api/users/logout', headers: xat(id) })).statusCode, 204);
  assertInvalidToken(t, await h.inject({ method: 'GET', url: '/api/users/me', headers: xat(id) }), 'A after logout on B');
});

t.test('B refuses a logged-out token while the logout notification is still in flight to B', async (t) => {
  const h = await harness(t);
  const b = await h.instance();
  const u = await h.user();
  const apiToken = await h.apiToken(u);
  const { id } = (await login(h, apiToken)).json();
  t.equal((await b.inject({ method: 'GET', url: '/gateway/verify', headers: xat(id) })).statusCode, 200);
  t.equal((await b.inject({ method: 'GET', url: '/gateway/verify', headers: xat(id) })).statusCode, 200, 'cache hit');
  // Keep B's LISTEN backend busy: Postgres holds notifications for it until its statement ends,
  // as a slow network or a loaded listener would.
  const listener = (b.changes as unknown as { client: pg.Client }).client;
  const busy = listener.query('select pg_sleep(0.4)');
  await new Promise((r) => setTimeout(r, 50));
  let delivered = false;
  const off = b.changes.on('session', () => (delivered = true));
  t.equal((await h.inject({ method: 'POST', url: '/api/users/logout', headers: xat(id) })).statusCode, 204);
  t.notOk(delivered, 'the notification has not reached B yet');
  assertInvalidToken(t, await b.inject({ method: 'GET', url: '/gateway/verify', headers: xat(id) }), 'B, notification in flight');
  t.ok(delivered, 'B waited for it');
  off();
  await busy;
});

t.test('cache hits wait for the freshness barrier; a barrier delivers every notification committed before it', async (t) => {
  const h = await harness(t);
  const u = await h.user();
  const { id } = (await login(h, await h.apiToken(u))).json();
  await h.inject({ method: 'GET', url: '/api/users/me', headers: xat(id) });
  let syncs = 0;
  const orig = h.app.changes.sync.bind(h.app.changes);
  h.app.changes.sync = (ms?: number) => {
    syncs++;
    return orig(ms);
  };
  t.equal((await h.inject({ method: 'GET', url: '/api/users/me', headers: xat(id) })).statusCode, 200);
  t.equal(syncs, 1, 'a cache hit is confirmed by a barrier');

  // Without a trustworthy barrier, memory is not trusted: the database decides.
  h.app.changes.sync = async () => false;
  await h.db.updateTable('sessions').set({ revoked_at: new Date() }).execute(); // no notification at all
  assertInvalidToken(t, await h.inject({ method: 'GET', url: '/api/users/me', headers: xat(id) }), 'no barrier -> database');
  h.app.changes.sync = orig;

  // The barrier itself: a notification committed by another connection is handled before sync resolves.
  const seen: string[] = [];
  // A type no feature publishes (sent raw below), so only this handler sees it.
  h.app.changes.on('probe' as ChangeEventType, (e) => seen.push(String((e as { id?: unknown }).id)));
  const other = new pg.Client({ connectionString: h.connectionString });
  await other.connect();
  t.teardown(() => other.end());
  for (let i = 0; i < 50; i++) {
    await other.query(`select pg_notify('tessera_events', $1)`, [JSON.stringify({ type: 'probe', id: String(i) })]);
    t.equal(await h.app.changes.sync(), true);
    if (!seen.includes(String(i))) t.fail(`notification ${i} not delivered by the barrier`);
  }
  t.equal(seen.length, 50);
  // Concurrent callers share round trips.
  const results = await Promise.all(Array.from({ length: 100 }, () => h.app.changes.sync()));
  t.ok(results.every(Boolean));
});

t.test('sessions expire after the TTL; expired rows are pruned', async (t) => {
  const clock = new TestClock();
  const h = await harness(t, { clock, env: { TESSERA_SESSION_TTL: '10m' } });
  const u = await h.user();
  const res = (await login(h, await h.apiToken(u))).json();
  t.equal(res.ttl, 600);
  t.equal((await h.inject({ method: 'GET', url: '/api/users/me', headers: xat(res.id) })).statusCode, 200, 'cached now');
  clock.advance(599);
  t.equal((await h.inject({ method: 'GET', url: '/api/users/me', headers: xat(res.id) })).statusCode, 200);
  clock.advance(2);
  assertInvalidToken(t, await h.inject({ method: 'GET', url: '/api/users/me', headers: xat(res.id) }), 'expired (cache)');
  const b = await h.instance();
  assertInvalidToken(t, await b.inject({ method: 'GET', url: '/gateway/verify', headers: xat(res.id) }), 'expired (database)');
  assertInvalidToken(t, await h.inject({ method: 'POST', url: '/api/users/logout', headers: xat(res.id) }), 'logout of expired');

  const live = (await login(h, await h.apiToken(u))).json();
  t.equal(await h.app.pruneSessions(), 1, 'the expired one is deleted');
  const left = await h.db.selectFrom('sessions').select('id').execute();
  t.equal(left.length, 1);
  t.equal((await h.inject({ method: 'GET', url: '/api/users/me', headers: xat(live.id) })).statusCode, 200);
});

t.test('sliding sessions live while used', async (t) => {
  const clock = new TestClock();
  const h = await harness(t, { clock, env: { TESSERA_SESSION_TTL: '600', TESSERA_SESSION_SLIDING: 'true' } });
  const u = await h.user();
  const { id } = (await login(h, await h.apiToken(u))).json();
  for (let i = 0; i < 4; i++) {
    clock.advance(500);
    t.equal((await h.inject({ method: 'GET', url: '/api/users/me', headers: xat(id) })).statusCode, 200, `used after ${(i + 1) * 500}s`);
  }
  await h.app.usage.flush();
  // Another instance reads the slid expiry from last_used_at.
  const b = await h.instance();
  t.equal((await b.inject({ method: 'GET', url: '/api/users/me', headers: xat(id) })).statusCode, 200, 'slid on another instance');
  clock.advance(601);
  assertInvalidToken(t, await h.inject({ method: 'GET', url: '/api/users/me', headers: xat(id) }), 'idle too long');
});

t.test('revoking the API token ends its sessions on every instance; other sessions live on', async (t) => {
  const h = await harness(t);
  const b = await h.instance();
  const u = await h.user();
  const tokA = await h.apiToken(u, ['api']);
  const tokB = await h.apiToken(u, ['api']);
  const s1 = (await login(h, tokA)).json().id;
  const s2 = (await login(h, tokA)).json().id;
  const other = (await login(h, tokB)).json().id;
  for (const s of [s1, s2, other]) t.equal((await b.inject({ method: 'GET', url: '/gateway/verify', headers: xat(s) })).statusCode, 200);
  const list = (await h.inject({ method: 'GET', url: '/api/access-tokens', headers: xat(other) })).json().access_tokens;
  const idA = list[0].id;
  t.equal((await h.inject({ method: 'DELETE', url: `/api/access-tokens/${idA}`, headers: xat(other) })).statusCode, 204);
  for (const s of [s1, s2]) {
    assertInvalidToken(t, await b.inject({ method: 'GET', url: '/gateway/verify', headers: xat(s) }), 'session of revoked token on B');
    assertInvalidToken(t, await h.inject({ method: 'GET', url: '/api/users/me', headers: xat(s) }), 'session of revoked token on A');
  }
  assertInvalidToken(t, await login(h, tokA), 'login with the revoked token');
  assertInvalidToken(t, await h.inject({ method: 'GET', url: '/api/users/me', headers: bearer(tokA) }), 'revoked token as bearer');
  t.equal((await b.inject({ method: 'GET', url: '/gateway/verify', headers: xat(other) })).statusCode, 200, 'other token untouched');
});

t.test('suspending a user ends every session and token; activating does not bring them back', async (t) => {
  const h = await harness(t);
  const b = await h.instance();
  const operator = await h.user();
  const opToken = await h.apiToken(operator, ['api', 'admin']);
  const u = await h.user();
  const tok = await h.apiToken(u, ['api']);
  const s = (await login(h, tok)).json().id;
  t.equal((await b.inject({ method: 'GET', url: '/gateway/verify', headers: xat(s) })).statusCode, 200);

  const res = await h.inject({ method: 'POST', url: `/admin/users/${u.id}/suspend`, headers: bearer(opToken) });
  t.equal(res.statusCode, 200);
  t.equal(res.json().status, 'suspended');
  assertInvalidToken(t, await b.inject({ method: 'GET', url: '/gateway/verify', headers: xat(s) }), 'session on B');
  assertInvalidToken(t, await h.inject({ method: 'GET', url: '/api/users/me', headers: bearer(tok) }), 'API token');
  assertInvalidToken(t, await login(h, tok), 'login');
  const revoked = await h.db.selectFrom('api_tokens').select('revoked_at').where('user_id', '=', u.id).execute();
  t.ok(
    revoked.every((r) => r.revoked_at),
    'tokens revoked in the database',
  );

  const act = await h.inject({ method: 'POST', url: `/admin/users/${u.id}/activate`, headers: bearer(opToken) });
  t.equal(act.statusCode, 200);
  t.equal(act.json().status, 'active');
  assertInvalidToken(t, await login(h, tok), 'old token after activation');
  const fresh = await h.apiToken(u);
  t.equal((await login(h, fresh)).statusCode, 200, 'new token works');
});
