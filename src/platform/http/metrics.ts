import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { safeEqual } from '../crypto/secrets.js';
import { invalidToken, missingToken } from '../errors/api-error.js';
import { parseBearerHeader } from '../auth/authenticate.js';
import { errorResponses } from './schemas.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** This instance's Prometheus registry; features register their counters here. */
    metrics: Registry;
  }
}

/** Prometheus metrics per app instance (no global registry): HTTP traffic plus process defaults. */
export const metricsPlugin = fp(
  async function metricsPlugin(app: FastifyInstance) {
    const registry = new Registry();
    registry.setDefaultLabels({ service: 'tessera' });
    // Process metrics (event-loop delay sampling among them) belong to a running server only.
    app.jobs.register({ name: 'process-metrics', start: () => collectDefaultMetrics({ register: registry, prefix: 'tessera_' }) });
    app.decorate('metrics', registry);
    const requests = new Counter({
      name: 'tessera_http_requests_total',
      help: 'HTTP requests by route pattern, method and status',
      labelNames: ['method', 'route', 'status'] as const,
      registers: [registry],
    });
    const duration = new Histogram({
      name: 'tessera_http_request_duration_seconds',
      help: 'HTTP request duration by route pattern',
      labelNames: ['method', 'route'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    });
    app.addHook('onResponse', (request, reply, done) => {
      // The route pattern, never the raw URL: bounded label values, no ids or secrets.
      const route = request.routeOptions.url ?? 'unmatched';
      requests.inc({ method: request.method, route, status: String(reply.statusCode) });
      duration.observe({ method: request.method, route }, reply.elapsedTime / 1000);
      done();
    });

    // With TESSERA_METRICS_TOKEN set, scrapers send it as a bearer token (compared as SHA-256 digests, in constant time).
    const digest = app.config.metricsTokenDigest;
    const requireToken = async (request: FastifyRequest) => {
      if (!digest) return;
      const token = parseBearerHeader(request.headers.authorization);
      if (token === null) throw missingToken('metrics');
      if (!safeEqual(createHash('sha256').update(token).digest(), digest)) throw invalidToken(undefined, 'metrics');
    };

    app.get(
      '/metrics',
      {
        config: { rateLimit: false },
        schema: {
          tags: ['operations'],
          operationId: 'getMetrics',
          summary: 'Prometheus metrics (text exposition format)',
          description: 'Open unless TESSERA_METRICS_TOKEN is set; then it wants `Authorization: Bearer <that token>`.',
          security: [{}, { metricsToken: [] }],
          response: {
            200: { description: 'Prometheus text format 0.0.4', content: { 'text/plain': { schema: { type: 'string' } } } },
            ...errorResponses(401),
          },
        },
        preHandler: requireToken,
      },
      async (_request, reply) => reply.type(registry.contentType).send(await registry.metrics()),
    );
  },
  { name: 'tessera-metrics' },
);
