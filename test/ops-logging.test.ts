// Operations logging: one line per failed connection, 503s summarised instead of one line each,
// last-used stamps retried after a failed flush.
import t from 'tap';
import { Writable } from 'node:stream';
import pino from 'pino';
import { sql } from 'kysely';
import { buildApp } from '../src/app.js';
import { createDb } from '../src/platform/database/database.js';
import { migrateToLatest } from '../src/platform/database/migrate.js';
import { createUser } from '../src/identity/users.repository.js';
import { issueApiToken } from '../src/api-tokens/api-tokens.service.js';
import { UnavailableLog } from '../src/platform/errors/unavailable-log.js';
import { UsageStamps, type UsageTarget } from '../src/platform/database/usage-stamps.js';
import { loggerOptions } from '../src/platform/log.js';
import { freshDatabase, harness, testConfig } from './support/helper.js';

function capture(level = 'info') {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l.trim()) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { log: pino(loggerOptions(level), stream), lines, msgs: () => lines.map((l) => String(l.msg)) };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('a connection dropped by the server is logged once: as idle when idle, as in use when checked out', async (t) => {
  const connectionString = await freshDatabase(t);
  const { log, msgs } = capture();
  const handle = createDb({ connectionString, max: 2, log });
  const killer = createDb({ connectionString, max: 1 });
  t.teardown(async () => {
    await handle.close();
    await killer.close();
  });
  const pidOf = async (c: { query: (q: string) => Promise<{ rows: Array<{ pid: number }> }> }) =>
    (await c.query('select pg_backend_pid() as pid')).rows[0]!.pid;

  // Idle: taken, used, given back; then its backend is terminated (as a Postgres restart does).
  const idle = await handle.pool.connect();
  const idlePid = await pidOf(idle);
  idle.release();
  await sql`select pg_terminate_backend(${idlePid})`.execute(killer.db);
  await sleep(400);
  t.same(msgs(), ['idle database connection failed'], 'one line, and not "failed while in use"');

  // Checked out: the failure is logged as in use, once.
  const busy = await handle.pool.connect();
  const busyPid = await pidOf(busy);
  await sql`select pg_terminate_backend(${busyPid})`.execute(killer.db);
  await sleep(400);
  t.same(msgs(), ['idle database connection failed', 'database connection failed while in use']);
  t.ok(
    await busy.query('select 1').then(
      () => false,
      () => true,
    ),
    'its next query fails',
  );
  busy.release(new Error('broken'));
  const again = await sql<{ one: number }>`select 1 as one`.execute(handle.db);
  t.equal(again.rows[0]!.one, 1, 'the pool serves with a new connection');
  t.equal(msgs().length, 2, 'nothing more logged');
});

t.test('503s during an outage: one warning at once, then one line per interval with the count', async (t) => {
  const warned: Array<{ obj: Record<string, unknown>; msg: string; from: string }> = [];
  const logger = (from: string) => ({ warn: (obj: Record<string, unknown>, msg: string) => void warned.push({ obj, msg, from }) }) as never;
  const summary = new UnavailableLog(logger('app'), 200);
  const err = Object.assign(new Error('connection refused'), { code: 'ECONNREFUSED' });
  for (let i = 0; i < 50; i++) summary.record(err, logger('request'));
  t.equal(warned.length, 1, 'the first 503 is logged at once');
  t.equal(warned[0]!.from, 'request', 'with its request');
  await sleep(300);
  t.equal(warned.length, 2, 'then one summary');
  t.equal(warned[1]!.obj.count, 49);
  t.match(warned[1]!.msg, /49 more requests answered 503/);
  t.same(warned[1]!.obj.err, { message: 'connection refused', code: 'ECONNREFUSED' });
  for (let i = 0; i < 5; i++) summary.record(err, logger('request'));
  await sleep(250);
  t.equal(warned.length, 3);
  t.equal(warned[2]!.obj.count, 5);
  await sleep(500);
  t.equal(warned.length, 3, 'quiet intervals log nothing');
  summary.record(err, logger('request'));
  t.equal(warned.length, 4, 'after a quiet interval the next 503 is logged at once again');
  t.equal(warned[3]!.from, 'request');
  summary.record(err, logger('request'));
  summary.close();
  t.equal(warned.length, 5, 'close writes what is still counted');
  t.equal(warned[4]!.obj.count, 1);
});

t.test('an app answering 503s writes one warning, not one per request', async (t) => {
  const connectionString = await freshDatabase(t);
  const config = testConfig(connectionString, { TESSERA_LOG_LEVEL: 'warn' });
  const setup = createDb({ connectionString, max: 1 });
  await migrateToLatest(setup.db);
  const user = await createUser(setup.db, { email: 'outage@example.com', name: 'Outage' });
  const { token } = await issueApiToken(setup.db, config.pepper, { userId: user.id, name: 't', scopes: ['api'], expiresAt: null });
  await setup.close();
  const handle = createDb({ connectionString, max: 1 });
  const { log, lines } = capture('warn');
  const app = await buildApp({ config, db: handle.db, connectionString, logger: log });
  await app.ready();
  await app.jobs.start();
  let closed = false;
  t.teardown(async () => {
    if (!closed) await app.close();
    await handle.close();
  });
  // The pool's only connection is held: every request needing Postgres gets 503 (fast).
  await sleep(300); // start-up work in the background settles
  (handle.pool as unknown as { options: { connectionTimeoutMillis: number } }).options.connectionTimeoutMillis = 100;
  const held = handle.pool.query('select pg_sleep(2)');
  await sleep(100);
  const answers = await Promise.all(
    Array.from({ length: 40 }, () => app.inject({ method: 'GET', url: '/api/users/me', headers: { authorization: `Bearer ${token}` } })),
  );
  t.same([...new Set(answers.map((r) => r.statusCode))], [503]);
  const unavailable = () => lines.filter((l) => /database unavailable/.test(String(l.msg)));
  t.equal(unavailable().length, 1, 'one line for forty 503s');
  t.ok(unavailable()[0]!.reqId, 'the first carries its request id');
  await held;
  await app.close();
  closed = true;
  t.equal(unavailable().length, 2, 'and the count of the rest when the app closes');
  t.equal(unavailable()[1]!.count, 39);
});

t.test('a failed flush of last-used times is retried by the next flushes until the database takes it', async (t) => {
  const h = await harness(t);
  await sql`create table usage_probe (key text primary key, last_used_at timestamptz)`.execute(h.db);
  await sql`insert into usage_probe (key) values ('a'), ('b'), ('c')`.execute(h.db);
  // Every update is refused, as during an outage.
  await sql`create function usage_probe_refuse() returns trigger language plpgsql as $$ begin raise exception 'down'; end $$`.execute(h.db);
  await sql`create trigger usage_probe_refuse before update on usage_probe for each row execute function usage_probe_refuse()`.execute(h.db);
  const { log, msgs } = capture();
  const stamps = new UsageStamps(h.db, log);
  const target: UsageTarget = { table: 'usage_probe', keyColumn: 'key', keyType: 'text', everyMs: 60_000 };
  const at = new Date('2026-05-06T07:08:09.000Z');
  for (const k of ['a', 'b', 'c']) stamps.touch(target, k, at);
  const stamped = async () => (await sql<{ n: number }>`select count(*)::int as n from usage_probe where last_used_at = ${at}`.execute(h.db)).rows[0]!.n;

  await stamps.flush();
  await stamps.flush();
  await stamps.flush();
  t.equal(await stamped(), 0, 'nothing written while refused');
  t.same(msgs(), ['could not record last-used times; retrying with the next flush'], 'one warning for the whole failure');

  // A newer use of one id while waiting: the newer time wins.
  const later = new Date(at.getTime() + 1000);
  stamps.touch(target, 'c', later);
  await sql`drop trigger usage_probe_refuse on usage_probe`.execute(h.db);
  await stamps.flush(); // no new touch of a and b: the retry alone writes them
  t.equal(await stamped(), 2, 'a and b stamped by the retry');
  const c = (await sql<{ last_used_at: Date }>`select last_used_at from usage_probe where key = 'c'`.execute(h.db)).rows[0]!;
  t.equal(c.last_used_at.getTime(), later.getTime(), 'c carries its newest use');
  t.same(msgs().slice(1), ['last-used times recorded again']);
  await stamps.flush();
  t.equal(msgs().length, 2, 'nothing left to retry');
  await stamps.close();
});
