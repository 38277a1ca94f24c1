// Pool exhaustion: TESSERA_DB_POOL_MAX=2 with both connections held by pg_sleep. Requests
// that need Postgres get a fast 503 with Retry-After; the event loop stays free (/healthz answers,
// cached clients still get tokens); everything works again once the connections come back.
import t from 'tap';
import { sql } from 'kysely';
import { isDatabaseUnavailable } from '../src/platform/errors/handler.js';
import { buildApp } from '../src/app.js';
import { createDb } from '../src/platform/database/database.js';
import { migrateToLatest } from '../src/platform/database/migrate.js';
import { createUser } from '../src/identity/users.repository.js';
import { issueApiToken } from '../src/api-tokens/api-tokens.service.js';
import { contractValidator, freshDatabase, testConfig } from './support/helper.js';
import { basic } from './support/oauth-helper.js';

t.test('a pool held by slow queries: fast 503s, responsive event loop, /healthz answers, recovery', async (t) => {
  const connectionString = await freshDatabase(t);
  const config = testConfig(connectionString, { TESSERA_DB_POOL_MAX: '2', TESSERA_DB_CONNECT_TIMEOUT_MS: '300' });
  t.equal(config.dbPoolMax, 2);
  const handle = createDb({ connectionString, max: config.dbPoolMax, connectionTimeoutMillis: config.dbConnectTimeoutMs });
  await migrateToLatest(handle.db);
  const validator = contractValidator(t);
  const app = await buildApp({ config, db: handle.db, connectionString, logger: false, inspectResponse: validator.inspect });
  t.teardown(async () => {
    await app.close();
    await handle.close();
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  await app.jobs.start();
  const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  const user = await createUser(handle.db, { email: 'pool@example.com', name: 'Pool' });
  const { token: apiToken } = await issueApiToken(handle.db, config.pepper, { userId: user.id, name: 't', scopes: ['api'], expiresAt: null });
  const keyRes = await fetch(`${url}/api/sdk-keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiToken}`, 'content-type': 'application/json' },
    body: '{"name":"k"}',
  });
  const key = (await keyRes.json()) as { client_id: string; client_secret: string };
  const tokenReq = () =>
    fetch(`${url}/oauth/token`, {
      method: 'POST',
      headers: { authorization: basic(key.client_id, key.client_secret), 'content-type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=client_credentials',
    });
  await new Promise((r) => setTimeout(r, 200));
  t.equal((await tokenReq()).status, 200, 'warm: the client is cached');

  // Hold every connection of the pool.
  let heldBack = false;
  const held = Promise.all([0, 1].map(() => handle.pool.query('select pg_sleep(3)'))).then(() => {
    heldBack = true;
  });
  await new Promise((r) => setTimeout(r, 100));
  t.equal(handle.pool.totalCount, 2);
  t.equal(handle.pool.idleCount, 0, 'no idle connection left');

  // Event-loop lag sampled while the pool is exhausted.
  let maxLag = 0;
  let last = performance.now();
  const lagTimer = setInterval(() => {
    const now = performance.now();
    maxLag = Math.max(maxLag, now - last - 10);
    last = now;
  }, 10);
  const started = Date.now();
  const timed = async (p: Promise<Response>) => {
    const s = Date.now();
    const res = await p;
    return { status: res.status, ms: Date.now() - s, retryAfter: res.headers.get('retry-after'), body: await res.text() };
  };
  const needDb = await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      timed(
        i % 2
          ? fetch(`${url}/api/users/loginWithToken`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ apiToken }) })
          : fetch(`${url}/api/users/me`, { headers: { authorization: `Bearer ${apiToken}` } }),
      ),
    ),
  );
  const [health, token, ready] = await Promise.all([timed(fetch(`${url}/healthz`)), timed(tokenReq()), timed(fetch(`${url}/readyz`))]);
  clearInterval(lagTimer);
  const elapsed = Date.now() - started;
  // Ordering, not timing: every answer came while both connections were still held.
  t.notOk(heldBack, `all answered (in ${elapsed} ms) while the pool was still exhausted: they failed fast instead of queueing`);
  for (const r of needDb) {
    t.equal(r.status, 503, 'a request needing Postgres gets 503');
    t.equal(r.retryAfter, '1', 'with Retry-After');
    t.equal(JSON.parse(r.body).error, 'service_unavailable');
  }
  t.equal(health.status, 200, '/healthz answers');
  t.equal(token.status, 200, 'a cached client still gets tokens (no connection needed)');
  t.equal(ready.status, 503, '/readyz reports the database as unavailable');
  t.pass(`event-loop lag while exhausted: max ${Math.round(maxLag)} ms (informational)`);

  await held;
  const again = await fetch(`${url}/api/users/me`, { headers: { authorization: `Bearer ${apiToken}` } });
  t.equal(again.status, 200, 'works again once the connections are back');
  t.equal((await fetch(`${url}/readyz`)).status, 200);
});

t.test('a checked-out connection whose server goes away fails its next query; the process does not crash', async (t) => {
  const connectionString = await freshDatabase(t);
  const handle = createDb({ connectionString, max: 2 });
  const killer = createDb({ connectionString, max: 1 });
  t.teardown(async () => {
    await handle.close();
    await killer.close();
  });
  // As Kysely holds a client between the statements of a transaction.
  const client = await handle.pool.connect();
  const { rows } = await client.query<{ pid: number }>('select pg_backend_pid() as pid');
  await sql`select pg_terminate_backend(${rows[0]!.pid})`.execute(killer.db);
  // The server's FATAL and the closed socket arrive as an 'error' event on a client the pool does
  // not watch while checked out: without a listener of our own it is an uncaught exception.
  await new Promise((r) => setTimeout(r, 300));
  const failed = await client.query('select 1').then(
    () => null,
    (err: Error) => err,
  );
  t.ok(failed, 'the broken client fails its next query');
  t.ok(isDatabaseUnavailable(failed), 'as "database unavailable" (a 503)');
  client.release();
  const again = await sql<{ one: number }>`select 1 as one`.execute(handle.db);
  t.equal(again.rows[0]!.one, 1, 'the pool dropped the broken client and serves with a new one');
});
