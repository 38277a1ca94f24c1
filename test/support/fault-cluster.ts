// Real processes on a throw-away embedded Postgres, for the fault tests: Tessera instances started
// from dist, pg_ctl to restart the cluster, users with API tokens made straight in the database.
import type { Test } from 'tap';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { startEmbeddedPostgres, type EmbeddedPg } from '../../src/platform/database/embedded.js';
import { createDb } from '../../src/platform/database/database.js';
import { createUser } from '../../src/identity/users.repository.js';
import { issueApiToken } from '../../src/api-tokens/api-tokens.service.js';
import { migrateToLatest } from '../../src/platform/database/migrate.js';
import { freePort } from './helper.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');
const cli = path.join(root, 'dist', 'src', 'cli.js');
const run = promisify(execFile);
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface Server {
  port: number;
  child: ChildProcess;
  exited: Promise<number | null>;
  url: string;
  output(): string;
}

export function startServer(env: Record<string, string>, port: number): Server {
  const child = spawn(process.execPath, [cli, 'serve'], { env: { ...process.env, ...env, PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const keep = (c: Buffer) => {
    out = (out + c.toString()).slice(-20_000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { port, child, exited, url: `http://127.0.0.1:${port}`, output: () => out };
}

export async function waitReady(s: Server, timeoutMs = 30_000): Promise<number> {
  const started = Date.now();
  let last = '';
  for (;;) {
    try {
      const res = await fetch(`${s.url}/readyz`, { signal: AbortSignal.timeout(3000) });
      last = `${res.status} ${await res.text()}`;
      if (res.status === 200) return Date.now() - started;
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() - started > timeoutMs) {
      throw new Error(`${s.url} did not become ready: ${last}; exit code ${s.child.exitCode}; output:\n${s.output().slice(-3000)}`);
    }
    await sleep(50);
  }
}

export async function cluster(t: Test) {
  const dir = mkdtempSync(path.join(tmpdir(), 'tessera-faults-'));
  const pg: EmbeddedPg = await startEmbeddedPostgres({ dataDir: dir, port: await freePort(), ephemeral: true });
  t.teardown(async () => {
    await pg.stop().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });
  const env = {
    DATABASE_URL: pg.connectionString,
    TESSERA_MASTER_KEY: randomBytes(32).toString('base64'),
    TESSERA_PEPPER: randomBytes(32).toString('base64'),
    TESSERA_ISSUER: 'http://tessera.test',
    TESSERA_HOST: '127.0.0.1',
    TESSERA_LOG_LEVEL: 'warn',
    TESSERA_RATE_LIMIT: 'false',
    TESSERA_DB_CONNECT_TIMEOUT_MS: '1000',
  };
  const handle = createDb({ connectionString: pg.connectionString, max: 4 });
  t.teardown(() => handle.close());
  await migrateToLatest(handle.db);
  const pepper = Buffer.from(env.TESSERA_PEPPER, 'utf8'); // as config.ts reads it
  const servers: Server[] = [];
  const server = async (port?: number) => {
    const s = startServer(env, port ?? (await freePort()));
    servers.push(s);
    await waitReady(s);
    return s;
  };
  t.teardown(() => {
    for (const s of servers) if (s.child.exitCode === null) s.child.kill('SIGKILL');
  });
  const asUser = process.getuid?.() === 0 ? ['-u', 'postgres'] : [];
  const pgctl = (args: string[]) => (asUser.length ? run('runuser', [...asUser, '--', pg.bin.pg_ctl, ...args]) : run(pg.bin.pg_ctl, args));
  const user = async () => {
    const u = await createUser(handle.db, { email: `u${randomBytes(4).toString('hex')}@example.com`, name: 'U' });
    const { token } = await issueApiToken(handle.db, pepper, { userId: u.id, name: 'fault', scopes: ['api', 'introspect'], expiresAt: null });
    return { user: u, apiToken: token };
  };
  return { pg, env, db: handle.db, server, pgctl, user, dir };
}

export const post = (url: string, init: { headers?: Record<string, string>; body?: string; json?: unknown } = {}) =>
  fetch(url, {
    method: 'POST',
    headers: { ...(init.json !== undefined ? { 'content-type': 'application/json' } : {}), ...init.headers },
    body: init.json !== undefined ? JSON.stringify(init.json) : init.body,
    signal: AbortSignal.timeout(10_000),
  });
export const form = { 'content-type': 'application/x-www-form-urlencoded' };
