// A stalled database (a lock held by another session) must not hold requests without bound: every
// statement and lock wait of the request pool is bounded, and its end is a 503 with Retry-After.
import t from 'tap';
import pg from 'pg';
import { sql } from 'kysely';
import { buildApp } from '../src/app.js';
import { createDb } from '../src/platform/database/database.js';
import { migrateToLatest } from '../src/platform/database/migrate.js';
import { createUser } from '../src/identity/users.repository.js';
import { issueApiToken } from '../src/api-tokens/api-tokens.service.js';
import { isDatabaseUnavailable } from '../src/platform/errors/handler.js';
import { loadConfig } from '../src/platform/config.js';
import { freshDatabase, testConfig } from './support/helper.js';

t.test('a table locked by another session: 100 concurrent logins are all answered 503 with Retry-After while it is held, then logins work again', async (t) => {
  const connectionString = await freshDatabase(t);
  const config = testConfig(connectionString, { TESSERA_DB_STATEMENT_TIMEOUT_MS: '1500' });
  const handle = createDb({
    connectionString,
    max: config.dbPoolMax,
    connectionTimeoutMillis: config.dbConnectTimeoutMs,
    statementTimeoutMs: config.dbStatementTimeoutMs,
  });
  await migrateToLatest(handle.db);
  const app = await buildApp({ config, db: handle.db, connectionString, logger: false });
  const locker = new pg.Client({ connectionString });
  await locker.connect();
  t.teardown(async () => {
    await locker.end().catch(() => undefined);
    await app.close();
    await handle.close();
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  await app.jobs.start();
  const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  const user = await createUser(handle.db, { email: 'lock@example.com', name: 'Lock' });
  const { token: apiToken } = await issueApiToken(handle.db, config.pepper, { userId: user.id, name: 't', scopes: ['api'], expiresAt: null });
  const login = () =>
    fetch(`${url}/api/users/loginWithToken`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ apiToken }) });
  t.equal((await login()).status, 200, 'a login before the lock');

  await locker.query('begin');
  await locker.query('lock table sessions in access exclusive mode');
  let released = false;
  // The lock is held for 12 s at most; it is let go as soon as every request has been answered.
  const holder = setTimeout(() => {
    released = true;
    // Detached (only when the test overran): the assertions below report the overrun; a failed commit is ignored.
    void locker.query('commit').catch(() => undefined);
  }, 12_000);

  const started = Date.now();
  const answers = await Promise.all(
    Array.from({ length: 100 }, async () => {
      const res = await login();
      return { status: res.status, retryAfter: res.headers.get('retry-after'), body: await res.text() };
    }),
  );
  const elapsed = Date.now() - started;
  t.notOk(released, `every login was answered (in ${elapsed} ms) while the lock was still held`);
  t.ok(elapsed < 10_000, 'within 10 s');
  clearTimeout(holder);
  const statuses = new Map<number, number>();
  for (const a of answers) statuses.set(a.status, (statuses.get(a.status) ?? 0) + 1);
  t.same(Object.fromEntries(statuses), { 503: 100 }, 'every one a 503');
  for (const a of answers) {
    t.equal(a.retryAfter, '1', 'with Retry-After');
    t.equal(JSON.parse(a.body).error, 'service_unavailable');
  }

  await locker.query('commit');
  released = true;
  const after = await login();
  t.equal(after.status, 200, 'a login after the lock is released');
  const again = await Promise.all(Array.from({ length: 20 }, () => login()));
  t.same([...new Set(again.map((r) => r.status))], [200], 'the instance serves normally again');
  t.equal(handle.pool.waitingCount, 0, 'no request waits for a connection');
});

t.test('a statement past the bound, and a lock waited for past it, are "database unavailable" errors', async (t) => {
  const connectionString = await freshDatabase(t);
  const bounded = createDb({ connectionString, max: 2, statementTimeoutMs: 300 });
  const free = createDb({ connectionString, max: 1 });
  t.teardown(async () => {
    await bounded.close();
    await free.close();
  });
  const slow = await sql`select pg_sleep(5)`.execute(bounded.db).then(
    () => null,
    (e: unknown) => e,
  );
  t.equal((slow as { code?: string }).code, '57014', 'statement_timeout cancels it');
  t.ok(isDatabaseUnavailable(slow));

  const holder = await free.pool.connect();
  await holder.query('begin');
  await holder.query('select pg_advisory_xact_lock(42)');
  const waited = await sql`select pg_advisory_xact_lock(42)`.execute(bounded.db).then(
    () => null,
    (e: unknown) => e,
  );
  t.ok(['55P03', '57014'].includes((waited as { code?: string }).code ?? ''), 'lock_timeout ends the wait');
  t.ok(isDatabaseUnavailable(waited));
  await holder.query('commit');
  holder.release();

  t.ok(isDatabaseUnavailable(new Error('Query read timeout')), "pg's client-side query_timeout too");
  t.ok(isDatabaseUnavailable({ code: '25P03', message: 'terminating connection due to idle-in-transaction timeout' }));

  // An unbounded pool (migrations, the CLI) is not cut short.
  const long = await sql<{ ok: number }>`select 1 as ok from pg_sleep(0.5)`.execute(free.db);
  t.equal(long.rows[0]!.ok, 1);
});

t.test('TESSERA_DB_STATEMENT_TIMEOUT_MS: default 5 s, 0 turns it off, nonsense names the variable', async (t) => {
  const base = { DATABASE_URL: 'postgres://x@localhost/x', TESSERA_MASTER_KEY: Buffer.alloc(32, 1).toString('base64'), TESSERA_PEPPER: 'p'.repeat(32) };
  t.equal(loadConfig(base).config.dbStatementTimeoutMs, 5000);
  t.equal(loadConfig({ ...base, TESSERA_DB_STATEMENT_TIMEOUT_MS: '0' }).config.dbStatementTimeoutMs, 0);
  t.equal(loadConfig({ ...base, TESSERA_DB_STATEMENT_TIMEOUT_MS: '2500' }).config.dbStatementTimeoutMs, 2500);
  for (const bad of ['fast', '50', '-1', '700000']) {
    t.throws(() => loadConfig({ ...base, TESSERA_DB_STATEMENT_TIMEOUT_MS: bad }), /TESSERA_DB_STATEMENT_TIMEOUT_MS/);
  }
});
