import type { Logger } from 'pino';
import { loadConfig, type Config } from './config.js';
import { createDb, type DbHandle } from './database/database.js';
import { startEmbeddedPostgres, type EmbeddedPg } from './database/embedded.js';
import { createLogger } from './log.js';

/** What a Tessera process (server or CLI command) runs on. */
export interface Runtime {
  config: Config;
  log: Logger;
  handle: DbHandle;
  embedded: EmbeddedPg | null;
  /**
   * Another pool on the same database, closed with the runtime: for work that must not be cut
   * short by the request time bounds (`statementTimeoutMs` absent: unbounded).
   */
  openPool(opts: { max: number; statementTimeoutMs?: number; applicationName?: string }): DbHandle;
  /** Closes the pools, then stops embedded Postgres if this process started it. */
  close(): Promise<void>;
}

/**
 * Loads configuration, starts or attaches to the database, and opens the pool. With
 * `boundRequests` (the server) every statement on `handle` is bounded by
 * `TESSERA_DB_STATEMENT_TIMEOUT_MS`; the CLI's operator commands are not.
 */
export async function openRuntime(
  env: NodeJS.ProcessEnv = process.env,
  opts: { logLevel?: string; logToStderr?: boolean; boundRequests?: boolean } = {},
): Promise<Runtime> {
  const { config, warnings } = loadConfig(env);
  const log = createLogger(opts.logLevel ?? config.logLevel, opts.logToStderr ? 2 : 1);
  for (const w of warnings) log.warn(w);
  let embedded: EmbeddedPg | null = null;
  let connectionString = config.databaseUrl;
  if (!connectionString) {
    embedded = await startEmbeddedPostgres({
      dataDir: config.dataDir,
      port: config.embeddedPgPort,
      relocate: !config.dataDirFromEnv,
      log: (m) => log.debug({ postgres: m }, 'embedded postgres'),
      notice: (m) => log.warn(m),
    });
    if (embedded.relocated && embedded.initialised) {
      log.warn(
        `embedded Postgres keeps its data in ${embedded.dataDir} (it runs as the 'postgres' system user, which cannot ` +
          `enter ${embedded.unreachable}); the secrets stay in ${config.dataDir}/secrets.json. Back up both, or set TESSERA_DATA_DIR ` +
          'to a folder the postgres user can reach',
      );
    }
    log.info(
      { dataDir: embedded.dataDir, relocated: embedded.relocated, port: embedded.port, startedHere: embedded.startedHere },
      embedded.startedHere ? 'embedded Postgres started' : 'attached to the running embedded Postgres',
    );
    connectionString = embedded.connectionString;
  }
  const url = connectionString;
  const handle = createDb({
    connectionString: url,
    max: config.dbPoolMax,
    connectionTimeoutMillis: config.dbConnectTimeoutMs,
    log,
    ...(opts.boundRequests ? { statementTimeoutMs: config.dbStatementTimeoutMs } : {}),
  });
  const others: DbHandle[] = [];
  return {
    config,
    log,
    handle,
    embedded,
    openPool(o) {
      const h = createDb({
        connectionString: url,
        max: o.max,
        connectionTimeoutMillis: config.dbConnectTimeoutMs,
        log,
        ...(o.applicationName ? { applicationName: o.applicationName } : {}),
        ...(o.statementTimeoutMs ? { statementTimeoutMs: o.statementTimeoutMs } : {}),
      });
      others.push(h);
      return h;
    },
    async close() {
      for (const h of others) await h.close();
      await handle.close();
      await embedded?.stop();
    },
  };
}
