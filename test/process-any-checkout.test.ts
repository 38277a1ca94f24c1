// Run as most containers run it, as root from a checkout inside a 0700 home folder: the embedded
// cluster moves where the postgres user can reach it, the user's folders keep their permissions,
// data and secrets are kept across restarts, and shutdown drains in order without warnings.
import t from 'tap';
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import pg from 'pg';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './support/helper.js';
import { checkoutEnv, startServer, waitReady } from './support/process-helper.js';

// Copies the project and, on a fresh machine, the Postgres binaries (60 MB) once: more than the default file budget.
t.setTimeout(300_000);

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const run = promisify(execFile);

t.test(
  'run from a checkout the postgres user cannot enter (as root): the cluster lives under /var/lib/tessera, data kept across restarts, shutdown lines in order',
  { skip: process.getuid?.() !== 0 ? 'only root runs Postgres as another user' : false },
  async (t) => {
    // A home folder as root has it: 0700, out of reach of the postgres user.
    const home = mkdtempSync(path.join(tmpdir(), 'tessera-home-'));
    chmodSync(home, 0o700);
    // A copy of the built project inside it (node_modules hard-linked): the Postgres binaries are
    // out of the postgres user's reach too.
    const checkout = path.join(home, 'tessera');
    mkdirSync(checkout);
    await run('cp', ['-r', path.join(root, 'dist'), path.join(root, 'package.json'), checkout]);
    await run('cp', ['-al', path.join(root, 'node_modules'), checkout]);
    const cli = path.join(checkout, 'dist', 'src', 'cli.js');
    let clusterRoot: string | null = null;
    t.teardown(() => {
      rmSync(home, { recursive: true, force: true });
      if (clusterRoot) rmSync(clusterRoot, { recursive: true, force: true });
    });
    const port = await freePort();
    const pgPort = await freePort();
    const env = checkoutEnv(port, pgPort);
    const first = startServer(env, checkout, cli);
    t.teardown(() => first.child.kill('SIGKILL'));
    await waitReady(port, 60_000);
    const notice = /embedded Postgres keeps its data in (\/var\/lib\/tessera\/tessera-[0-9a-f]{10}\/pg)/.exec(first.output());
    t.ok(notice, 'the first start says where the cluster lives');
    clusterRoot = notice ? path.dirname(notice[1]!) : null;
    t.match(first.output(), new RegExp(`cannot enter ${home}\\)`), 'and why');
    t.match(first.output(), new RegExp(`secrets stay in ${checkout}/.tessera/secrets.json`), 'and where the secrets are');
    t.equal(statSync(home).mode & 0o777, 0o700, "the home folder's permissions are untouched");
    t.equal(statSync(path.join(checkout, '.tessera')).mode & 0o777, 0o700, "so are the data folder's");
    t.equal(statSync(path.join(checkout, '.tessera', 'secrets.json')).mode & 0o777, 0o600);
    const cluster = statSync(clusterRoot!);
    t.equal(cluster.mode & 0o777, 0o700, 'the cluster folder is private');
    t.not(cluster.uid, 0, 'and owned by the postgres user');

    // The CLI from the same checkout finds the same cluster.
    const cliEnv = { ...process.env, ...env };
    const opts = { env: cliEnv, cwd: checkout };
    await run(process.execPath, [cli, 'users', 'create', '--email', 'root@example.com', '--name', 'Root'], opts);
    const pat = JSON.parse((await run(process.execPath, [cli, 'tokens', 'create', '--user', 'root@example.com', '--scopes', 'api'], opts)).stdout)
      .token as string;
    const me = () => fetch(`http://127.0.0.1:${port}/api/users/me`, { headers: { authorization: `Bearer ${pat}` } });
    t.equal((await me()).status, 200);

    // A login held in flight by a lock while SIGTERM arrives: it is drained, and logged between
    // "draining requests" and "stopped".
    const secrets = JSON.parse(readFileSync(path.join(checkout, '.tessera', 'secrets.json'), 'utf8')) as { pgPassword: string };
    const locker = new pg.Client({ connectionString: `postgres://tessera:${encodeURIComponent(secrets.pgPassword)}@127.0.0.1:${pgPort}/tessera` });
    await locker.connect();
    await locker.query('begin');
    await locker.query('lock table sessions in access exclusive mode');
    const login = fetch(`http://127.0.0.1:${port}/api/users/loginWithToken`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ apiToken: pat }),
    });
    await new Promise((r) => setTimeout(r, 500));
    first.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 500));
    await locker.query('commit');
    await locker.end();
    t.equal((await login).status, 200, 'the request in flight is answered');
    t.equal(await first.exited, 0, 'SIGTERM drains (the keep-alive connection of the drained request included) and exits 0');
    const lines = first.output().split('\n');
    const at = (re: RegExp) => lines.findIndex((l) => re.test(l));
    const draining = at(/shutting down: draining requests/);
    const drained = at(/"statusCode":200.*"msg":"request completed"|"msg":"request completed".*"statusCode":200/);
    const loginLine = lines.findIndex((l, i) => i > draining && /request completed/.test(l));
    const stopped = at(/"msg":"stopped"/);
    t.ok(draining >= 0 && stopped >= 0 && drained >= 0, 'both shutdown lines are written');
    t.ok(draining < loginLine && loginLine < stopped, 'draining, then the drained request, then stopped');
    t.same(
      lines.slice(draining).filter((l) => /"level":(40|50|60)/.test(l)),
      [],
      'a clean shutdown writes no warning (closing pools while embedded Postgres stops is no connection failure)',
    );

    const second = startServer(env, checkout, cli);
    t.teardown(() => second.child.kill('SIGKILL'));
    await waitReady(port, 60_000);
    t.notMatch(second.output(), /generated a master key/, 'the secrets are reused');
    t.match(second.output(), new RegExp(`"dataDir":"${clusterRoot}/pg"`), 'the same cluster folder');
    t.equal((await me()).status, 200, 'the user and token made before the restart still work');
    second.child.kill('SIGTERM');
    t.equal(await second.exited, 0);
  },
);
