// A checkout the postgres user cannot enter keeps its cluster under /var/lib/tessera, named by the
// checkout's path, while its secrets stay in the checkout. Deleting the checkout and cloning it again
// at the same path makes new secrets: the old cluster (made for secrets that no longer exist) is moved
// aside, never deleted, a fresh one is made, and the service starts. A cluster still running for the
// old secrets is left alone and the start fails saying what to do.
import t, { type Test } from 'tap';
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { relocatedClusterDir, SHARED_CLUSTER_ROOT, startEmbeddedPostgres } from '../src/platform/database/embedded.js';
import { freePort } from './support/helper.js';
import { checkoutEnv, startServer, waitReady } from './support/process-helper.js';

// Copies the built project and, on a fresh machine, the Postgres binaries (60 MB) once.
t.setTimeout(300_000);

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const run = promisify(execFile);
const asRoot = process.getuid?.() !== 0 ? 'only root runs Postgres as another user' : false;

/** A 0700 home folder (as root's is) holding an empty checkout folder; removed with every cluster folder made for it. */
function home(t: Test): { checkout: string; dataDir: string; clusterFolder: () => string; orphans: () => string[] } {
  const dir = mkdtempSync(path.join(tmpdir(), 'tessera-home-'));
  chmodSync(dir, 0o700);
  const checkout = path.join(dir, 'tessera');
  mkdirSync(checkout);
  const dataDir = path.join(checkout, '.tessera');
  mkdirSync(dataDir, { mode: 0o700 });
  // Named by the data folder's real path: known before the first start.
  const folder = path.dirname(relocatedClusterDir(dataDir));
  const orphans = () =>
    readdirSync(SHARED_CLUSTER_ROOT)
      .filter((n) => n.startsWith(`${path.basename(folder)}-orphaned-`))
      .map((n) => path.join(SHARED_CLUSTER_ROOT, n));
  t.teardown(() => {
    for (const o of orphans()) rmSync(o, { recursive: true, force: true });
    rmSync(folder, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
  });
  return { checkout, dataDir, clusterFolder: () => folder, orphans };
}

const pgPassword = (dataDir: string) => (JSON.parse(readFileSync(path.join(dataDir, 'secrets.json'), 'utf8')) as { pgPassword: string }).pgPassword;

/** Ready, or the server's exit and its last output (a start that fails says why). */
function ready(server: ReturnType<typeof startServer>, port: number): Promise<void> {
  return Promise.race([
    waitReady(port, 60_000),
    server.exited.then((code) => {
      throw new Error(`the server exited (${code}): ${server.output().slice(-1500)}`);
    }),
  ]);
}

async function query<T>(connectionString: string, text: string): Promise<T[]> {
  const c = new pg.Client({ connectionString });
  await c.connect();
  try {
    return (await c.query(text)).rows as T[];
  } finally {
    await c.end();
  }
}

t.test(
  'npm start from a checkout cloned again at the same path (as root, 0700 home): the old cluster is moved aside, a fresh one serves',
  { skip: asRoot },
  async (t) => {
    const { checkout, dataDir, clusterFolder, orphans } = home(t);
    const clone = async () => {
      rmSync(checkout, { recursive: true, force: true });
      mkdirSync(checkout);
      await run('cp', ['-r', path.join(root, 'dist'), path.join(root, 'package.json'), checkout]);
      await run('cp', ['-al', path.join(root, 'node_modules'), checkout]);
    };
    await clone();
    const cli = path.join(checkout, 'dist', 'src', 'cli.js');
    const port = await freePort();
    const pgPort = await freePort();
    const env = checkoutEnv(port, pgPort);
    const opts = { env: { ...process.env, ...env }, cwd: checkout };
    const me = (token: string) => fetch(`http://127.0.0.1:${port}/api/users/me`, { headers: { authorization: `Bearer ${token}` } });
    const userWithToken = async (email: string) => {
      await run(process.execPath, [cli, 'users', 'create', '--email', email, '--name', 'Someone'], opts);
      return JSON.parse((await run(process.execPath, [cli, 'tokens', 'create', '--user', email, '--scopes', 'api'], opts)).stdout).token as string;
    };

    const first = startServer(env, checkout, cli);
    t.teardown(() => first.child.kill('SIGKILL'));
    await ready(first, port);
    t.match(first.output(), `embedded Postgres keeps its data in ${clusterFolder()}/pg`, 'the cluster is relocated');
    const oldPassword = pgPassword(dataDir);
    const oldToken = await userWithToken('first@example.com');
    t.equal((await me(oldToken)).status, 200);
    first.child.kill('SIGTERM');
    t.equal(await first.exited, 0);

    // The checkout is deleted and cloned again: new secrets, same path, same cluster folder name.
    await clone();
    t.notOk(existsSync(dataDir), 'the clone has no data folder');
    const second = startServer(env, checkout, cli);
    t.teardown(() => second.child.kill('SIGKILL'));
    await ready(second, port);
    t.not(pgPassword(dataDir), oldPassword, 'the clone made new secrets');

    const moved = orphans();
    t.equal(moved.length, 1, 'the old cluster folder was moved aside once');
    const orphan = moved[0]!;
    t.match(path.basename(orphan), new RegExp(`^${path.basename(clusterFolder())}-orphaned-\\d{8}T\\d{6}Z$`), 'named <name>-orphaned-<UTC timestamp>');
    t.ok(existsSync(path.join(orphan, 'pg', 'PG_VERSION')), 'with its cluster inside, not deleted');
    t.equal(statSync(orphan).mode & 0o777, 0o700, 'still private');
    const line = second
      .output()
      .split('\n')
      .find((l) => l.includes(orphan));
    t.ok(line, 'one line names where the old cluster went');
    t.match(line, /"level":40/, 'as a warning');
    t.match(line, `${dataDir}/secrets.json`, 'and why: the secrets it was made for are gone');
    t.equal(
      second
        .output()
        .split('\n')
        .filter((l) => l.includes('-orphaned-')).length,
      1,
      'one line, not several',
    );

    t.ok(existsSync(path.join(clusterFolder(), 'pg', 'PG_VERSION')), 'a fresh cluster in the same folder');
    t.match(second.output(), new RegExp(`"dataDir":"${clusterFolder()}/pg"`));
    t.equal((await me(oldToken)).status, 401, 'the old data is not in the fresh cluster');
    const token = await userWithToken('first@example.com');
    t.equal((await me(token)).status, 200, 'and the fresh cluster takes new data');
    second.child.kill('SIGTERM');
    t.equal(await second.exited, 0);

    // A plain restart of the clone keeps its cluster.
    const third = startServer(env, checkout, cli);
    t.teardown(() => third.child.kill('SIGKILL'));
    await ready(third, port);
    t.equal(orphans().length, 1, 'a restart with the same secrets moves nothing');
    t.notMatch(third.output(), /orphaned/);
    t.equal((await me(token)).status, 200, 'the data made after the clone is kept');
    third.child.kill('SIGTERM');
    t.equal(await third.exited, 0);
  },
);

t.test(
  'a relocated cluster made before its secrets were fingerprinted: a password refused on the first connection is the mismatch',
  { skip: asRoot },
  async (t) => {
    const { dataDir, clusterFolder, orphans } = home(t);
    const port = await freePort();
    const first = await startEmbeddedPostgres({ dataDir, port, relocate: true });
    t.equal(first.relocated, true);
    t.equal(first.dataDir, `${clusterFolder()}/pg`);
    await query(first.connectionString, 'create table kept (v text); insert into kept values ($$old$$)');
    await first.stop();
    const fingerprints = readdirSync(clusterFolder()).filter((n) => n !== 'pg');
    t.equal(fingerprints.length, 1, 'the secrets fingerprint is kept beside the cluster');
    t.notMatch(readFileSync(path.join(clusterFolder(), fingerprints[0]!), 'utf8'), pgPassword(dataDir), 'never the password itself');

    // Same secrets, no fingerprint (a cluster made by an earlier version): the password works, nothing moves.
    rmSync(path.join(clusterFolder(), fingerprints[0]!));
    const again = await startEmbeddedPostgres({ dataDir, port, relocate: true });
    t.equal(again.initialised, false);
    t.same(await query(again.connectionString, 'select v from kept'), [{ v: 'old' }], 'the data is kept');
    await again.stop();
    t.ok(existsSync(path.join(clusterFolder(), fingerprints[0]!)), 'and the fingerprint is recorded from then on');
    t.same(orphans(), []);

    // New secrets, no fingerprint: the cluster refuses the new password, so it is moved aside.
    rmSync(path.join(clusterFolder(), fingerprints[0]!));
    rmSync(dataDir, { recursive: true });
    mkdirSync(dataDir, { mode: 0o700 });
    const notices: string[] = [];
    const fresh = await startEmbeddedPostgres({ dataDir, port, relocate: true, notice: (m) => notices.push(m) });
    t.teardown(() => fresh.stop());
    t.equal(fresh.initialised, true, 'a fresh cluster');
    t.equal(fresh.dataDir, `${clusterFolder()}/pg`, 'in the same folder');
    t.equal(orphans().length, 1);
    t.ok(existsSync(path.join(orphans()[0]!, 'pg', 'PG_VERSION')), 'the old cluster is kept aside');
    t.equal(notices.length, 1, 'one notice');
    t.match(notices[0], orphans()[0]!);
    t.match(notices[0], /password/);
    t.same(await query(fresh.connectionString, "select to_regclass('kept') as t"), [{ t: null }], 'the fresh cluster has none of the old data');
    t.same(await query(fresh.connectionString, 'select 1 as one'), [{ one: 1 }]);
    await fresh.stop();
  },
);

t.test('a cluster still running for the old secrets is left alone: the start fails saying what to do', { skip: asRoot }, async (t) => {
  const { dataDir, clusterFolder, orphans } = home(t);
  const running = await startEmbeddedPostgres({ dataDir, port: await freePort(), relocate: true });
  t.teardown(() => running.stop());
  const fingerprint = readdirSync(clusterFolder()).find((n) => n !== 'pg')!;
  rmSync(dataDir, { recursive: true });
  mkdirSync(dataDir, { mode: 0o700 });
  const attempt = () => startEmbeddedPostgres({ dataDir, port: 1, relocate: true });
  await t.rejects(attempt(), { message: new RegExp(`${clusterFolder()}/pg.*running.*stop`) }, 'refused, with what to do');
  // Made before fingerprints: the password refused on the running cluster tells the same.
  rmSync(path.join(clusterFolder(), fingerprint));
  await t.rejects(attempt(), { message: /running.*stop/ });
  t.same(orphans(), [], 'nothing moved');
  t.same(await query(running.connectionString, 'select 1 as one'), [{ one: 1 }], 'the running cluster still serves');
  await running.stop();
});

t.test('without relocation the cluster stays in the data folder and goes with it', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'tessera-data-'));
  // Within the postgres user's reach (as root).
  chmodSync(dir, 0o711);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const dataDir = path.join(dir, 'data');
  const one = await startEmbeddedPostgres({ dataDir, port: await freePort(), relocate: true });
  t.equal(one.relocated, false);
  t.equal(one.dataDir, path.join(dataDir, 'pg'));
  t.same(
    readdirSync(dataDir).filter((n) => n !== 'pg' && n !== 'secrets.json'),
    [],
    'no fingerprint in the data folder: the cluster and its secrets go together',
  );
  await one.stop();
  rmSync(dataDir, { recursive: true });
  const two = await startEmbeddedPostgres({ dataDir, port: await freePort(), relocate: true });
  t.teardown(() => two.stop());
  t.equal(two.initialised, true, 'a deleted data folder took its cluster with it: a fresh one');
  t.equal(two.orphaned, null, 'nothing to move aside');
  t.same(await query(two.connectionString, 'select 1 as one'), [{ one: 1 }]);
  await two.stop();
});
