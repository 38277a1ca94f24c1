import type { FastifyInstance, preHandlerAsyncHookHandler, RouteOptions } from 'fastify';
import { errorResponses, oauthErrorResponses } from './schemas.js';

const BEARER_GUARD = Symbol('tessera.bearerGuard');

/** The security requirement of a route guarded by `app.requireAuth(...)`: either bearer header. */
export const BEARER_SECURITY: ReadonlyArray<Record<string, string[]>> = [{ bearer: [] }, { accessToken: [] }];

/** Methods whose requests Fastify reads a body for: each can fail parsing (400), size (413) or media type (415). */
export const BODY_METHODS: ReadonlySet<string> = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** Marks a hook as a bearer guard, so the route that uses it is documented as needing the token. */
export function markBearerGuard<T extends object>(hook: T, scopes: readonly string[]): T {
  Object.defineProperty(hook, BEARER_GUARD, { value: [...scopes] });
  return hook;
}

type HookSlot = RouteOptions['onRequest'] | RouteOptions['preValidation'] | RouteOptions['preHandler'];

const SCOPE_GUARD = Symbol('tessera.scopeGuard');

/**
 * Guards every route of an encapsulated scope (and of the plugins it registers) with one
 * preHandler, and marks the scope so those routes are documented as needing the token, exactly
 * as a route's own guard would be. Call it before the scope registers its routes.
 */
export function guardScope(scope: FastifyInstance, scopes: readonly string[], guard: preHandlerAsyncHookHandler): void {
  // Plugin instances inherit from their parent's prototype chain, so nested plugins see the mark.
  Object.defineProperty(scope, SCOPE_GUARD, { value: [...scopes] });
  scope.addHook('preHandler', guard);
}

/**
 * The scopes of the bearer guard among the route's hooks, or of the guarded scope (see
 * {@link guardScope}) `instance` (the instance the route is declared on) belongs to; null when none.
 */
export function bearerGuardOf(route: Pick<RouteOptions, 'onRequest' | 'preValidation' | 'preHandler'>, instance?: object): string[] | null {
  for (const slot of [route.onRequest, route.preValidation, route.preHandler] as HookSlot[]) {
    const hooks = slot === undefined ? [] : Array.isArray(slot) ? slot : [slot];
    for (const hook of hooks) {
      const scopes = (hook as unknown as Record<symbol, string[] | undefined>)[BEARER_GUARD];
      if (scopes) return scopes;
    }
  }
  return (instance as Record<symbol, string[] | undefined> | undefined)?.[SCOPE_GUARD] ?? null;
}

/** What the shared machinery does to a route, whatever its handler does. */
export interface RouteFacts {
  method: string;
  /** A bearer guard (`app.requireAuth`) runs before the handler. */
  guarded: boolean;
  /** The global per-IP rate limit applies (not switched off with `config.rateLimit: false`). */
  rateLimited: boolean;
  /** The route validates its body, querystring, params or headers against a schema. */
  validates: boolean;
}

export function routeFacts(route: RouteOptions, method: string, instance?: object): RouteFacts {
  const schema = (route.schema ?? {}) as Record<string, unknown>;
  const config = (route.config ?? {}) as { rateLimit?: unknown };
  return {
    method,
    guarded: bearerGuardOf(route, instance) !== null,
    rateLimited: config.rateLimit !== false,
    validates: ['body', 'querystring', 'params', 'headers'].some((part) => schema[part] !== undefined),
  };
}

/**
 * The error statuses a route can answer without its handler deciding to: 500 and 503 everywhere
 * (an unexpected failure; the database is down or the server is shutting down), 429 where the per-IP limit applies, 400/413/415
 * where a body is read, 400 where a schema validates input, 400/401/403 behind a bearer guard.
 */
export function implicitErrorStatuses(facts: RouteFacts): number[] {
  const out = new Set<number>([500, 503]);
  if (facts.rateLimited) out.add(429);
  if (BODY_METHODS.has(facts.method)) for (const s of [400, 413, 415]) out.add(s);
  if (facts.validates) out.add(400);
  if (facts.guarded) for (const s of [400, 401, 403]) out.add(s);
  return [...out].sort((a, b) => a - b);
}

/**
 * Completes every documented route's contract at registration, so new routes are covered without
 * per-route edits: an `operationId` is required (unique, camelCase; registration throws otherwise),
 * `security` follows the route's bearer guard (a guarded route lists the bearer schemes, an open
 * one says `security: []` unless it declares its own), and the implicit error statuses are added
 * to `response` in the route's error format (RFC 6749 bodies on `errorFormat: 'oauth'` routes).
 * Statuses a route documents itself keep their description. Routes with `hide: true` are skipped.
 */
export function registerContractRules(app: FastifyInstance): void {
  const operationIds = new Map<string, string>();
  app.addHook('onRoute', function contractRules(route) {
    const methods = (Array.isArray(route.method) ? route.method : [route.method]).filter((m) => m !== 'HEAD' && m !== 'OPTIONS');
    if (methods.length === 0) return;
    const schema = route.schema as (Record<string, unknown> & { hide?: boolean }) | undefined;
    if (schema?.hide === true) return;
    const where = `${methods.join(',')} ${route.url}`;
    if (!schema) throw new Error(`${where}: declare a schema (the contract is generated from it)`);
    const operationId = schema.operationId;
    if (typeof operationId !== 'string' || !/^[a-z][A-Za-z0-9]*$/.test(operationId)) {
      throw new Error(`${where}: schema.operationId must be a camelCase name (it names the operation in generated clients)`);
    }
    const seen = operationIds.get(operationId);
    if (seen !== undefined && seen !== where) throw new Error(`${where}: operationId ${operationId} is already used by ${seen}`);
    operationIds.set(operationId, where);

    const guard = bearerGuardOf(route, this);
    let security = schema.security as Array<Record<string, string[]>> | undefined;
    if (guard && security !== undefined && !security.some((s) => 'bearer' in s)) {
      throw new Error(`${where}: the route has a bearer guard, so its security must list the bearer scheme`);
    }
    if (security === undefined) security = guard ? BEARER_SECURITY.map((s) => ({ ...s })) : [];

    const format = (route.config as { errorFormat?: string } | undefined)?.errorFormat === 'oauth' ? 'oauth' : 'api';
    const declared = (schema.response ?? {}) as Record<string, unknown>;
    const statuses = new Set<number>();
    for (const m of methods) for (const s of implicitErrorStatuses(routeFacts(route, m, this))) statuses.add(s);
    const missing = [...statuses].filter((s) => declared[s] === undefined && declared[String(s)] === undefined);
    const added = format === 'oauth' ? oauthErrorResponses(...missing) : errorResponses(...missing);
    route.schema = { ...schema, security, response: sortByStatus({ ...declared, ...added }) };
  });
}

function sortByStatus(responses: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(responses).sort(([a], [b]) => a.localeCompare(b)));
}
