import { randomUUID } from 'node:crypto';
import type { Duplex } from 'node:stream';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import { AjvCompiler } from '@fastify/ajv-compiler';
import rateLimit from '@fastify/rate-limit';
import type { Config } from './platform/config.js';
import { systemClock, type Clock } from './platform/clock.js';
import type { Db } from './platform/database/database.js';
import { ChangeListener } from './platform/database/notifications.js';
import { JobRunner } from './platform/jobs.js';
import { UsageStamps } from './platform/database/usage-stamps.js';
import { ApiError } from './platform/errors/api-error.js';
import { registerErrorHandling } from './platform/errors/handler.js';
import { registerContractRules } from './platform/http/contract.js';
import { lazyChildLoggerFactory, loggerOptions } from './platform/log.js';
import { authPlugin } from './platform/auth/auth-plugin.js';
import { openapiPlugin } from './platform/http/openapi.js';
import { adminSurface } from './platform/http/admin-surface.js';
import { metricsPlugin } from './platform/http/metrics.js';
import { SharedCounters } from './platform/http/counter-store.js';
import { apiTokenAuthenticator } from './api-tokens/api-token.authenticator.js';
import { operationsRoutes } from './operations/operations.routes.js';
import { adminAuditRoutes } from './audit/audit.routes.js';
import { providerTokenRoutes } from './provider-tokens/provider-tokens.routes.js';
import { adminOrganizationRoutes, organizationRoutes } from './identity/organizations.routes.js';
import { sessionsPlugin } from './sessions/sessions.plugin.js';
import { sessionAuthenticator } from './sessions/session.authenticator.js';
import { loginRoutes } from './sessions/login.routes.js';
import { usersRoutes } from './identity/users.routes.js';
import { accessTokensRoutes } from './api-tokens/api-tokens.routes.js';
import { adminUsersRoutes } from './identity/admin-users.routes.js';
import { gatewayRoutes } from './gateway/gateway.routes.js';
import { oauthPlugin } from './oauth/oauth.plugin.js';
import { oauthRoutes } from './oauth/oauth.routes.js';
import { wellKnownRoutes } from './oauth/well-known.routes.js';
import { sdkKeyRoutes } from './oauth/sdk-keys.routes.js';
import { keyRotationPlugin } from './signing-keys/key-rotation.plugin.js';
import { adminKeysRoutes } from './signing-keys/signing-keys.routes.js';
import { credentialCascades } from './cascades.js';
import type { CascadeRegistry } from './platform/cascades.js';
import type { EndedCredentials } from './platform/auth/forget.js';
import { adminPeopleRoutes } from './people/people.routes.js';
import { consolePlugin } from './console/console.plugin.js';
import { eventsRoutes } from './events/events.routes.js';

declare module 'fastify' {
  interface FastifyInstance {
    config: Config;
    db: Db;
    /** The signing-key job's pool: not cut short by the request time bounds (`db` when none is given). */
    jobDb: Db;
    clock: Clock;
    /** What a credential's change does to the credentials depending on it (run in its transaction). */
    cascades: CascadeRegistry;
    /** Cross-instance change notifications (Postgres LISTEN/NOTIFY). */
    changes: ChangeListener;
    /** Batched last_used_at stamps. */
    usage: UsageStamps;
    /** Where every rate limit counts: Redis shared by the instances (TESSERA_REDIS_URL), else this instance's memory. */
    counters: SharedCounters;
  }
}

export interface AppDeps {
  config: Config;
  db: Db;
  /**
   * Pool for the signing-key job (its lifecycle transactions wait on an advisory lock and must
   * not be cut short by the request bounds of `db`); default: `db`.
   */
  jobDb?: Db;
  /** Connection string for the LISTEN connection (the same database as `db`). */
  connectionString: string;
  clock?: Clock;
  /**
   * `false` silences logs (tests); a pino logger is used as is (the server passes its process
   * logger, so every line of the process is in one ordered stream); default: pino at `config.logLevel`.
   */
  logger?: boolean | FastifyBaseLogger;
  /**
   * Test harnesses only: called with every response before it is sent (the contract checker).
   * Without it no hook is added.
   */
  inspectResponse?: (request: FastifyRequest, reply: FastifyReply, payload: unknown) => void;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,64}$/;

/**
 * Requests the HTTP parser refuses (headers over 16 KiB, bytes no header may hold, broken framing)
 * never reach a route, so which error format applies is unknown: the body carries `error` (a code
 * valid in both formats) with both `error_description` (RFC 6749) and `message` (the API's).
 */
function clientErrorHandler(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || socket.destroyed || !socket.writable) {
    socket.destroy();
    return;
  }
  const [status, text] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'Request Header Fields Too Large']
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'Request Timeout']
        : [400, 'Bad Request'];
  const description = status === 431 ? 'the request headers exceed 16 KiB' : status === 408 ? 'the request took too long to arrive' : 'malformed HTTP request';
  const body = JSON.stringify({ error: 'invalid_request', error_description: description, message: description });
  socket.end(
    `HTTP/1.1 ${status} ${text}\r\nContent-Type: application/json; charset=utf-8\r\nCache-Control: no-store\r\n` +
      'X-Content-Type-Options: nosniff\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/**
 * Request validators per HTTP part: bodies are JSON and validated as sent (no type coercion: `12345`
 * is not a string, `"api"` is not an array); querystring, params and headers arrive as strings and
 * are coerced to the schema's types (`?limit=10` is an integer).
 */
function partValidators() {
  const factory = AjvCompiler();
  type Build = ReturnType<typeof factory>;
  type Options = Parameters<typeof factory>[1];
  return (externalSchemas: Parameters<typeof factory>[0], options?: Options) => {
    const coercing: Build = factory(externalSchemas, options);
    const exact: Build = factory(externalSchemas, {
      ...options,
      customOptions: { ...options?.customOptions, coerceTypes: false },
    } as Options);
    return (route: Parameters<Build>[0]) => (route.httpPart === 'body' ? exact(route) : coercing(route));
  };
}

/**
 * Builds the Tessera application: plugins in tiers (transport, then services, then routes), every
 * dependency injected. The caller owns `db` and closes it after `app.close()`. Background jobs
 * (change listener, usage stamps, key lifecycle, pruning) are registered in `app.jobs` and run
 * only once the caller starts them (`await app.jobs.start()` after `ready()`); closing the app
 * stops them and closes the listener and usage stamps.
 */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const { config, db } = deps;
  const clock = deps.clock ?? systemClock;
  const options: FastifyServerOptions = {
    ...(typeof deps.logger === 'object' ? { loggerInstance: deps.logger } : { logger: deps.logger === false ? false : loggerOptions(config.logLevel) }),
    ...(deps.logger === false ? {} : { childLoggerFactory: lazyChildLoggerFactory }),
    trustProxy: config.trustProxy as FastifyServerOptions['trustProxy'],
    bodyLimit: 64 * 1024,
    requestIdHeader: false,
    genReqId: (req) => {
      const incoming = req.headers['x-request-id'];
      return typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID();
    },
    ajv: { customOptions: { removeAdditional: false, allErrors: false } },
    schemaController: { compilersFactory: { buildValidator: partValidators() } },
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    clientErrorHandler,
  };
  const app = Fastify(options);

  app.decorate('config', config);
  app.decorate('db', db);
  app.decorate('jobDb', deps.jobDb ?? db);
  app.decorate('clock', clock);
  app.decorate('cascades', credentialCascades());
  // Plugins register their background jobs here; nothing runs until the server starts them (src/server.ts).
  const jobs = new JobRunner(app.log);
  app.decorate('jobs', jobs);
  const changes = new ChangeListener(deps.connectionString, app.log);
  app.decorate('changes', changes);
  const usage = new UsageStamps(db, app.log);
  app.decorate('usage', usage);
  app.decorate('readinessChecks', new Map<string, () => Promise<string | null | { degraded: string }>>());
  const counters = new SharedCounters({ url: config.redisUrl, log: app.log });
  app.decorate('counters', counters);

  // Tier 1: transport. The per-request hooks are callback hooks: none of them waits for
  // anything, and a callback hook skips the promise and microtask turn of an async one.
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id);
    done();
  });
  // Draining: connections idle at close are closed at once ('idle' above); a response finished
  // while closing says `Connection: close`, so its keep-alive connection does not hold the close
  // open until the client lets go.
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  // Every response, errors and 404s included: browsers must not sniff a JSON body into something else.
  app.addHook('onSend', (_request, reply, payload, done) => {
    reply.header('x-content-type-options', 'nosniff');
    if (closing) reply.header('connection', 'close');
    done(null, payload);
  });
  if (deps.inspectResponse) {
    const inspect = deps.inspectResponse;
    app.addHook('onSend', (request, reply, payload, done) => {
      try {
        inspect(request, reply, payload);
      } catch (err) {
        done(err as Error);
        return;
      }
      done(null, payload);
    });
  }
  // JSON only by default (the OAuth routes add the form parser in their own context): another media type is a 415.
  app.removeContentTypeParser('text/plain');
  registerContractRules(app);
  if (config.rateLimit.enabled) {
    await app.register(rateLimit, {
      global: true,
      max: config.rateLimit.defaultPerIp,
      timeWindow: 60_000,
      // With Redis, the counts are shared and fall back to this instance's memory while Redis is down.
      ...(config.redisUrl ? { store: counters.rateLimitStore() } : {}),
      errorResponseBuilder: (_request, context) =>
        new ApiError(429, 'rate_limited', `rate limit exceeded; retry in ${Math.ceil(context.ttl / 1000)} s`, {
          'retry-after': String(Math.ceil(context.ttl / 1000)),
        }),
    });
  }
  registerErrorHandling(app);
  await app.register(openapiPlugin, { issuer: config.issuer });
  await app.register(metricsPlugin);
  counters.registerMetrics(app.metrics);
  if (config.redisUrl) {
    app.readinessChecks.set('rate_limit_store', async () => {
      const problem = await counters.degradation();
      return problem ? { degraded: problem } : null;
    });
  }

  // Tier 2: services.
  await app.register(authPlugin);
  app.authenticators.push(apiTokenAuthenticator({ config, db, clock, usage }));
  await app.register(sessionsPlugin);
  app.authenticators.push(sessionAuthenticator({ config, db, clock, usage, changes, cache: app.sessionCache }));
  await app.register(oauthPlugin);
  await app.register(keyRotationPlugin);
  app.decorate('forgetCredentials', (ended: EndedCredentials) => {
    for (const id of ended.userIds ?? []) {
      app.sessionCache.invalidate('user', id);
      app.oauth.clients.invalidateUser(id);
    }
    for (const id of ended.apiTokenIds ?? []) app.sessionCache.invalidate('api_token', id);
    for (const id of ended.sessionIds ?? []) app.sessionCache.invalidate('session', id);
    for (const id of ended.sdkKeyClientIds ?? []) app.oauth.clients.invalidate(id);
  });

  // Tier 3: routes, by surface, in the order openapi.yaml lists them: operations, self-service
  // under /api, OAuth and discovery, the gateway, then the operators' routes under /admin, all
  // registered in one scope whose guard adminSurface adds once (never per route).
  await app.register(operationsRoutes);
  await app.register(loginRoutes);
  await app.register(usersRoutes);
  await app.register(accessTokensRoutes);
  await app.register(sdkKeyRoutes);
  await app.register(organizationRoutes);
  await app.register(providerTokenRoutes);
  await app.register(oauthRoutes);
  await app.register(wellKnownRoutes);
  await app.register(gatewayRoutes);
  await app.register(eventsRoutes);
  await app.register(adminSurface, {
    prefix: '/admin',
    routes: [adminUsersRoutes, adminPeopleRoutes, adminOrganizationRoutes, adminKeysRoutes, adminAuditRoutes],
  });
  // The people's pages (HTML, hidden from openapi.yaml: see console.plugin.ts).
  await app.register(consolePlugin);

  jobs.register({ name: 'rate-limit-store', start: () => counters.start() });
  jobs.register({
    name: 'change-listener',
    async start() {
      changes.start();
      usage.start();
      await Promise.race([changes.ready(), new Promise((r) => setTimeout(r, 5000).unref())]);
    },
  });
  app.addHook('onClose', async () => {
    await jobs.stop();
    await usage.close();
    await changes.close();
    await counters.close();
  });
  return app;
}
