import t from 'tap';
import { bearer, harness } from './support/helper.js';

const xat = (token: string) => ({ 'x-access-token': token });

t.test('gateway verify: 200 with identity headers for API tokens and sessions, empty body, no-store', async (t) => {
  const h = await harness(t);
  const u = await h.user();
  const apiToken = await h.apiToken(u, ['api', 'quantum_tokens']);
  const session = (await h.inject({ method: 'POST', url: '/api/users/loginWithToken', payload: { apiToken } })).json().id;
  for (const [what, headers] of [
    ['API token', bearer(apiToken)],
    ['session via x-access-token', xat(session)],
    ['session via Bearer', bearer(session)],
  ] as const) {
    const res = await h.inject({ method: 'GET', url: '/gateway/verify', headers });
    t.equal(res.statusCode, 200, what);
    t.equal(res.headers['x-tessera-subject'], u.id, `${what}: subject`);
    t.equal(res.headers['x-tessera-scopes'], 'api quantum_tokens', `${what}: scopes`);
    t.equal(res.headers['x-tessera-client-id'], '', `${what}: no client`);
    t.equal(res.headers['x-tessera-org-id'], '', `${what}: no org`);
    t.equal(res.headers['cache-control'], 'no-store');
    t.equal(res.body, '', 'empty body');
  }
  const scoped = await h.inject({ method: 'GET', url: '/gateway/verify?scope=quantum_tokens', headers: xat(session) });
  t.equal(scoped.statusCode, 200);
  const both = await h.inject({ method: 'GET', url: '/gateway/verify?scope=api%20quantum_tokens', headers: xat(session) });
  t.equal(both.statusCode, 200);
});

t.test('gateway verify: 401 with a Bearer challenge, 403 for a missing scope, 400 for nonsense', async (t) => {
  const h = await harness(t);
  const u = await h.user();
  const apiToken = await h.apiToken(u, ['api']);
  const none = await h.inject({ method: 'GET', url: '/gateway/verify' });
  t.equal(none.statusCode, 401);
  t.equal(none.headers['www-authenticate'], 'Bearer realm="tessera"');
  t.equal(none.headers['cache-control'], 'no-store');
  for (const token of ['tsr_ses_' + 'a'.repeat(49), 'tsr_pat_' + 'b'.repeat(49), 'opaque-garbage', apiToken.slice(0, -1) + 'Z']) {
    const res = await h.inject({ method: 'GET', url: '/gateway/verify', headers: bearer(token) });
    t.equal(res.statusCode, 401, token.slice(0, 12));
    t.match(res.headers['www-authenticate'], /^Bearer realm="tessera", error="invalid_token"/);
    t.equal(res.headers['x-tessera-subject'], undefined, 'no identity on failure');
  }
  const basic = await h.inject({ method: 'GET', url: '/gateway/verify', headers: { authorization: 'Basic Zm9vOmJhcg==' } });
  t.equal(basic.statusCode, 401);
  const lacking = await h.inject({ method: 'GET', url: '/gateway/verify?scope=quantum_tokens', headers: bearer(apiToken) });
  t.equal(lacking.statusCode, 403);
  t.same(lacking.json(), { error: 'insufficient_scope', message: 'this request needs scope: quantum_tokens' });
  t.equal(lacking.headers['www-authenticate'], 'Bearer realm="tessera", error="insufficient_scope", scope="quantum_tokens"');
  const twoTokens = await h.inject({ method: 'GET', url: '/gateway/verify', headers: { ...bearer(apiToken), 'x-access-token': 'tsr_ses_other' } });
  t.equal(twoTokens.statusCode, 400);
  const badScope = await h.inject({ method: 'GET', url: '/gateway/verify?scope=a%22b', headers: bearer(apiToken) });
  t.equal(badScope.statusCode, 400);
  const extra = await h.inject({ method: 'GET', url: '/gateway/verify?x=1', headers: bearer(apiToken) });
  t.equal(extra.statusCode, 400);
});

t.test('gateway verify answers verified sessions from memory', async (t) => {
  const h = await harness(t);
  const u = await h.user();
  const session = (await h.inject({ method: 'POST', url: '/api/users/loginWithToken', payload: { apiToken: await h.apiToken(u) } })).json().id;
  t.equal((await h.inject({ method: 'GET', url: '/gateway/verify', headers: xat(session) })).statusCode, 200);
  // Take the database away from the pool: a cached session still verifies.
  let queries = 0;
  const pool = h.handle.pool;
  const orig = pool.query.bind(pool);
  (pool as unknown as { query: unknown }).query = (...args: unknown[]) => {
    queries++;
    return (orig as (...a: unknown[]) => unknown)(...args);
  };
  const origConnect = pool.connect.bind(pool);
  (pool as unknown as { connect: unknown }).connect = (...args: unknown[]) => {
    queries++;
    return (origConnect as (...a: unknown[]) => unknown)(...args);
  };
  for (let i = 0; i < 20; i++) t.equal((await h.inject({ method: 'GET', url: '/gateway/verify', headers: xat(session) })).statusCode, 200);
  t.equal(queries, 0, 'no query on the pool for cached sessions');
});
