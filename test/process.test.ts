// The service as an operator runs it: real processes, real embedded Postgres, real HTTP.
import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { startEmbeddedPostgres } from '../src/platform/database/embedded.js';
import { freePort } from './support/helper.js';
import { startServer, waitReady } from './support/process-helper.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const cli = path.join(root, 'dist', 'src', 'cli.js');
const run = promisify(execFile);

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
  const first = startServer(env, undefined, cli);
  t.teardown(() => first.child.kill('SIGKILL'));
  await waitReady(port);
  t.match(first.output(), /generated a master key and pepper/, 'first run warns about the generated secrets');
  t.match(first.output(), /tessera users create/, 'first start explains how to create the first operator');
  t.match(first.output(), /tessera users invite --email/, 'first start explains how to invite the first operator to the console');

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

  const second = startServer(env, undefined, cli);
  t.teardown(() => second.child.kill('SIGKILL'));
  await waitReady(port);
  t.notMatch(second.output(), /generated a master key/, 'the second start reuses the secrets');
  t.notMatch(second.output(), /no operator token exists yet/, 'the operator token survived the restart');
  const again = await run(process.execPath, [cli, 'orgs', 'create', '--name', 'Lab', '--owner', 'ops@example.com'], { env: cliEnv });
  t.match(JSON.parse(again.stdout).owner, /^[0-9a-f-]{36}$/, 'the user created before the restart is still there');
  second.child.kill('SIGINT');
  t.equal(await second.exited, 0);
});

t.test('a SIGTERM during start-up is kept: Tessera finishes starting, then drains, stops its embedded Postgres and exits 0', async (t) => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'tessera-early-'));
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const port = await freePort();
  const pgPort = await freePort();
  const env = {
    TESSERA_DATA_DIR: dataDir,
    PORT: String(port),
    TESSERA_HOST: '127.0.0.1',
    TESSERA_EMBEDDED_PG_PORT: String(pgPort),
    TESSERA_LOG_LEVEL: 'info',
    DATABASE_URL: '',
  };
  const server = startServer(env, undefined, cli);
  t.teardown(() => server.child.kill('SIGKILL'));
  // The secrets are generated before embedded Postgres starts: the signal lands early in start-up.
  for (let i = 0; i < 300 && !/generated a master key/.test(server.output()); i++) await new Promise((r) => setTimeout(r, 20));
  t.match(server.output(), /generated a master key/);
  t.notMatch(server.output(), /"msg":"listening|Server listening/, 'not listening yet when the signal arrives');
  server.child.kill('SIGTERM');
  t.equal(await server.exited, 0, 'a clean exit, not death by the signal');
  t.match(server.output(), /"signal":"SIGTERM".*"msg":"signal received"/);
  t.match(server.output(), /"msg":"stopped"/);
  const pgAnswers = await new Promise<boolean>((resolve) => {
    const socket = connect(pgPort, '127.0.0.1');
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
  });
  t.equal(pgAnswers, false, 'embedded Postgres was stopped, not left running');
});

t.test('Postgres going away: readyz 503, requests fail fast with 503, recovery without restart', async (t) => {
  const pgData = mkdtempSync(path.join(tmpdir(), 'tessera-outage-'));
  const pg = await startEmbeddedPostgres({ dataDir: pgData, port: await freePort(), ephemeral: true });
  t.teardown(async () => {
    await pg.stop();
    rmSync(pgData, { recursive: true, force: true });
  });
  const port = await freePort();
  const server = startServer(
    {
      DATABASE_URL: pg.connectionString,
      TESSERA_MASTER_KEY: randomBytes(32).toString('base64'),
      TESSERA_PEPPER: randomBytes(32).toString('base64'),
      PORT: String(port),
      TESSERA_HOST: '127.0.0.1',
      TESSERA_LOG_LEVEL: 'warn',
      TESSERA_DB_CONNECT_TIMEOUT_MS: '1000',
    },
    undefined,
    cli,
  );
  t.teardown(() => server.child.kill('SIGKILL'));
  await waitReady(port);
  // A well-formed API token (right checksum), so answering needs the database.
  const { generateApiToken } = await import('../src/api-tokens/api-token.js');
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
