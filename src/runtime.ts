import type { Logger } from 'pino';
import { loadConfig, type Config } from './config.js';
import { createDb, type DbHandle } from './db/database.js';
import { startEmbeddedPostgres, type EmbeddedPg } from './db/embedded.js';
import { createLogger } from './log.js';

/** What a Tessera process (server or CLI command) runs on. */
export interface Runtime {
  config: Config;
  log: Logger;
  handle: DbHandle;
  embedded: EmbeddedPg | null;
  /** Closes the pool, then stops embedded Postgres if this process started it. */
  close(): Promise<void>;
}

/** Loads configuration, starts or attaches to the database, and opens the pool. */
export async function openRuntime(env: NodeJS.ProcessEnv = process.env, opts: { logLevel?: string; logToStderr?: boolean } = {}): Promise<Runtime> {
  const { config, warnings } = loadConfig(env);
  const log = createLogger(opts.logLevel ?? config.logLevel, opts.logToStderr ? 2 : 1);
  for (const w of warnings) log.warn(w);
  let embedded: EmbeddedPg | null = null;
  let connectionString = config.databaseUrl;
  if (!connectionString) {
    embedded = await startEmbeddedPostgres({
      dataDir: config.dataDir,
      port: config.embeddedPgPort,
      log: (m) => log.debug({ postgres: m }, 'embedded postgres'),
    });
    log.info(
      { dataDir: embedded.dataDir, port: embedded.port, startedHere: embedded.startedHere },
      embedded.startedHere ? 'embedded Postgres started' : 'attached to the running embedded Postgres',
    );
    connectionString = embedded.connectionString;
  }
  const handle = createDb({
    connectionString,
    max: config.dbPoolMax,
    connectionTimeoutMillis: config.dbConnectTimeoutMs,
    log,
  });
  return {
    config,
    log,
    handle,
    embedded,
    async close() {
      await handle.close();
      await embedded?.stop();
    },
  };
}
