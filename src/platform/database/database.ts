import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { Logger } from 'pino';
import type { IdentityTables } from '../../identity/identity.table.js';
import type { ApiTokenTables } from '../../api-tokens/api-tokens.table.js';
import type { ProviderTokenTables } from '../../provider-tokens/provider-tokens.table.js';
import type { SessionTables } from '../../sessions/sessions.table.js';
import type { OAuthTables } from '../../oauth/oauth.table.js';
import type { SigningKeyTables } from '../../signing-keys/signing-keys.table.js';
import type { UsedJtisTable } from './replay-guard.js';

/** Every table Tessera owns. Each feature declares its tables in its `<feature>.table.ts` and joins them here. */
export interface Database extends IdentityTables, ApiTokenTables, OAuthTables, SigningKeyTables, SessionTables, ProviderTokenTables {
  used_jtis: UsedJtisTable;
}

export type Db = Kysely<Database>;

export interface DbHandle {
  db: Db;
  pool: pg.Pool;
  connectionString: string;
  close(): Promise<void>;
}

// int8 (counts, identities) as numbers: every int8 Tessera stores stays far below 2^53.
const INT8_OID = 20;
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID && format !== 'binary' ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
};

/**
 * Marks a hot statement to be prepared once per connection and then executed by name (Bind +
 * Execute only: no parse, and Postgres' plan cache instead of planning every call). Put
 * `sql.raw(preparedMarker('name'))` first in the statement text; the statement must not use `*` (a prepared
 * statement's result columns cannot change under a migration).
 */
export function preparedMarker(name: string): string {
  if (!/^[a-z0-9_.]+$/.test(name)) throw new Error(`bad prepared statement name: ${name}`);
  return `/* prepare:${name} */ `;
}

const PREPARED = /^\/\* prepare:([a-z0-9_.]+) \*\/ /;

/**
 * pg's client, preparing statements that start with {@link preparedMarker}. The name sent to
 * Postgres includes a number per distinct text, so two texts under one marker (e.g. two
 * configurations in one process) never clash on a connection.
 */
class PreparingClient extends pg.Client {
  private static readonly names = new Map<string, string>();

  // pg's query() is a set of overloads this override forwards to unchanged, so it is typed loosely.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  override query(config: unknown, values?: unknown, callback?: unknown): any {
    if (typeof config === 'string' && Array.isArray(values) && config.startsWith('/* prepare:')) {
      let name = PreparingClient.names.get(config);
      if (name === undefined) {
        const m = PREPARED.exec(config);
        if (m && PreparingClient.names.size < 1000) {
          name = `${m[1]}#${PreparingClient.names.size}`;
          PreparingClient.names.set(config, name);
        }
      }
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      if (name !== undefined) return (super.query as any)({ name, text: config, values }, callback);
    }
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    return (super.query as any)(config, values, callback);
  }
}

export interface CreateDbOptions {
  connectionString: string;
  max?: number;
  connectionTimeoutMillis?: number;
  log?: Pick<Logger, 'warn' | 'error'>;
  applicationName?: string;
  /**
   * Bounds the database time of every use of the pool (absent or 0: unbounded): a statement may
   * run, and wait for a lock, at most this long (`statement_timeout`, `lock_timeout`), a
   * transaction may sit idle at most this long (`idle_in_transaction_session_timeout`), and the
   * client gives up on an answer one second later (pg's `query_timeout`: a server that cannot
   * even cancel). Each ends in an error `isDatabaseUnavailable` recognises (a 503).
   */
  statementTimeoutMs?: number;
}

/** pg pool settings bounding each statement, lock wait and idle transaction at `ms` (none when 0). */
export function timeoutSettings(ms: number | undefined): Partial<pg.PoolConfig> {
  if (!ms) return {};
  return { statement_timeout: ms, lock_timeout: ms, idle_in_transaction_session_timeout: ms, query_timeout: ms + 1000 };
}

/**
 * Opens a pool and a Kysely instance over it. Pool errors (a restarted Postgres dropping idle
 * connections) are logged, never thrown: the pool replaces the connection on next use.
 */
export function createDb(opts: CreateDbOptions): DbHandle {
  const pool = new pg.Pool({
    connectionString: opts.connectionString,
    max: opts.max ?? 20,
    connectionTimeoutMillis: opts.connectionTimeoutMillis ?? 2000,
    idleTimeoutMillis: 30_000,
    application_name: opts.applicationName ?? 'tessera',
    types,
    Client: PreparingClient,
    ...timeoutSettings(opts.statementTimeoutMs),
  });
  // One log line per failed connection. pg-pool reports an idle client's failure (a restarted
  // Postgres dropping it) as the pool's 'error'. It listens for errors only while a client is
  // idle, though: a client checked out (between the statements of a transaction, or just
  // acquired) whose server goes away emits 'error' with no listener, and an unhandled 'error'
  // event ends the process. So each client also gets a listener for its whole life, which logs
  // only while the client is checked out (the failure then surfaces as the next query's error, a
  // 503, and the pool discards the broken client on release).
  const checkedOut = new WeakSet<pg.PoolClient>();
  pool.on('acquire', (client) => checkedOut.add(client));
  pool.on('release', (_err: Error | undefined, client: pg.PoolClient) => checkedOut.delete(client));
  pool.on('remove', (client) => checkedOut.delete(client));
  // Once closing, an idle client's end is not awaited by pg-pool: the server stopping right after
  // (embedded Postgres at shutdown) reaches it first, which is no failure worth a line.
  let closed = false;
  pool.on('error', (err) => {
    if (closed) return;
    opts.log?.warn({ err: { message: err.message, code: (err as { code?: string }).code } }, 'idle database connection failed');
  });
  pool.on('connect', (client) => {
    let logged = false;
    client.on('error', (err) => {
      // Idle: the pool's 'error' above logs it. Once per client: a dropped connection reports
      // the server's message and then the closed socket.
      if (!checkedOut.has(client) || logged) return;
      logged = true;
      opts.log?.warn({ err: { message: err.message, code: (err as { code?: string }).code } }, 'database connection failed while in use');
    });
  });
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  return {
    db,
    pool,
    connectionString: opts.connectionString,
    async close() {
      if (closed) return;
      closed = true;
      await db.destroy();
    },
  };
}
