// Test harness: every test file gets its own fresh database (migrated) in the run's Postgres
// (DATABASE_URL, or the embedded cluster scripts/test.mjs starts), and builds real apps on it.
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import pg from 'pg';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { buildApp } from '../../src/app.js';
import { loadConfig, type Config } from '../../src/platform/config.js';
import { createDb, type DbHandle } from '../../src/platform/database/database.js';
import { migrateToLatest } from '../../src/platform/database/migrate.js';
import { createUser, type User } from '../../src/identity/users.repository.js';
import { createOrganization, upsertMembership, type Organization } from '../../src/identity/organizations.repository.js';
import { issueApiToken } from '../../src/api-tokens/api-tokens.service.js';
import type { Role } from '../../src/identity/identity.table.js';
import type { Clock } from '../../src/platform/clock.js';
import { ContractValidator } from './contract-validator.js';

/** The subset of tap's Test the harness needs (teardown). */
export interface TeardownHost {
  teardown(fn: () => unknown): void;
}

/** A clock tests move by hand. */
export class TestClock implements Clock {
  constructor(public ms = Date.now()) {}
  now(): number {
    return this.ms;
  }
  advance(seconds: number): void {
    this.ms += seconds * 1000;
  }
}

export function baseDatabaseUrl(): string {
  const url = process.env.DATABASE_URL;
  if (!url) throw new Error('DATABASE_URL is not set: run tests with `npm test` (it starts an embedded Postgres)');
  return url;
}

function withDatabase(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

/** Creates an empty database for this test file, dropped at teardown. */
export async function freshDatabase(t: TeardownHost): Promise<string> {
  const name = `tessera_t_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: withDatabase(baseDatabaseUrl(), 'postgres') });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  t.teardown(async () => {
    const c = new pg.Client({ connectionString: withDatabase(baseDatabaseUrl(), 'postgres') });
    await c.connect();
    await c.query(`drop database if exists ${name} with (force)`);
    await c.end();
  });
  return withDatabase(baseDatabaseUrl(), name);
}

/** Test configuration: real secrets (random per file), logs off, overrides by env var name. */
export function testConfig(connectionString: string, env: Record<string, string> = {}): Config {
  return loadConfig({
    DATABASE_URL: connectionString,
    TESSERA_MASTER_KEY: randomBytes(32).toString('base64'),
    TESSERA_PEPPER: randomBytes(32).toString('base64'),
    TESSERA_ISSUER: 'http://localhost:8080',
    TESSERA_LOG_LEVEL: 'silent',
    TESSERA_RATE_LIMIT: 'false',
    // The resource servers the tests ask tokens for (others are refused, as in production).
    TESSERA_AUDIENCES: 'https://qpu.example.com,https://qpu.example.com/api,https://backend.example.com,https://other.example',
    ...env,
  }).config;
}

export interface Harness {
  app: FastifyInstance;
  config: Config;
  handle: DbHandle;
  db: DbHandle['db'];
  connectionString: string;
  clock: TestClock;
  /** Checks every response of the harness's apps against openapi.yaml (asserted clean at teardown). */
  validator: ContractValidator;
  /** Another instance on the same database (its own pool, listener and caches). */
  instance(opts?: { clock?: Clock; env?: Record<string, string> }): Promise<FastifyInstance>;
  inject(opts: InjectOptions): Promise<LightMyRequestResponse>;
  user(opts?: { email?: string; name?: string }): Promise<User>;
  org(name?: string, members?: Array<[User, Role]>): Promise<Organization>;
  /** An API token for the user with the given scopes (default `api`). */
  apiToken(user: User, scopes?: string[]): Promise<string>;
}

/**
 * A response checker for apps a test builds (`buildApp({ inspectResponse: v.inspect })`): at teardown,
 * after the apps close, the test fails listing every response that did not match openapi.yaml.
 */
export function contractValidator(t: TeardownHost): ContractValidator {
  const validator = new ContractValidator();
  t.teardown(() => validator.assertClean());
  return validator;
}

/** The database handle (pool) each harness instance runs on. */
export const handleOf = new WeakMap<FastifyInstance, DbHandle>();

/**
 * A migrated fresh database and a running app on it; everything is closed at teardown.
 * `env` overrides configuration (by variable name).
 */
export async function harness(
  t: TeardownHost,
  opts: { env?: Record<string, string>; clock?: TestClock; routes?: (app: FastifyInstance) => void } = {},
): Promise<Harness> {
  const connectionString = await freshDatabase(t);
  const config = testConfig(connectionString, opts.env);
  const handle = createDb({ connectionString, max: 10 });
  await migrateToLatest(handle.db);
  const clock = opts.clock ?? new TestClock();
  const apps: FastifyInstance[] = [];
  const handles: DbHandle[] = [handle];
  const validator = new ContractValidator();
  t.teardown(async () => {
    for (const a of apps.reverse()) await a.close();
    for (const h of handles) await h.close();
    validator.assertClean();
  });
  const build = async (c: Config, h: DbHandle, clk: Clock) => {
    const a = await buildApp({ config: c, db: h.db, connectionString, clock: clk, logger: false, inspectResponse: validator.inspect });
    handleOf.set(a, h);
    // Extra routes a test probes the shared machinery with (error handling, auth).
    opts.routes?.(a);
    apps.push(a);
    await a.ready();
    // As the server does: an instance runs its background jobs.
    await a.jobs.start();
    return a;
  };
  const app = await build(config, handle, clock);
  let seq = 0;
  const h: Harness = {
    app,
    config,
    handle,
    db: handle.db,
    connectionString,
    clock,
    validator,
    async instance(o = {}) {
      const other = createDb({ connectionString, max: 10 });
      handles.push(other);
      // Same secrets as the first instance: they share the database.
      const c = { ...config, ...(o.env ? testConfig(connectionString, o.env) : {}), masterKey: config.masterKey, pepper: config.pepper };
      return build(Object.freeze(c), other, o.clock ?? clock);
    },
    inject: (o) => app.inject(o),
    async user(o = {}) {
      seq++;
      return createUser(handle.db, {
        email: o.email ?? `user${seq}-${randomBytes(3).toString('hex')}@example.com`,
        name: o.name ?? `User ${seq}`,
      });
    },
    async org(name = `Org ${++seq}`, members = []) {
      const o = await createOrganization(handle.db, name);
      for (const [u, role] of members) await upsertMembership(handle.db, o.id, u.id, role);
      return o;
    },
    async apiToken(u, scopes = ['api']) {
      const { token } = await issueApiToken(handle.db, config.pepper, { userId: u.id, name: 'test', scopes, expiresAt: null });
      return token;
    },
  };
  return h;
}

/** Points the in-process CLI (`main(argv)`) at the harness's database and secrets until the test ends. */
export function cliOnHarness(t: TeardownHost, h: Pick<Harness, 'connectionString' | 'config'>): void {
  const saved = { ...process.env };
  t.teardown(() => {
    process.env = saved;
  });
  process.env.DATABASE_URL = h.connectionString;
  process.env.TESSERA_MASTER_KEY = h.config.masterKey.key.toString('base64');
  process.env.TESSERA_PEPPER = h.config.pepper.toString('utf8');
  process.env.TESSERA_LOG_LEVEL = 'silent';
}

/** `{ authorization: 'Bearer <token>' }` */
export const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/** A free loopback TCP port. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** Counts connections taken from the harness's pool from now on (restored at teardown). */
export function countPoolConnections(t: TeardownHost, h: Pick<Harness, 'handle'>): () => number {
  let connections = 0;
  const pool = h.handle.pool as unknown as { connect: (...a: unknown[]) => unknown };
  const connect = pool.connect.bind(pool);
  pool.connect = (...args: unknown[]) => {
    connections++;
    return connect(...args);
  };
  t.teardown(() => {
    pool.connect = connect;
  });
  return () => connections;
}
