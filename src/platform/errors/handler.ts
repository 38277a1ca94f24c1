import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import FindMyWay, { type HTTPMethod } from 'find-my-way';
import { ApiError, type ApiErrorCode } from './api-error.js';
import { OAuthError, type OAuthErrorCode } from './oauth-error.js';
import { routeFacts, type RouteFacts } from '../http/contract.js';
import { UnavailableLog } from './unavailable-log.js';

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Every route registered, for the contract tests: method, URL pattern, hidden from the contract
     * or not, its schema, error format and what the shared machinery does to it.
     */
    routeTable: Array<{
      method: string;
      url: string;
      hidden: boolean;
      schema: Record<string, unknown>;
      errorFormat: 'oauth' | 'api';
      facts: RouteFacts;
    }>;
  }
  interface FastifyContextConfig {
    /** Which error body the route answers with: RFC 6749 §5.2 (`oauth`) or the API's (`api`, the default). */
    errorFormat?: 'oauth' | 'api';
  }
}

/**
 * Postgres/pg conditions meaning "the database is not there right now", not a bug: shutdowns,
 * connection failures, too many connections, and the time bounds of a request (57014
 * query_canceled by statement_timeout, 55P03 lock_not_available by lock_timeout, 25P03
 * idle_in_transaction_session_timeout).
 */
const UNAVAILABLE_PG_CODES = new Set(['57P01', '57P02', '57P03', '53300', '08000', '08003', '08006', '08001', '08004', '57014', '55P03', '25P03']);
const UNAVAILABLE_NODE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN']);

/**
 * Postgres ends one of two transactions that conflict (40P01 deadlock_detected, 40001
 * serialization_failure): nothing of it was written, and the same request sent again succeeds.
 */
const CONFLICT_PG_CODES = new Set(['40P01', '40001']);

export function isTransientConflict(err: unknown): boolean {
  return !!err && typeof err === 'object' && CONFLICT_PG_CODES.has((err as { code?: unknown }).code as string);
}

export function isDatabaseUnavailable(err: unknown): boolean {
  if (!err || typeof err !== 'object') return false;
  const e = err as { code?: unknown; message?: unknown };
  if (typeof e.code === 'string' && (UNAVAILABLE_PG_CODES.has(e.code) || UNAVAILABLE_NODE_CODES.has(e.code))) return true;
  const msg = typeof e.message === 'string' ? e.message : '';
  return (
    msg.includes('timeout exceeded when trying to connect') ||
    msg === 'Query read timeout' ||
    msg.includes('Connection terminated') ||
    msg.includes('Client has encountered a connection error') ||
    msg.includes('the database system is') ||
    msg.includes('Client was closed') ||
    msg.includes('Cannot use a pool after calling end')
  );
}

interface Rendered {
  status: number;
  headers: Record<string, string>;
  body: Record<string, unknown>;
}

const OAUTH_FOR_STATUS: Record<number, OAuthErrorCode> = {
  400: 'invalid_request',
  401: 'invalid_client',
  403: 'access_denied',
  404: 'invalid_request',
  405: 'invalid_request',
  413: 'invalid_request',
  415: 'invalid_request',
  429: 'temporarily_unavailable',
  503: 'temporarily_unavailable',
};

const API_FOR_STATUS: Record<number, ApiErrorCode> = {
  400: 'invalid_request',
  401: 'invalid_token',
  403: 'forbidden',
  404: 'not_found',
  405: 'method_not_allowed',
  409: 'conflict',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
  429: 'rate_limited',
  503: 'service_unavailable',
};

function render(format: 'oauth' | 'api', status: number, message: string, headers: Record<string, string> = {}): Rendered {
  if (format === 'oauth') {
    return {
      status,
      headers,
      body: { error: OAUTH_FOR_STATUS[status] ?? (status >= 500 ? 'server_error' : 'invalid_request'), error_description: message },
    };
  }
  return { status, headers, body: { error: API_FOR_STATUS[status] ?? (status >= 500 ? 'internal_error' : 'invalid_request'), message } };
}

/** Turns any thrown value into a status, headers and a body safe to show a client. */
export function classify(err: unknown, format: 'oauth' | 'api'): Rendered & { log: 'none' | 'warn' | 'error' } {
  if (err instanceof OAuthError) {
    return {
      status: err.statusCode,
      headers: err.headers,
      body: { error: err.error, error_description: err.description },
      log: err.statusCode >= 500 ? 'error' : 'none',
    };
  }
  if (err instanceof ApiError) {
    if (format === 'oauth') return { ...render('oauth', err.statusCode, err.message, err.headers), log: 'none' };
    return {
      status: err.statusCode,
      headers: err.headers,
      body: { ...err.details, error: err.code, message: err.message },
      log: err.statusCode >= 500 ? 'error' : 'none',
    };
  }
  if (isTransientConflict(err)) {
    return { ...render(format, 503, 'a concurrent change conflicted with this request; nothing was changed, retry it', { 'retry-after': '1' }), log: 'warn' };
  }
  if (isDatabaseUnavailable(err)) {
    return { ...render(format, 503, 'the database is unavailable; retry shortly', { 'retry-after': '1' }), log: 'warn' };
  }
  const fe = err as Partial<FastifyError> & { validationContext?: string };
  if (fe && fe.validation) {
    const where = fe.validationContext ?? 'request';
    const first = fe.validation[0];
    const field = first ? `${where}${first.instancePath || ''}` : where;
    const detail = first?.message ? `${field} ${first.message}` : `${where} is invalid`;
    const extra =
      first && first.keyword === 'additionalProperties' && first.params && 'additionalProperty' in first.params
        ? ` (${String(first.params.additionalProperty)})`
        : '';
    return { ...render(format, 400, `invalid ${where}: ${detail}${extra}`), log: 'none' };
  }
  const status = typeof fe?.statusCode === 'number' ? fe.statusCode : 500;
  if (status >= 400 && status < 500) {
    // Fastify's own client errors (bad JSON, body too large, unsupported media type, ...): their messages are safe.
    const headers: Record<string, string> = {};
    if (status === 429 && fe.message) {
      const m = /(\d+)\s*second/.exec(fe.message);
      if (m?.[1]) headers['retry-after'] = m[1];
    }
    return { ...render(format, status, fe.message || 'bad request', headers), log: 'none' };
  }
  return { ...render(format, 500, 'internal error; the request id in x-request-id helps the operator find it'), log: 'error' };
}

function formatOf(request: FastifyRequest): 'oauth' | 'api' {
  return request.routeOptions.config?.errorFormat ?? (request.url.startsWith('/oauth/') ? 'oauth' : 'api');
}

function send(reply: FastifyReply, rendered: Rendered): FastifyReply {
  reply.code(rendered.status).headers(rendered.headers).header('cache-control', 'no-store');
  return reply.type('application/json; charset=utf-8').send(rendered.body);
}

/**
 * The one place errors become responses: OAuth routes answer RFC 6749 §5.2 bodies, the rest
 * `{ error, message }`. 5xx details are logged with the request id and never sent.
 * Unknown paths get 404, known paths with another method 405 with `Allow`.
 */
export function registerErrorHandling(app: FastifyInstance): void {
  const router = FindMyWay({ ignoreTrailingSlash: false, caseSensitive: true });
  const allowed = new Map<string, Set<string>>();
  const table: FastifyInstance['routeTable'] = [];
  app.decorate('routeTable', table);
  app.addHook('onRoute', function routeTableEntry(route) {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const m of methods) {
      if (m === 'HEAD' || m === 'OPTIONS') continue;
      const schema = (route.schema ?? {}) as Record<string, unknown>;
      table.push({
        method: m,
        url: route.url,
        hidden: schema.hide === true,
        schema,
        errorFormat: (route.config as { errorFormat?: string } | undefined)?.errorFormat === 'oauth' ? 'oauth' : 'api',
        facts: routeFacts(route, m, this),
      });
      let set = allowed.get(route.url);
      if (!set) {
        set = new Set();
        allowed.set(route.url, set);
        // The router only tells which pattern matches; the methods come from `allowed`.
        router.on('GET', route.url, () => undefined, { pattern: route.url });
      }
      set.add(m);
    }
  });

  const unavailable = new UnavailableLog(app.log);
  app.addHook('onClose', async () => unavailable.close());
  app.setErrorHandler((err, request, reply) => {
    const format = formatOf(request);
    const rendered = classify(err, format);
    if (rendered.log === 'error') request.log.error({ err }, 'request failed');
    else if (rendered.log === 'warn') unavailable.record(err, request.log);
    return send(reply, rendered);
  });

  app.setNotFoundHandler(
    {
      preHandler: app.rateLimit ? app.rateLimit() : undefined,
    },
    (request, reply) => {
      const path = request.url.split('?')[0] ?? '/';
      const match = router.find('GET' as HTTPMethod, path);
      const format = path.startsWith('/oauth/') ? 'oauth' : 'api';
      if (match) {
        const pattern = (match.store as { pattern: string }).pattern;
        const methods = [...(allowed.get(pattern) ?? [])];
        if (methods.length > 0 && !methods.includes(request.method)) {
          const allow = methods.includes('GET') ? [...methods, 'HEAD'] : methods;
          return send(reply, render(format, 405, `method ${request.method} is not allowed here; use ${allow.join(', ')}`, { allow: allow.join(', ') }));
        }
      }
      return send(reply, render(format, 404, `no route ${request.method} ${path}`));
    },
  );
}
