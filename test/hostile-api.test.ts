// Hostile use of the API: other people's ids, scope escalation through every kind of
// credential, malformed path parameters, and secrets that must never be readable again.
import t from 'tap';
import { sql } from 'kysely';
import { bearer, harness } from './support/helper.js';
import { createSdkKey, getToken } from './support/oauth-helper.js';
import { databaseDigest, leaksInternals } from './support/db-digest.js';

t.test("another user's or organization's ids: 404, nothing changed, nothing learned", async (t) => {
  const h = await harness(t);
  const [alice, mallory] = await Promise.all([h.user(), h.user()]);
  const lab = await h.org('Lab', [[alice, 'owner']]);
  const aliceKey = await createSdkKey(h, alice);
  const [at, mt] = await Promise.all([h.apiToken(alice, ['api', 'quantum_tokens']), h.apiToken(mallory, ['api', 'quantum_tokens'])]);
  const put = await h.inject({
    method: 'PUT',
    url: `/api/organizations/${lab.id}/provider-tokens/ionq`,
    headers: bearer(at),
    payload: { credential: { api_key: 'ionq-secret-value-123456' } },
  });
  t.ok([200, 201].includes(put.statusCode), put.body);
  const aliceTokens = (await h.inject({ method: 'GET', url: '/api/access-tokens', headers: bearer(at) })).json();
  const aliceTokenId = (aliceTokens.access_tokens ?? aliceTokens.tokens ?? aliceTokens)[0]?.id as string | undefined;
  const mKey = await createSdkKey(h, mallory);
  const mJwt = await getToken(h, mKey);
  await new Promise((r) => setTimeout(r, 200));
  await h.app.usage.flush();
  const before = await databaseDigest(h.db);

  const probes: Array<[string, string, unknown?]> = [
    ['GET', `/api/sdk-keys/${aliceKey.client_id}`],
    ['PATCH', `/api/sdk-keys/${aliceKey.client_id}`, { status: 'disabled' }],
    ['DELETE', `/api/sdk-keys/${aliceKey.client_id}`],
    ['GET', `/api/organizations/${lab.id}/members`],
    ['PUT', `/api/organizations/${lab.id}/members/${mallory.id}`, { role: 'owner' }],
    ['GET', `/api/organizations/${lab.id}/provider-tokens`],
    ['GET', `/api/organizations/${lab.id}/provider-tokens/ionq`],
    ['DELETE', `/api/organizations/${lab.id}/provider-tokens/ionq`],
    ['GET', `/api/provider-tokens/ionq/resolve?organization_id=${lab.id}`],
  ];
  if (aliceTokenId) probes.push(['DELETE', `/api/access-tokens/${aliceTokenId}`]);
  for (const [method, url, payload] of probes) {
    const res = await h.inject({ method: method as 'GET', url, headers: bearer(mt), ...(payload ? { payload: payload as object } : {}) });
    t.equal(res.statusCode, 404, `${method} ${url}: 404`);
    t.equal(res.json().error, 'not_found');
    t.notMatch(res.body, /ionq-secret|alice|Lab/i, 'nothing about the other side');
  }
  // An SDK key's own JWT is no better: it manages no credential at all, so it is refused before any look-up.
  const viaJwt = await h.inject({ method: 'DELETE', url: `/api/sdk-keys/${aliceKey.client_id}`, headers: bearer(mJwt) });
  t.equal(viaJwt.statusCode, 403);
  t.equal(viaJwt.json().error, 'insufficient_scope');
  await h.app.usage.flush();
  t.same(await databaseDigest(h.db), before, 'nothing changed');

  // Malformed ids in paths: 400 or 404, never 500.
  for (const url of [
    '/api/sdk-keys/not-a-client',
    `/api/sdk-keys/${aliceKey.client_id}%00`,
    "/api/sdk-keys/s_' or 1=1 --",
    '/api/organizations/not-a-uuid/members',
    `/api/organizations/${lab.id}'--/members`,
    '/api/access-tokens/%00',
    `/api/sdk-keys/${'x'.repeat(5000)}`,
  ]) {
    const res = await h.inject({ method: 'GET', url, headers: bearer(at) });
    t.ok([400, 404, 405, 414].includes(res.statusCode), `${url.slice(0, 50)}: ${res.statusCode}`);
    t.notOk(leaksInternals(res.body));
    t.equal(typeof res.json().error, 'string');
  }
});

t.test('role escalation through any credential: 403', async (t) => {
  const h = await harness(t);
  const [user, owner] = await Promise.all([h.user(), h.user()]);
  const lab = await h.org('Lab', [
    [owner, 'owner'],
    [user, 'member'],
  ]);
  const apiOnly = await h.apiToken(user, ['api']);
  const key = await createSdkKey(h, user, { name: 'k' }, ['api']);
  const jwt = await getToken(h, key);
  const session = (await h.inject({ method: 'POST', url: '/api/users/loginWithToken', payload: { apiToken: apiOnly } })).json().id as string;
  for (const [name, cred] of [
    ['api token', apiOnly],
    ['sdk-key JWT', jwt],
    ['session', session],
  ] as const) {
    const admin = await h.inject({ method: 'GET', url: '/admin/users', headers: bearer(cred) });
    t.equal(admin.statusCode, 403, `${name}: /admin`);
    t.equal(admin.json().error, 'insufficient_scope');
    const mint = await h.inject({ method: 'POST', url: '/api/access-tokens', headers: bearer(cred), payload: { name: 'x', scopes: ['api', 'admin'] } });
    t.equal(mint.statusCode, 403, `${name}: cannot mint an admin token`);
    const mintQ = await h.inject({ method: 'POST', url: '/api/access-tokens', headers: bearer(cred), payload: { name: 'x', scopes: ['quantum_tokens'] } });
    t.equal(mintQ.statusCode, 403, `${name}: cannot mint a scope it lacks`);
    const sdk = await h.inject({ method: 'POST', url: '/api/sdk-keys', headers: bearer(cred), payload: { name: 'x', scopes: ['api', 'introspect'] } });
    t.ok([403, 409].includes(sdk.statusCode), `${name}: cannot make an SDK key with a scope it lacks (${sdk.statusCode})`);
    const own = await h.inject({ method: 'PUT', url: `/api/organizations/${lab.id}/members/${user.id}`, headers: bearer(cred), payload: { role: 'owner' } });
    t.equal(own.statusCode, 403, `${name}: a member cannot make themselves owner`);
  }
  const rows = await h.db.selectFrom('api_tokens').select('scopes').where('user_id', '=', user.id).execute();
  t.ok(
    rows.every((r) => !r.scopes.includes('admin')),
    'no admin token was minted',
  );
  const m = await h.db
    .selectFrom('memberships' as never)
    .selectAll()
    .execute()
    .catch(() => null);
  if (m) t.ok((m as Array<{ user_id: string; role: string }>).filter((r) => r.user_id === user.id).every((r) => r.role === 'member'));
  // A token narrowed at the token endpoint cannot be widened by asking again with it.
  t.same(
    (
      await h.inject({
        method: 'POST',
        url: '/oauth/token',
        headers: { ...bearer(jwt), 'content-type': 'application/x-www-form-urlencoded' },
        payload: 'grant_type=client_credentials&scope=admin',
      })
    ).statusCode,
    401,
  );
});

t.test('secrets are never readable after creation: not in any response, log of audit, or table', async (t) => {
  const h = await harness(t);
  const user = await h.user();
  const token = await h.apiToken(user, ['api', 'quantum_tokens', 'admin']);
  const key = await createSdkKey(h, user);
  const created = await h.inject({ method: 'POST', url: '/api/access-tokens', headers: bearer(token), payload: { name: 'pat', scopes: ['api'] } });
  const pat = created.json().token as string;
  t.ok(pat);
  const session = (await h.inject({ method: 'POST', url: '/api/users/loginWithToken', payload: { apiToken: pat } })).json().id as string;
  const providerSecret = 'ionq-provider-secret-0123456789';
  await h.inject({ method: 'PUT', url: '/api/provider-tokens/ionq', headers: bearer(token), payload: { credential: { api_key: providerSecret } } });
  const rotated = await h.inject({ method: 'POST', url: `/api/sdk-keys/${key.client_id}/secret`, headers: bearer(token), payload: {} });
  const other = await h.inject({ method: 'POST', url: '/api/access-tokens', headers: bearer(token), payload: { name: 'pat2', scopes: ['api'] } });
  const regenerated = await h.inject({ method: 'POST', url: `/api/access-tokens/${other.json().id}/regenerate`, headers: bearer(token) });
  const secrets = {
    sdk: key.client_secret,
    pat,
    session,
    provider: providerSecret,
    'rotated sdk': rotated.json().client_secret as string,
    'regenerated pat': regenerated.json().token as string,
    'replaced pat': other.json().token as string,
  };
  t.ok(
    Object.values(secrets).every((v) => typeof v === 'string' && v.length >= 20),
    'every secret was issued',
  );

  const reads = [
    '/api/sdk-keys',
    `/api/sdk-keys/${key.client_id}`,
    '/api/access-tokens',
    '/api/provider-tokens',
    '/api/provider-tokens/ionq',
    '/api/users/me',
    '/admin/audit-events',
    `/admin/users/${user.id}`,
  ];
  for (const url of reads) {
    const res = await h.inject({ method: 'GET', url, headers: bearer(token) });
    t.ok(res.statusCode < 500, `${url}: ${res.statusCode}`);
    for (const [name, s] of Object.entries(secrets)) t.notOk(res.body.includes(s), `${url} does not contain the ${name} secret`);
  }
  // Every table, every column, as text: no secret in clear.
  const tables = await sql<{ name: string }>`select table_name as name from information_schema.tables where table_schema = 'public'`.execute(h.db);
  for (const { name } of tables.rows) {
    const dump = await sql<{ j: string }>`select coalesce(json_agg(t)::text, '') as j from ${sql.table(name)} as t`.execute(h.db);
    const text = dump.rows[0]!.j;
    for (const [what, s] of Object.entries(secrets)) t.notOk(text.includes(s), `${name} holds no ${what} secret in clear`);
  }
});
