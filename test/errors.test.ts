import t from 'tap';
import type { FastifyInstance } from 'fastify';
import { harness, bearer } from './support/helper.js';
import { sql, type Transaction } from 'kysely';
import type { Database } from '../src/platform/database/database.js';
import { ApiError } from '../src/platform/errors/api-error.js';
import { invalidClient } from '../src/platform/errors/oauth-error.js';

// Probe routes exercise the shared parsers, validation and error handler exactly as features use them.
function probes(app: FastifyInstance) {
  const body = {
    type: 'object',
    additionalProperties: false,
    required: ['name'],
    properties: { name: { type: 'string', minLength: 1, maxLength: 50 }, count: { type: 'integer' } },
  } as const;
  app.post('/api/probe', { schema: { hide: true, body } }, async (req) => ({ ok: true, got: req.body }));
  app.post('/oauth/probe', { schema: { hide: true, body }, config: { errorFormat: 'oauth' } }, async () => ({ ok: true }));
  app.get('/api/probe/boom', { schema: { hide: true } }, async () => {
    throw new Error('secret internals: select * from users where password = 42');
  });
  app.get('/api/probe/conflict', { schema: { hide: true } }, async () => {
    throw new ApiError(409, 'limit_exceeded', 'two is the most', {}, { limit: 2 });
  });
  app.get('/oauth/probe/client', { schema: { hide: true }, config: { errorFormat: 'oauth' } }, async () => {
    throw invalidClient();
  });
  app.get('/api/probe/db-down', { schema: { hide: true } }, async () => {
    throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
  });
  // Two transactions locking two rows in opposite orders: Postgres ends one of them with 40P01.
  app.get('/api/probe/deadlock', { schema: { hide: true } }, async () => {
    await app.db.schema
      .createTable('probe_rows')
      .ifNotExists()
      .addColumn('id', 'integer', (c) => c.primaryKey())
      .execute();
    await app.db
      .insertInto('probe_rows' as never)
      .values([{ id: 1 }, { id: 2 }] as never)
      .onConflict((oc) => oc.doNothing())
      .execute();
    const lock = (trx: Transaction<Database>, id: number) => sql`select id from probe_rows where id = ${id} for update`.execute(trx);
    let bothHoldOne!: () => void;
    let held = 0;
    const gate = new Promise<void>((resolve) => (bothHoldOne = resolve));
    const cross = (first: number, second: number) =>
      app.db.transaction().execute(async (trx) => {
        await lock(trx, first);
        if (++held === 2) bothHoldOne();
        await gate;
        await lock(trx, second);
      });
    await Promise.all([cross(1, 2), cross(2, 1)]);
    return { ok: true };
  });
  app.get('/api/probe/auth', { schema: { hide: true }, preHandler: app.requireAuth('api') }, async (req) => ({
    user: req.principal?.userId,
    kind: req.principal?.kind,
  }));
  app.get('/api/probe/admin', { schema: { hide: true }, preHandler: app.requireAuth('admin') }, async () => ({ ok: true }));
}

t.test('malformed JSON, wrong content type, empty and oversized bodies get clear 4xx JSON errors', async (t) => {
  const h = await harness(t, { routes: probes });
  const bad = await h.inject({ method: 'POST', url: '/api/probe', headers: { 'content-type': 'application/json' }, payload: '{"name":' });
  t.equal(bad.statusCode, 400);
  t.equal(bad.json().error, 'invalid_request');
  t.notMatch(bad.body, /at .*\.js:\d+/, 'no stack trace');

  const xml = await h.inject({ method: 'POST', url: '/api/probe', headers: { 'content-type': 'application/xml' }, payload: '<a/>' });
  t.equal(xml.statusCode, 415);
  t.equal(xml.json().error, 'unsupported_media_type');

  const empty = await h.inject({ method: 'POST', url: '/api/probe', headers: { 'content-type': 'application/json' }, payload: '' });
  t.equal(empty.statusCode, 400);
  t.equal(empty.json().error, 'invalid_request');

  const big = await h.inject({
    method: 'POST',
    url: '/api/probe',
    headers: { 'content-type': 'application/json' },
    payload: JSON.stringify({ name: 'x', pad: 'y'.repeat(70 * 1024) }),
  });
  t.equal(big.statusCode, 413);
  t.equal(big.json().error, 'payload_too_large');
});

t.test('schema violations are 400 naming the field; unknown fields are refused, not dropped', async (t) => {
  const h = await harness(t, { routes: probes });
  const missing = await h.inject({ method: 'POST', url: '/api/probe', payload: { count: 1 } });
  t.equal(missing.statusCode, 400);
  t.same(Object.keys(missing.json()).sort(), ['error', 'message']);
  t.match(missing.json().message, /name/);
  const extra = await h.inject({ method: 'POST', url: '/api/probe', payload: { name: 'a', admin: true } });
  t.equal(extra.statusCode, 400);
  t.match(extra.json().message, /admin/);
  const ok = await h.inject({ method: 'POST', url: '/api/probe', payload: { name: 'a', count: 2 } });
  t.equal(ok.statusCode, 200);
  t.same(ok.json(), { ok: true, got: { name: 'a', count: 2 } });
});

t.test('OAuth routes answer RFC 6749 §5.2 bodies, with no-store', async (t) => {
  const h = await harness(t, { routes: probes });
  const res = await h.inject({ method: 'POST', url: '/oauth/probe', payload: { count: 'x' } });
  t.equal(res.statusCode, 400);
  t.equal(res.json().error, 'invalid_request');
  t.type(res.json().error_description, 'string');
  t.same(Object.keys(res.json()).sort(), ['error', 'error_description']);
  t.equal(res.headers['cache-control'], 'no-store');

  const client = await h.inject({ method: 'GET', url: '/oauth/probe/client' });
  t.equal(client.statusCode, 401);
  t.same(client.json(), { error: 'invalid_client', error_description: 'client authentication failed' });
  t.equal(client.headers['www-authenticate'], 'Basic realm="tessera"');

  const nf = await h.inject({ method: 'GET', url: '/oauth/nothing' });
  t.equal(nf.statusCode, 404);
  t.equal(nf.json().error, 'invalid_request');
  t.type(nf.json().error_description, 'string');
});

t.test('internal errors are 500 without details; API errors keep their code and details', async (t) => {
  const h = await harness(t, { routes: probes });
  const boom = await h.inject({ method: 'GET', url: '/api/probe/boom' });
  t.equal(boom.statusCode, 500);
  t.equal(boom.json().error, 'internal_error');
  t.notMatch(boom.body, /select|password|secret internals/);
  t.match(boom.json().message, /x-request-id/);
  const c = await h.inject({ method: 'GET', url: '/api/probe/conflict' });
  t.equal(c.statusCode, 409);
  t.same(c.json(), { limit: 2, error: 'limit_exceeded', message: 'two is the most' });
});

t.test('a database outage is a 503 with Retry-After, not a 500', async (t) => {
  const h = await harness(t, { routes: probes });
  const res = await h.inject({ method: 'GET', url: '/api/probe/db-down' });
  t.equal(res.statusCode, 503);
  t.equal(res.json().error, 'service_unavailable');
  t.equal(res.headers['retry-after'], '1');
  t.notMatch(res.body, /ECONNREFUSED|5432/);
});

t.test('a deadlock between two requests is a 503 with Retry-After (nothing written; retry), not a 500', async (t) => {
  const h = await harness(t, { routes: probes });
  const res = await h.inject({ method: 'GET', url: '/api/probe/deadlock' });
  t.equal(res.statusCode, 503);
  t.same(res.json(), { error: 'service_unavailable', message: 'a concurrent change conflicted with this request; nothing was changed, retry it' });
  t.equal(res.headers['retry-after'], '1');
});

t.test('bearer authentication with API tokens (RFC 6750)', async (t) => {
  const h = await harness(t, { routes: probes });
  const user = await h.user();
  const token = await h.apiToken(user, ['api']);

  const none = await h.inject({ method: 'GET', url: '/api/probe/auth' });
  t.equal(none.statusCode, 401);
  t.equal(none.json().error, 'invalid_token');
  t.equal(none.headers['www-authenticate'], 'Bearer realm="tessera"');

  const ok = await h.inject({ method: 'GET', url: '/api/probe/auth', headers: bearer(token) });
  t.equal(ok.statusCode, 200);
  t.same(ok.json(), { user: user.id, kind: 'api_token' });

  const lower = await h.inject({ method: 'GET', url: '/api/probe/auth', headers: { authorization: `bearer ${token}` } });
  t.equal(lower.statusCode, 200, 'the scheme is case-insensitive');

  const viaHeader = await h.inject({ method: 'GET', url: '/api/probe/auth', headers: { 'x-access-token': token } });
  t.equal(viaHeader.statusCode, 200, 'x-access-token carries the same credential');

  const both = await h.inject({ method: 'GET', url: '/api/probe/auth', headers: { ...bearer(token), 'x-access-token': 'other' } });
  t.equal(both.statusCode, 400, 'two different credentials in one request are refused');

  // One character changed: the checksum fails before any lookup.
  const last = token.at(-1) === 'A' ? 'B' : 'A';
  const typo = await h.inject({ method: 'GET', url: '/api/probe/auth', headers: bearer(token.slice(0, -1) + last) });
  t.equal(typo.statusCode, 401);
  t.match(typo.headers['www-authenticate'], /error="invalid_token"/);

  const basic = await h.inject({ method: 'GET', url: '/api/probe/auth', headers: { authorization: 'Basic YTpi' } });
  t.equal(basic.statusCode, 401);

  const scope = await h.inject({ method: 'GET', url: '/api/probe/admin', headers: bearer(token) });
  t.equal(scope.statusCode, 403);
  t.equal(scope.json().error, 'insufficient_scope');
  t.match(scope.headers['www-authenticate'], /error="insufficient_scope", scope="admin"/);
});

t.test('revoked, expired tokens and suspended users are refused', async (t) => {
  const h = await harness(t, { routes: probes });
  const user = await h.user();
  const revoked = await h.apiToken(user);
  await h.db.updateTable('api_tokens').set({ revoked_at: new Date() }).execute();
  t.equal((await h.inject({ method: 'GET', url: '/api/probe/auth', headers: bearer(revoked) })).statusCode, 401);

  const expiring = await h.apiToken(user);
  await h.db
    .updateTable('api_tokens')
    .set({ expires_at: new Date(h.clock.now() + 60_000) })
    .where('revoked_at', 'is', null)
    .execute();
  t.equal((await h.inject({ method: 'GET', url: '/api/probe/auth', headers: bearer(expiring) })).statusCode, 200);
  h.clock.advance(61);
  t.equal((await h.inject({ method: 'GET', url: '/api/probe/auth', headers: bearer(expiring) })).statusCode, 401);

  const other = await h.user();
  const tok = await h.apiToken(other);
  await h.db.updateTable('users').set({ status: 'suspended' }).where('id', '=', other.id).execute();
  t.equal((await h.inject({ method: 'GET', url: '/api/probe/auth', headers: bearer(tok) })).statusCode, 401);
});

t.test('refusals (4xx) carry no stack and leave stack capture as it was; 5xx errors keep theirs', async (t) => {
  const frames = (e: Error) => (e.stack ?? '').split('\n').filter((l) => /^\s+at /.test(l)).length;
  const limit = Error.stackTraceLimit;
  t.equal(frames(new ApiError(401, 'invalid_token', 'no')), 0, 'a 401 ApiError has no frames');
  t.equal(frames(invalidClient()), 0, 'an invalid_client OAuthError has no frames');
  t.match(new ApiError(401, 'invalid_token', 'the reason').stack, /the reason/, 'the message is still in it');
  t.ok(frames(new ApiError(500, 'internal_error', 'broken')) > 0, 'a 500 ApiError has its frames');
  t.equal(Error.stackTraceLimit, limit, 'the process-wide limit is restored');
  t.ok(frames(new Error('plain')) > 0, 'other errors made afterwards have frames');
});
