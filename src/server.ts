import type { FastifyInstance } from 'fastify';
import { buildApp } from './app.js';
import { migrateToLatest } from './platform/database/migrate.js';
import { countAdminTokens } from './api-tokens/api-tokens.repository.js';
import { openRuntime, type Runtime } from './platform/runtime.js';
import { startTelemetry } from './platform/telemetry.js';

/** Connections the kernel may hold for accept() (see the listen call). */
const LISTEN_BACKLOG = 4096;

/**
 * Starts Tessera: configuration, database (embedded when DATABASE_URL is absent), migrations,
 * the app, the listener; and a graceful shutdown on SIGTERM/SIGINT that stops taking requests,
 * drains those in flight, closes the pool and stops embedded Postgres.
 */
export async function serve(env: NodeJS.ProcessEnv = process.env): Promise<{ app: FastifyInstance; runtime: Runtime; stop(): Promise<void> }> {
  // Tracing (off unless OTEL_EXPORTER_OTLP_ENDPOINT is set): started before the pools and the app exist.
  const telemetry = await startTelemetry(env);
  const runtime = await openRuntime(env, { boundRequests: true });
  const { config, log, handle } = runtime;
  let app: FastifyInstance | null = null;
  try {
    if (config.migrateOnStart) {
      // Migrations may take long: their own connection, without the request time bounds.
      const migrations = runtime.openPool({ max: 1, applicationName: 'tessera-migrate' });
      try {
        const applied = await migrateToLatest(migrations.db);
        if (applied.length) log.info({ applied }, 'migrations applied');
      } finally {
        await migrations.close();
      }
    }
    // The signing-key job: a minute per statement or lock wait, not a request's few seconds.
    const jobs = runtime.openPool({
      max: 2,
      applicationName: 'tessera-jobs',
      statementTimeoutMs: config.dbStatementTimeoutMs === 0 ? 0 : Math.max(60_000, config.dbStatementTimeoutMs),
    });
    app = await buildApp({ config, db: handle.db, jobDb: jobs.db, connectionString: handle.connectionString, logger: log });
    await app.ready();
    // The background jobs (change listener, usage stamps, signing keys, pruning): their first runs
    // complete before the port opens, so the first request finds the signing key loaded and the
    // listener in place; closing the app stops them.
    await app.jobs.start();
    // A burst of new connections (a fleet of SDKs reconnecting) waits in the kernel's accept queue
    // rather than being dropped: Node's default queue is 511; the kernel caps this at somaxconn.
    await app.listen({ port: config.port, host: config.host, backlog: LISTEN_BACKLOG });
  } catch (err) {
    await app?.close().catch(() => undefined);
    await runtime.close().catch(() => undefined);
    await telemetry?.shutdown().catch(() => undefined);
    throw err;
  }
  const started = app;
  if ((await countAdminTokens(handle.db).catch(() => 1)) === 0) {
    log.warn(
      'no operator exists yet. Invite the first operator to the console (prints a one-time link):\n' +
        `  npx tessera users invite --email you@example.com --name "Your Name" --scopes api,quantum_tokens,admin\n` +
        'or, for the API only, create a user and an operator token:\n' +
        '  npx tessera users create --email you@example.com --name "Your Name"\n' +
        '  npx tessera tokens create --user you@example.com --scopes api,admin --name bootstrap',
    );
  }
  // Shutdown lines, in this order in the one log stream: "draining requests", the lines of the
  // requests drained, "stopped" once the pool is closed and embedded Postgres stopped; the log
  // is flushed before `stop()` resolves.
  let stopping: Promise<void> | null = null;
  const stop = () =>
    (stopping ??= (async () => {
      log.info('shutting down: draining requests');
      try {
        await started.close();
      } finally {
        await runtime.close();
        await telemetry?.shutdown().catch((err: Error) => log.warn({ err: { message: err.message } }, 'tracing: spans not flushed'));
        log.info('stopped');
        await new Promise<void>((resolve) => log.flush(() => resolve()));
      }
    })());
  return { app: started, runtime, stop };
}

/** Exits once the log is written out (or after a second, should the output be stuck). */
function exitAfterFlush(runtime: Runtime, code: number): void {
  setTimeout(() => process.exit(code), 1000);
  runtime.log.flush(() => process.exit(code));
}

/**
 * `tessera serve`: runs until SIGTERM/SIGINT. The handlers are in place before start-up begins: a
 * signal that arrives while Tessera is still starting (embedded Postgres, migrations, the first
 * job runs, the listener) is kept and acted on as soon as start-up is done, with the same drain
 * and stop, so embedded Postgres is never left running by an early signal. A second signal of the
 * same kind takes the default action (an immediate exit) for an operator who will not wait.
 */
export async function runServer(): Promise<void> {
  let pending: string | null = null;
  let onSignal = (signal: string) => {
    pending = signal;
  };
  process.once('SIGTERM', () => onSignal('SIGTERM'));
  process.once('SIGINT', () => onSignal('SIGINT'));
  const { runtime, stop } = await serve();
  onSignal = (signal: string) => {
    runtime.log.info({ signal }, 'signal received');
    const force = setTimeout(() => {
      runtime.log.error('shutdown took longer than 15 s; exiting');
      exitAfterFlush(runtime, 1);
    }, 15_000);
    force.unref();
    stop().then(
      () => process.exit(0),
      (err) => {
        runtime.log.error({ err }, 'shutdown failed');
        exitAfterFlush(runtime, 1);
      },
    );
  };
  if (pending !== null) onSignal(pending);
}
