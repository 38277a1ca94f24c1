import t from 'tap';
import { bearer, harness } from './support/helper.js';
import { basic, createSdkKey, getToken, oauthPost } from './support/oauth-helper.js';

const CC = { grant_type: 'client_credentials' };

t.test('create, list, get, rename: the secret appears only in the create response', async (t) => {
  const h = await harness(t);
  const user = await h.user();
  const token = await h.apiToken(user, ['api', 'quantum_tokens']);
  const created = await h.inject({ method: 'POST', url: '/api/sdk-keys', headers: bearer(token), payload: { name: 'laptop', scopes: ['quantum_tokens'] } });
  t.equal(created.statusCode, 201, created.body);
  t.equal(created.headers['cache-control'], 'no-store');
  const key = created.json();
  t.same(Object.keys(key).sort(), [
    'audiences',
    'client_id',
    'client_secret',
    'created_at',
    'dpop_bound_access_tokens',
    'expires_at',
    'jwk',
    'last_used_at',
    'name',
    'organization_id',
    'previous_secret_expires_at',
    'scopes',
    'status',
    'token_endpoint_auth_method',
    'updated_at',
  ]);
  t.match(key.client_secret, /^[A-Za-z0-9_-]{43}$/);
  t.same(key.scopes, ['quantum_tokens']);
  t.equal(key.status, 'enabled');

  const row = await h.db.selectFrom('sdk_keys').selectAll().where('client_id', '=', key.client_id).executeTakeFirstOrThrow();
  t.equal(row.secret_hash!.length, 32);
  t.notOk(row.secret_hash!.toString('base64url').includes(key.client_secret), 'only a hash is stored');

  const list = await h.inject({ method: 'GET', url: '/api/sdk-keys', headers: bearer(token) });
  t.equal(list.statusCode, 200);
  t.equal(list.json().sdk_keys.length, 1);
  t.notOk(JSON.stringify(list.json()).includes(key.client_secret));
  t.notOk('client_secret' in list.json().sdk_keys[0]);

  const one = await h.inject({ method: 'GET', url: `/api/sdk-keys/${key.client_id}`, headers: bearer(token) });
  t.equal(one.statusCode, 200);
  t.notOk('client_secret' in one.json());
  t.equal(one.json().name, 'laptop');

  const renamed = await h.inject({ method: 'PATCH', url: `/api/sdk-keys/${key.client_id}`, headers: bearer(token), payload: { name: 'desktop' } });
  t.equal(renamed.statusCode, 200);
  t.equal(renamed.json().name, 'desktop');
  t.notOk('client_secret' in renamed.json());

  // Someone else cannot see or touch it.
  const other = await h.apiToken(await h.user());
  t.equal((await h.inject({ method: 'GET', url: `/api/sdk-keys/${key.client_id}`, headers: bearer(other) })).statusCode, 404);
  t.equal((await h.inject({ method: 'DELETE', url: `/api/sdk-keys/${key.client_id}`, headers: bearer(other) })).statusCode, 404);
  t.equal((await h.inject({ method: 'GET', url: '/api/sdk-keys/not-a-client', headers: bearer(token) })).statusCode, 400);

  // Scopes the credential lacks, or admin, cannot be given to a key.
  const apiOnly = await h.apiToken(user, ['api']);
  const escalate = await h.inject({ method: 'POST', url: '/api/sdk-keys', headers: bearer(apiOnly), payload: { name: 'x', scopes: ['quantum_tokens'] } });
  t.equal(escalate.statusCode, 403);
  const admin = await h.inject({ method: 'POST', url: '/api/sdk-keys', headers: bearer(token), payload: { name: 'x', scopes: ['admin'] } });
  t.equal(admin.statusCode, 400);
  // Without scope api, no access at all.
  const qt = await h.apiToken(user, ['quantum_tokens']);
  t.equal((await h.inject({ method: 'GET', url: '/api/sdk-keys', headers: bearer(qt) })).statusCode, 403);
});

t.test('at most two keys per user; the third gets 409 with a clear message', async (t) => {
  const h = await harness(t);
  const user = await h.user();
  await createSdkKey(h, user, { name: 'one' });
  await createSdkKey(h, user, { name: 'two' });
  const token = await h.apiToken(user);
  const third = await h.inject({ method: 'POST', url: '/api/sdk-keys', headers: bearer(token), payload: { name: 'three' } });
  t.equal(third.statusCode, 409);
  t.equal(third.json().error, 'conflict');
  t.match(third.json().message, /at most 2 SDK keys/);
  // The database itself refuses a third row, whatever writes it.
  const rows = await h.db.selectFrom('sdk_keys').selectAll().where('user_id', '=', user.id).execute();
  await t.rejects(
    h.db
      .insertInto('sdk_keys')
      .values({ ...rows[0]!, public_jwk: null, id: undefined as never, client_id: 's_00000000-0000-4000-8000-000000000001' })
      .execute(),
    /at most 2 SDK keys/,
  );
});

t.test('50 concurrent creations for one user leave exactly two keys', async (t) => {
  const h = await harness(t);
  const user = await h.user();
  const token = await h.apiToken(user);
  const second = await h.instance();
  const results = await Promise.all(
    Array.from({ length: 50 }, (_, i) =>
      (i % 2 ? second : h.app).inject({ method: 'POST', url: '/api/sdk-keys', headers: bearer(token), payload: { name: `k${i}` } }),
    ),
  );
  const codes = results.map((r) => r.statusCode);
  t.equal(codes.filter((c) => c === 201).length, 2, 'two created');
  t.equal(codes.filter((c) => c === 409).length, 48, 'the rest refused with 409');
  const n = await h.db
    .selectFrom('sdk_keys')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('user_id', '=', user.id)
    .executeTakeFirstOrThrow();
  t.equal(Number(n.n), 2);
  const audits = await h.db.selectFrom('audit_events').selectAll().where('action', '=', 'sdk_key.create').execute();
  t.equal(audits.length, 2, 'one audit event per key created, none for refusals');
});

t.test('disabling a key stops new tokens and kills its live tokens everywhere; enabling does not revive them', async (t) => {
  const h = await harness(t);
  const user = await h.user();
  const key = await createSdkKey(h, user);
  const apiToken = await h.apiToken(user);
  const other = await h.instance();
  const token = await getToken(h, key);
  // Both instances accept it (and cache the client).
  t.equal((await h.inject({ method: 'GET', url: '/api/sdk-keys', headers: bearer(token) })).statusCode, 200);
  t.equal((await other.inject({ method: 'GET', url: '/api/sdk-keys', headers: bearer(token) })).statusCode, 200);
  const introspect = (app: typeof other, tok: string) =>
    oauthPost({ inject: (o) => app.inject(o) }, '/oauth/introspect', { token: tok }, { authorization: basic(key.client_id, key.client_secret) });
  t.equal((await introspect(other, token)).json().active, true);

  h.clock.advance(2);
  const off = await h.inject({ method: 'PATCH', url: `/api/sdk-keys/${key.client_id}`, headers: bearer(apiToken), payload: { status: 'disabled' } });
  t.equal(off.statusCode, 200);
  t.equal(off.json().status, 'disabled');

  t.equal((await oauthPost(h, '/oauth/token', CC, { authorization: basic(key.client_id, key.client_secret) })).statusCode, 401);
  t.equal((await h.inject({ method: 'GET', url: '/api/sdk-keys', headers: bearer(token) })).statusCode, 401, 'this instance at once');
  // The other instance learns through LISTEN/NOTIFY within a second.
  let status = 0;
  for (let i = 0; i < 20 && status !== 401; i++) {
    await new Promise((r) => setTimeout(r, 50));
    status = (await other.inject({ method: 'GET', url: '/api/sdk-keys', headers: bearer(token) })).statusCode;
  }
  t.equal(status, 401, 'the other instance within a second');
  t.equal(
    (await oauthPost({ inject: (o) => other.inject(o) }, '/oauth/token', CC, { authorization: basic(key.client_id, key.client_secret) })).statusCode,
    401,
  );

  h.clock.advance(2);
  const on = await h.inject({ method: 'PATCH', url: `/api/sdk-keys/${key.client_id}`, headers: bearer(apiToken), payload: { status: 'enabled' } });
  t.equal(on.json().status, 'enabled');
  t.equal((await h.inject({ method: 'GET', url: '/api/sdk-keys', headers: bearer(token) })).statusCode, 401, 'old token stays dead');
  const fresh = await getToken(h, key);
  t.equal((await h.inject({ method: 'GET', url: '/api/sdk-keys', headers: bearer(fresh) })).statusCode, 200, 'new tokens work');

  const actions = (await h.db.selectFrom('audit_events').select(['action', 'target_id', 'actor_credential']).orderBy('id').execute())
    .filter((a) => a.target_id === key.client_id)
    .map((a) => a.action);
  t.same(actions, ['sdk_key.create', 'sdk_key.disable', 'sdk_key.enable']);
});

t.test('deleting a key kills its tokens (introspection inactive, API 401) and is audited', async (t) => {
  const h = await harness(t);
  const user = await h.user();
  const key = await createSdkKey(h, user);
  const keeper = await createSdkKey(h, user, { name: 'keeper' });
  const apiToken = await h.apiToken(user, ['api', 'introspect']);
  const token = await getToken(h, key);
  t.equal((await h.inject({ method: 'GET', url: '/api/sdk-keys', headers: bearer(token) })).statusCode, 200);
  const del = await h.inject({ method: 'DELETE', url: `/api/sdk-keys/${key.client_id}`, headers: bearer(apiToken) });
  t.equal(del.statusCode, 204);
  t.equal((await h.inject({ method: 'GET', url: '/api/sdk-keys', headers: bearer(token) })).statusCode, 401);
  const intro = await oauthPost(h, '/oauth/introspect', { token }, bearer(apiToken));
  t.same(intro.json(), { active: false });
  t.equal((await oauthPost(h, '/oauth/token', CC, { authorization: basic(key.client_id, key.client_secret) })).statusCode, 401);
  t.equal((await h.inject({ method: 'DELETE', url: `/api/sdk-keys/${key.client_id}`, headers: bearer(apiToken) })).statusCode, 404);
  // The other key is untouched, and a slot is free again.
  t.equal((await oauthPost(h, '/oauth/token', CC, { authorization: basic(keeper.client_id, keeper.client_secret) })).statusCode, 200);
  await createSdkKey(h, user, { name: 'replacement' });
  const audit = await h.db.selectFrom('audit_events').selectAll().where('action', '=', 'sdk_key.delete').executeTakeFirstOrThrow();
  t.equal(audit.target_id, key.client_id);
  t.equal(audit.actor_user_id, user.id);
  t.match(audit.actor_credential, /^api_token:/);
  t.notOk(JSON.stringify(audit.details).includes(key.client_secret), 'no secret in the audit trail');
});

t.test(
  'disable then enable within one second: tokens from before the disable stay refused, tokens after the enable work at once, on both instances',
  async (t) => {
    const h = await harness(t);
    const user = await h.user();
    const key = await createSdkKey(h, user);
    const apiToken = await h.apiToken(user);
    const other = await h.instance();
    const apps = { first: h.app, second: other };
    const second = Math.ceil(h.clock.ms / 1000) * 1000 + 1000;
    const at = (ms: number) => {
      h.clock.ms = second + ms;
    };
    const sleep = () => new Promise((r) => setTimeout(r, 20));
    const patch = (status: string) => other.inject({ method: 'PATCH', url: `/api/sdk-keys/${key.client_id}`, headers: bearer(apiToken), payload: { status } });
    /**
     * The instance's verdict on `token` ('ok' or the reason), polled in real time (the test clock
     * stands still) until it is `want` or two seconds pass: instances learn of changes through NOTIFY.
     */
    const verdict = async (app: typeof other, token: string, want: string) => {
      let got = '';
      for (let i = 0; i < 100 && got !== want; i++) {
        const r = await app.oauth.verifier.verify(token, { audience: h.config.issuer });
        got = r.ok ? 'ok' : r.reason;
        if (got !== want) await sleep();
      }
      return got;
    };
    /** The first instance's token endpoint, polled until it answers `status`. */
    const tokenEndpoint = async (status: number) => {
      for (let i = 0; i < 100; i++) {
        const res = await oauthPost(h, '/oauth/token', CC, { authorization: basic(key.client_id, key.client_secret) });
        if (res.statusCode === status) return res;
        await sleep();
      }
      throw new Error(`the token endpoint never answered ${status}`);
    };
    const issue = async () => (await tokenEndpoint(200)).json().access_token as string;

    at(200);
    const before = await issue();
    for (const app of Object.values(apps)) t.equal(await verdict(app, before, 'ok'), 'ok', 'valid before the disable');
    at(700);
    t.equal((await patch('disabled')).statusCode, 200);
    await tokenEndpoint(401);
    at(900);
    t.equal((await patch('enabled')).statusCode, 200);
    at(950);
    const after = await issue();
    for (const [name, app] of Object.entries(apps)) {
      t.equal(await verdict(app, after, 'ok'), 'ok', `${name}: a token issued after the enable, in the disable's second, is valid`);
      t.equal(await verdict(app, before, 'revoked'), 'revoked', `${name}: the token from before the disable, issued in the same second, stays refused`);
    }

    // A second disable in the same second also ends the token issued after the first enable.
    at(970);
    t.equal((await patch('disabled')).statusCode, 200);
    await tokenEndpoint(401);
    at(980);
    t.equal((await patch('enabled')).statusCode, 200);
    at(990);
    const third = await issue();
    for (const [name, app] of Object.entries(apps)) {
      t.equal(await verdict(app, third, 'ok'), 'ok', `${name}: the newest token is valid`);
      t.equal(await verdict(app, after, 'revoked'), 'revoked', `${name}: the token from before the second disable is refused`);
      t.equal(await verdict(app, before, 'revoked'), 'revoked');
    }
    // Time passing changes nothing.
    at(5000);
    for (const app of Object.values(apps)) {
      t.equal(await verdict(app, third, 'ok'), 'ok');
      t.equal(await verdict(app, after, 'revoked'), 'revoked');
    }
  },
);
