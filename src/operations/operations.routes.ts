import type { FastifyInstance } from 'fastify';
import { sql } from 'kysely';
import { pendingMigrations } from '../platform/database/migrate.js';

const statusBody = {
  type: 'object',
  additionalProperties: false,
  required: ['status'],
  properties: {
    status: { type: 'string', enum: ['ok', 'degraded', 'unavailable'] },
    checks: { type: 'object', additionalProperties: { type: 'string' } },
  },
} as const;

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Readiness checks: each returns null when fine, what is wrong (not ready), or `{ degraded }`:
     * what works less well while the instance still serves requests (ready, but it says so).
     */
    readinessChecks: Map<string, () => Promise<string | null | { degraded: string }>>;
  }
}

/** Liveness, readiness, the contract and the API reference. */
export async function operationsRoutes(app: FastifyInstance): Promise<void> {
  app.readinessChecks.set('database', async () => {
    await sql`select 1`.execute(app.db);
    return null;
  });
  app.readinessChecks.set('migrations', async () => {
    const pending = await pendingMigrations(app.db);
    return pending.length ? `pending migrations: ${pending.join(', ')}` : null;
  });
  // An instance whose clock is off by more than the tolerance mints tokens the others refuse (iat
  // in their future) and refuses theirs: it takes itself out of rotation instead. Postgres's clock
  // is the reference every instance shares.
  app.readinessChecks.set('clock', async () => {
    const r = await sql<{ ms: number }>`select (extract(epoch from clock_timestamp()) * 1000)::float8 as ms`.execute(app.db);
    const skewS = (app.clock.now() - Number(r.rows[0]!.ms)) / 1000;
    const tolerance = app.config.clockToleranceSeconds;
    return Math.abs(skewS) > tolerance ? `clock is ${Math.round(skewS)} s off the database's (tolerance ${tolerance} s, TESSERA_CLOCK_TOLERANCE)` : null;
  });
  app.readinessChecks.set('change_listener', async () => (app.changes.isConnected ? null : 'not listening for changes'));

  app.get(
    '/healthz',
    {
      // Probes run often and from inside the platform: never rate limited.
      config: { rateLimit: false },
      schema: {
        tags: ['operations'],
        operationId: 'getLiveness',
        summary: 'Liveness: the process answers (no dependency is checked)',
        response: { 200: statusBody },
      },
    },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/readyz',
    {
      config: { rateLimit: false },
      schema: {
        tags: ['operations'],
        operationId: 'getReadiness',
        summary: 'Readiness: database reachable, migrations current, and every feature check passing',
        description:
          '200 with status ok when every check passes; 200 with status degraded when the instance serves requests but ' +
          'something works less well (e.g. Redis unreachable: rate limits counted per instance), the check saying ' +
          '"degraded: ..."; 503 with status unavailable when a check fails.',
        response: { 200: statusBody, 503: statusBody },
      },
    },
    async (_request, reply) => {
      const checks: Record<string, string> = {};
      let ok = true;
      let degraded = false;
      await Promise.all(
        [...app.readinessChecks].map(async ([name, check]) => {
          try {
            const problem = await Promise.race([check(), new Promise<string>((r) => setTimeout(() => r('timed out'), 2000).unref())]);
            if (problem !== null && typeof problem === 'object') {
              checks[name] = `degraded: ${problem.degraded}`;
              degraded = true;
            } else {
              checks[name] = problem ?? 'ok';
              if (problem) ok = false;
            }
          } catch (err) {
            checks[name] = `failed: ${(err as Error).message.split('\n')[0]}`;
            ok = false;
          }
        }),
      );
      reply.code(ok ? 200 : 503).header('cache-control', 'no-store');
      return { status: !ok ? ('unavailable' as const) : degraded ? ('degraded' as const) : ('ok' as const), checks };
    },
  );

  app.get(
    '/openapi.yaml',
    {
      schema: {
        tags: ['operations'],
        operationId: 'getOpenApiDocument',
        summary: 'This contract (OpenAPI 3.1, YAML)',
        response: { 200: { description: 'OpenAPI document', content: { 'application/yaml': { schema: { type: 'string' } } } } },
      },
    },
    async (_request, reply) => reply.type('application/yaml; charset=utf-8').send(app.openapiYaml()),
  );

  app.get(
    '/docs',
    {
      schema: {
        tags: ['operations'],
        operationId: 'getApiReference',
        summary: 'Rendered API reference (redirects to the Swagger UI served under /docs/ui/)',
        response: { 302: { type: 'null', description: 'Redirect to /docs/ui/' } },
      },
    },
    async (_request, reply) => reply.redirect('/docs/ui/', 302),
  );
}
