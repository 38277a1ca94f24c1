import type { FastifyInstance, FastifyReply, FastifyRequest, preValidationAsyncHookHandler } from 'fastify';
import { OAuthError, invalidClient, invalidRequest, invalidTarget } from '../platform/errors/oauth-error.js';
import { extractClientCredentials } from './client-auth.js';
import type { ClientEntry } from './client-cache.js';
import { AttemptLimiter } from './attempt-limiter.js';

/** Largest OAuth request body accepted (form parameters only). */
export const OAUTH_BODY_LIMIT = 16 * 1024;

export type FormBody = Record<string, string | undefined>;

/**
 * Before validation, on every OAuth endpoint: parameters only in an
 * application/x-www-form-urlencoded body (never in the URL: RFC 6749 §2.3.1, §3.2), each at most
 * once (§3.1: "Request and response parameters MUST NOT be included more than once").
 */
export const formOnly: preValidationAsyncHookHandler = async function formOnly(request) {
  const q = request.url.indexOf('?');
  if (q >= 0 && request.url.length > q + 1) {
    throw invalidRequest('send parameters in the request body, never in the URL');
  }
  const type = request.headers['content-type'] ?? '';
  if (!/^application\/x-www-form-urlencoded\s*(;|$)/i.test(type)) {
    throw invalidRequest('send parameters as application/x-www-form-urlencoded');
  }
  const body = (request.body ?? {}) as Record<string, unknown>;
  const kept: Record<string, string> = {};
  for (const [name, value] of Object.entries(body)) {
    // Appendix A: param-name = 1*name-char (ALPHA / DIGIT / "-" / "." / "_"). `scope[a]`, `a b`, NUL, ... are not names.
    if (!PARAM_NAME.test(name)) throw invalidRequest('malformed parameter name: letters, digits, "-", "." and "_" only');
    if (Array.isArray(value)) {
      // RFC 8707 §2 lets `resource` repeat, and lets a server that issues single-audience tokens refuse that.
      if (name === 'resource') throw invalidTarget('one resource per token request: Tessera issues tokens for a single audience');
      throw invalidRequest(`parameter ${name.slice(0, 64)} was sent more than once`);
    }
    // §3.1: "Parameters sent without a value MUST be treated as if they were omitted from the request."
    if (typeof value === 'string' && value !== '') kept[name] = value;
  }
  request.body = kept;
};

const PARAM_NAME = /^[A-Za-z0-9._-]{1,64}$/;

/** RFC 6749 §5.1: token responses (and everything else secret-bearing) must not be cached. */
export function noStore(reply: FastifyReply): FastifyReply {
  return reply.header('cache-control', 'no-store').header('pragma', 'no-cache');
}

type Limiter = NonNullable<ReturnType<FastifyInstance['createRateLimit']>>;

export interface OAuthRouteContext {
  /** Authenticates the SDK key the request carries (Basic or body), counting failures per IP. */
  authenticateClient(request: FastifyRequest, opts?: { required?: boolean }): Promise<ClientEntry | null>;
  /** Counts a token request against the client's own limit (429 past it). */
  limitClient(request: FastifyRequest, clientId: string): Promise<void>;
}

function tooMany(ttlInSeconds: number, what: string): OAuthError {
  const s = String(Math.max(1, ttlInSeconds));
  return new OAuthError(429, 'temporarily_unavailable', `${what}; retry in ${s} s`, { 'retry-after': s });
}

/**
 * Per-app helpers of the OAuth routes. Rate limits (when `config.rateLimit.enabled`): failed
 * client authentications per IP and token requests per client. Per-IP request limits are route
 * config, applied before the body is read.
 *
 * Failed authentications: every attempt takes a slot of its IP's budget synchronously, before any
 * parsing, look-up or hash, and gives it back unless it ends in `invalid_client`. So at most
 * `failedAuthPerIp` failures a minute are worked on per IP, however many arrive at once; the
 * others get 429 with `Retry-After` without touching Postgres or the pepper (an attempt that
 * finds the budget held by attempts still under way waits for their outcome first).
 */
export function oauthRouteContext(app: FastifyInstance): OAuthRouteContext {
  const limits = app.config.rateLimit;
  const clientOf = new WeakMap<FastifyRequest, string>();
  const failed = limits.enabled ? new AttemptLimiter({ max: limits.failedAuthPerIp, windowMs: 60_000, clock: app.clock }) : null;
  let perClient: Limiter | null = null;
  if (limits.enabled && typeof app.createRateLimit === 'function') {
    perClient = app.createRateLimit({
      max: limits.tokenPerClient,
      timeWindow: 60_000,
      keyGenerator: (r) => `oauth-client:${clientOf.get(r) ?? ''}`,
    });
  }
  return {
    async authenticateClient(request, opts = {}) {
      const slot = failed ? await failed.acquire(request.ip) : null;
      if (slot && !slot.ok) throw tooMany(slot.retryAfterSeconds, 'too many failed client authentications');
      let counts = false;
      try {
        const creds = extractClientCredentials(request.headers.authorization, request.body as FormBody);
        if (!creds) {
          if (opts.required === false) return null;
          throw invalidClient();
        }
        return await app.oauth.authenticateClient(creds);
      } catch (err) {
        counts = err instanceof OAuthError && err.error === 'invalid_client';
        throw err;
      } finally {
        if (slot?.ok) {
          if (counts) slot.keep();
          else slot.release();
        }
      }
    },
    async limitClient(request, clientId) {
      if (!perClient) return;
      clientOf.set(request, clientId);
      const r = await perClient(request);
      if (!r.isAllowed && r.isExceeded) throw tooMany(r.ttlInSeconds, 'too many token requests for this client');
    },
  };
}
