// The service as an operator runs it: real processes, real embedded Postgres, real HTTP.
import t from 'tap';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import pg from 'pg';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { startEmbeddedPostgres } from '../src/db/embedded.js';
import { freePort } from './helper.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const cli = path.join(root, 'dist', 'src', 'cli.js');
const run = promisify(execFile);

async function waitReady(port: number, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/readyz`);
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > until) throw new Error('service did not become ready');
    await new Promise((r) => setTimeout(r, 200));
  }
}

function startServer(env: Record<string, string>, cwd?: string, entry = cli): { child: ChildProcess; exited: Promise<number | null>; output: () => string } {
  const child = spawn(process.execPath, [entry, 'serve'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], ...(cwd ? { cwd } : {}) });
  let out = '';
  child.stdout!.on('data', (c) => (out += c));
  child.stderr!.on('data', (c) => (out += c));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { child, exited, output: () => out };
}

t.test('npm start path: embedded Postgres, CLI bootstrap, graceful stop, data kept across restarts', async (t) => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'tessera-proc-'));
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const port = await freePort();
  const env = {
    TESSERA_DATA_DIR: dataDir,
    PORT: String(port),
    TESSERA_HOST: '127.0.0.1',
    TESSERA_EMBEDDED_PG_PORT: String(await freePort()),
    TESSERA_LOG_LEVEL: 'info',
    DATABASE_URL: '',
  };
  const first = startServer(env);
  t.teardown(() => first.child.kill('SIGKILL'));
  await waitReady(port);
  t.match(first.output(), /generated a master key and pepper/, 'first run warns about the generated secrets');
  t.match(first.output(), /tessera users create/, 'first start explains how to create the first operator');

  // The CLI attaches to the embedded Postgres the server runs.
  const cliEnv = { ...process.env, ...env };
  const created = JSON.parse((await run(process.execPath, [cli, 'users', 'create', '--email', 'Ops@Example.com', '--name', 'Ops'], { env: cliEnv })).stdout);
  t.equal(created.email, 'ops@example.com');
  const dup = await run(process.execPath, [cli, 'users', 'create', '--email', 'ops@example.com', '--name', 'Again'], { env: cliEnv }).catch((e) => e);
  t.equal(dup.code, 1);
  t.match(dup.stderr, /exists already/);
  const tok = await run(process.execPath, [cli, 'tokens', 'create', '--user', 'ops@example.com', '--scopes', 'api,admin', '--name', 'bootstrap'], {
    env: cliEnv,
  });
  const issued = JSON.parse(tok.stdout);
  t.match(issued.token, /^tsr_pat_/);
  t.match(tok.stderr, /shown once/);
  const badScope = await run(process.execPath, [cli, 'tokens', 'create', '--user', 'ops@example.com', '--scopes', 'root'], { env: cliEnv }).catch((e) => e);
  t.equal(badScope.code, 1);
  t.match(badScope.stderr, /unknown scope/);

  first.child.kill('SIGTERM');
  t.equal(await first.exited, 0, 'SIGTERM drains and exits 0');
  t.match(first.output(), /stopped/);
  t.notMatch(first.output(), new RegExp(issued.token), 'the token never reached the server log');

  const second = startServer(env);
  t.teardown(() => second.child.kill('SIGKILL'));
  await waitReady(port);
  t.notMatch(second.output(), /generated a master key/, 'the second start reuses the secrets');
  t.notMatch(second.output(), /no operator token exists yet/, 'the operator token survived the restart');
  const again = await run(process.execPath, [cli, 'orgs', 'create', '--name', 'Lab', '--owner', 'ops@example.com'], { env: cliEnv });
  t.match(JSON.parse(again.stdout).owner, /^[0-9a-f-]{36}$/, 'the user created before the restart is still there');
  second.child.kill('SIGINT');
  t.equal(await second.exited, 0);
});

t.test('Postgres going away: readyz 503, requests fail fast with 503, recovery without restart', async (t) => {
  const pgData = mkdtempSync(path.join(tmpdir(), 'tessera-outage-'));
  const pg = await startEmbeddedPostgres({ dataDir: pgData, port: await freePort(), ephemeral: true });
  t.teardown(async () => {
    await pg.stop();
    rmSync(pgData, { recursive: true, force: true });
  });
  const port = await freePort();
  const server = startServer({
    DATABASE_URL: pg.connectionString,
    TESSERA_MASTER_KEY: randomBytes(32).toString('base64'),
    TESSERA_PEPPER: randomBytes(32).toString('base64'),
    PORT: String(port),
    TESSERA_HOST: '127.0.0.1',
    TESSERA_LOG_LEVEL: 'warn',
    TESSERA_DB_CONNECT_TIMEOUT_MS: '1000',
  });
  t.teardown(() => server.child.kill('SIGKILL'));
  await waitReady(port);
  // A well-formed API token (right checksum), so answering needs the database.
  const { generateApiToken } = await import('../src/auth/api-token.js');
  const auth = { authorization: `Bearer ${generateApiToken()}` };
  t.equal((await fetch(`http://127.0.0.1:${port}/api/users/me`, { headers: auth })).status, 401, 'unknown token while the database is up');

  const asUser = process.getuid?.() === 0 ? ['-u', 'postgres'] : [];
  const pgctl = (args: string[]) => (asUser.length ? run('runuser', [...asUser, '--', pg.bin.pg_ctl, ...args]) : run(pg.bin.pg_ctl, args));
  await pgctl(['stop', '-D', pg.dataDir, '-m', 'immediate', '-w']);

  const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
  t.equal(ready.status, 503, 'not ready while Postgres is down');
  const health = await fetch(`http://127.0.0.1:${port}/healthz`);
  t.equal(health.status, 200, 'the process itself is alive');
  const started = Date.now();
  const api = await fetch(`http://127.0.0.1:${port}/api/users/me`, { headers: auth });
  t.equal(api.status, 503, 'an API request that needs the database gets 503');
  t.equal(((await api.json()) as { error: string }).error, 'service_unavailable');
  t.equal(api.headers.get('retry-after'), '1');
  t.ok(Date.now() - started < 5000, 'fails fast rather than hanging');

  await pgctl([
    'start',
    '-D',
    pg.dataDir,
    '-w',
    '-o',
    `-p ${pg.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=`,
    '-l',
    path.join(pg.dataDir, 'restart.log'),
  ]);
  const until = Date.now() + 10_000;
  let status = 0;
  while (Date.now() < until) {
    status = (await fetch(`http://127.0.0.1:${port}/readyz`)).status;
    if (status === 200) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  t.equal(status, 200, 'ready again without a restart');
  t.equal((await fetch(`http://127.0.0.1:${port}/api/users/me`, { headers: auth })).status, 401, 'API answers again');
  t.equal(server.child.exitCode, null, 'the process survived the outage');
});

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
    const env = {
      PORT: String(port),
      TESSERA_HOST: '127.0.0.1',
      TESSERA_EMBEDDED_PG_PORT: String(pgPort),
      TESSERA_LOG_LEVEL: 'info',
      DATABASE_URL: '',
      TESSERA_DATA_DIR: '',
    };
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
