// Signing-key CLI as operators run it: real child processes on the test database, kill -9
// in the middle of a rotation, concurrent rotations from two processes; list/revoke/prune in-process.
import t from 'tap';
import { spawn, execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { harness, TestClock, type Harness } from './support/helper.js';
import { sql } from 'kysely';
import { main } from '../src/cli.js';

// The job's timer stays out of the way: the tests run it themselves.
const QUIET = { TESSERA_KEY_CHECK_INTERVAL: '1h' };

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const cli = path.join(root, 'dist', 'src', 'cli.js');
const pausedCli = path.join(root, 'test', 'fixtures', 'paused-cli.mjs');
const run = promisify(execFile);

/** The CLI runs on the system clock; so do the apps here. */
class SystemClock extends TestClock {
  override now(): number {
    return Date.now();
  }
}

function cliEnv(h: Harness, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    DATABASE_URL: h.connectionString,
    TESSERA_MASTER_KEY: h.config.masterKey.key.toString('base64'),
    TESSERA_PEPPER: h.config.pepper.toString('utf8'),
    TESSERA_LOG_LEVEL: 'silent',
    ...extra,
  };
}

/** Starts `tessera <args>` paused at `point` (see test/fixtures/paused-cli.mjs); resolves once it says it paused. */
async function startPaused(h: Harness, args: string[], point: string) {
  const child = spawn(process.execPath, [pausedCli, point, ...args], {
    env: cliEnv(h),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<NodeJS.Signals | null>((r) => child.on('exit', (_code, signal) => r(signal)));
  let out = '';
  child.stdout!.on('data', (c) => (out += c));
  let err = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`child did not pause at ${point}: ${err}`)), 30_000);
    child.stderr!.on('data', (c) => {
      err += c;
      if (err.includes(`paused at ${point}`)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on('exit', () => reject(new Error(`child exited before pausing: ${err}`)));
  });
  return { child, exited, stdout: () => out, stderr: () => err };
}

/** Runs `tessera keys rotate --immediate` until it pauses at `point`, then kills it with SIGKILL. */
async function killAt(h: Harness, point: string, whilePaused?: () => Promise<void>): Promise<void> {
  const { child, exited } = await startPaused(h, ['keys', 'rotate', '--immediate'], point);
  await whilePaused?.();
  child.kill('SIGKILL');
  if ((await exited) !== 'SIGKILL') throw new Error('child was not killed');
}

const rows = (h: Harness) => h.db.selectFrom('signing_keys').selectAll().orderBy('created_at').execute();
const actives = async (h: Harness) => (await rows(h)).filter((r) => r.state === 'active');

t.test('kill -9 at every step of an immediate rotation leaves one active key; the next start completes it', async (t) => {
  const h = await harness(t, { clock: new SystemClock(), env: QUIET });
  const k0 = (await actives(h))[0]!.kid;

  // 1. Inside the first step's transaction (lock held): rolled back, nothing changed; the lock is freed.
  let waited = null as Promise<unknown> | null;
  await killAt(h, 'rotate:commit', async () => {
    waited = h.app.keyRotation.lifecycle.prune({ userId: null, credential: 'cli' }).then(() => 'done');
    const race = await Promise.race([waited, new Promise((r) => setTimeout(() => r('blocked'), 300))]);
    t.equal(race, 'blocked', "a lifecycle step elsewhere waits for the paused process's lock");
  });
  t.equal(await waited, 'done', 'the lock died with the process');
  t.same(
    (await rows(h)).map((r) => [r.kid, r.state]),
    [[k0, 'active']],
    'rolled back',
  );

  // 2. Between the steps: a next key due now was committed; still exactly one active.
  await killAt(h, 'rotate:done');
  let now = await rows(h);
  t.same(
    now.map((r) => r.state),
    ['active', 'next'],
  );
  t.ok(now[1]!.activate_after!.getTime() <= Date.now(), 'the next key is due');
  // The next start (its onReady runs the job) completes the rotation.
  const restarted = await h.instance();
  now = await rows(h);
  t.same(
    now.map((r) => [r.kid, r.state]),
    [
      [k0, 'retired'],
      [now[1]!.kid, 'active'],
    ],
    'completed at start',
  );
  t.equal(restarted.oauth.keys.signingKey().kid, now[1]!.kid);

  // 3. Inside the promotion's transaction: rolled back to "due next key", which the job promotes.
  await killAt(h, 'promote:commit');
  now = await rows(h);
  t.equal(now.filter((r) => r.state === 'active').length, 1, 'one active');
  t.equal(now.filter((r) => r.state === 'next').length, 1, 'the due next key survived');
  t.same(
    (await h.app.keyRotation.runOnce()).map((e) => e.event),
    ['retired', 'activated'],
    'the job completes it',
  );
  t.equal((await actives(h)).length, 1);
  t.equal((await rows(h)).length, 3, 'three keys in all: one per completed rotation');
});

/**
 * Two `tessera <args>` processes truly at once: the first pauses inside its rotation transaction
 * (lock held), the second starts and blocks on the lock, then the first carries on (SIGUSR2).
 */
async function racePair(h: Harness, args: string[]) {
  const first = await startPaused(h, args, 'rotate:commit');
  const second = run(process.execPath, [cli, ...args], { env: cliEnv(h) });
  for (let i = 0; ; i++) {
    const { rows: r } = await sql<{
      n: number;
    }>`select count(*)::int as n from pg_locks where locktype = 'advisory' and not granted and database = (select oid from pg_database where datname = current_database())`.execute(
      h.db,
    );
    if (r[0]!.n > 0) break;
    if (i > 300) throw new Error('the second process never waited for the lock');
    await new Promise((res) => setTimeout(res, 50));
  }
  first.child.kill('SIGUSR2');
  await first.exited;
  const b = await second;
  return [{ stdout: first.stdout(), stderr: first.stderr() }, b].map((o) => ({ ...JSON.parse(o.stdout), stderr: o.stderr }));
}

t.test('two CLI processes rotating at once make one new key', async (t) => {
  const h = await harness(t, { clock: new SystemClock(), env: QUIET });
  const k0 = (await actives(h))[0]!.kid;

  // Immediate, no key waiting: one new key signs; the other process sees it did.
  // Which process wins is up to the scheduler (immediate rotation is two steps under the lock);
  // what must hold is that exactly one activates and both name the same new key.
  let [a, b] = await racePair(h, ['keys', 'rotate', '--immediate']);
  t.same([a.outcome, b.outcome].sort(), ['activated', 'concurrent']);
  const winner = a.outcome === 'activated' ? a : b;
  t.match(winner.stderr, /warning: pre-publication skipped/);
  t.equal(b.key.kid, a.key.kid, 'both name the new key');
  t.same(
    (await rows(h)).map((r) => [r.kid, r.state]),
    [
      [k0, 'retired'],
      [a.key.kid, 'active'],
    ],
  );

  // Pre-published: one next key.
  [a, b] = await racePair(h, ['keys', 'rotate']);
  t.equal(a.outcome, 'scheduled');
  t.equal(b.outcome, 'already_scheduled');
  t.equal(b.key.kid, a.key.kid);
  t.same(
    (await rows(h)).map((r) => r.state),
    ['retired', 'active', 'next'],
  );

  // Immediate with a next key waiting: that key is brought into service, no key is made.
  const waiting = a.key.kid;
  [a, b] = await racePair(h, ['keys', 'rotate', '--immediate']);
  t.same([a.outcome, b.outcome].sort(), ['activated', 'concurrent']);
  t.equal(a.key.kid, waiting);
  t.equal(b.key.kid, waiting);
  t.same(
    (await rows(h)).map((r) => r.state),
    ['retired', 'retired', 'active'],
  );
});

t.test('tessera keys list|rotate|revoke|prune in-process: audited as the CLI; running instances follow', async (t) => {
  const h = await harness(t, { clock: new SystemClock(), env: QUIET });
  const saved = { ...process.env };
  t.teardown(() => {
    process.env = saved;
  });
  Object.assign(process.env, cliEnv(h));
  const out: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  const errWrite = process.stderr.write.bind(process.stderr);
  const capture = async (argv: string[]) => {
    out.length = 0;
    (process.stdout as { write: unknown }).write = (c: string) => (out.push(String(c)), true);
    (process.stderr as { write: unknown }).write = () => true;
    try {
      return await main(argv);
    } finally {
      (process.stdout as { write: unknown }).write = write;
      (process.stderr as { write: unknown }).write = errWrite;
    }
  };
  const k0 = h.app.oauth.keys.signingKey().kid;
  t.equal(await capture(['keys', 'list']), 0);
  t.match(JSON.parse(out.join('')), { keys: [{ kid: k0, state: 'active' }], next_rotation_at: String });
  t.notMatch(out.join(''), /ciphertext|private/);

  t.equal(await capture(['keys', 'rotate', '--immediate']), 0);
  const k1 = JSON.parse(out.join('')).key.kid;
  for (let i = 0; i < 50 && h.app.oauth.keys.signingKey().kid !== k1; i++) await new Promise((r) => setTimeout(r, 20));
  t.equal(h.app.oauth.keys.signingKey().kid, k1, 'the running instance switched within a second');

  t.equal(await capture(['keys', 'revoke', k0]), 0);
  t.match(JSON.parse(out.join('')), { key: { kid: k0, state: 'revoked' }, replacement: null });
  t.equal(await capture(['keys', 'revoke', k0]), 1, 'already revoked');
  t.equal(await capture(['keys', 'revoke', 'nope']), 1, 'unknown kid');
  t.equal(await capture(['keys', 'revoke']), 1, 'a kid is required');

  t.equal(await capture(['keys', 'prune']), 0);
  t.same(JSON.parse(out.join('')), { removed: [] }, 'nothing has expired yet');
  await h.db
    .updateTable('signing_keys')
    .set({ not_after: new Date(Date.now() - 1000) })
    .where('kid', '=', k0)
    .execute();
  t.equal(await capture(['keys', 'prune']), 0);
  t.same(JSON.parse(out.join('')), { removed: [k0] });

  const audit = await h.db
    .selectFrom('audit_events')
    .select(['action', 'target_id', 'actor_credential'])
    .where('target_type', '=', 'signing_key')
    .orderBy('id')
    .execute();
  t.same(audit, [
    { action: 'signing_key.create', target_id: k0, actor_credential: 'system' }, // the first start's key
    { action: 'signing_key.create', target_id: k1, actor_credential: 'cli' },
    { action: 'signing_key.activate', target_id: k1, actor_credential: 'cli' },
    { action: 'signing_key.revoke', target_id: k0, actor_credential: 'cli' },
    { action: 'signing_key.remove', target_id: k0, actor_credential: 'cli' },
  ]);
});
