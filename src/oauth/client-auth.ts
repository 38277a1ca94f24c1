import type { FastifyRequest } from 'fastify';
import type { Clock } from '../platform/clock.js';
import type { Config } from '../platform/config.js';
import { hashSecret, safeEqual } from '../platform/crypto/secrets.js';
import { OAuthError, invalidClient, invalidRequest } from '../platform/errors/oauth-error.js';
import { AttemptLimiter } from '../platform/http/attempt-limiter.js';
import type { CounterStore } from '../platform/http/counter-store.js';
import type { ClientCache, ClientEntry } from './client-cache.js';
import type { ReplayGuard } from '../platform/database/replay-guard.js';
import { requestUrl } from '../platform/auth/dpop.js';
import { ClientAssertionVerifier, JWT_BEARER_ASSERTION } from './client-assertion.js';

/** HMAC purpose of an SDK key's secret: the stored `secret_hash` is `hashSecret(pepper, secret, SDK_KEY_PURPOSE)`. */
export const SDK_KEY_PURPOSE = 'sdk_key';

export type ClientAuthMethod = 'client_secret_basic' | 'client_secret_post';

/** Every client authentication method the OAuth endpoints accept (metadata lists these). */
export const CLIENT_AUTH_METHODS = ['client_secret_basic', 'client_secret_post', 'private_key_jwt'] as const;

export interface ClientCredentials {
  method: ClientAuthMethod;
  clientId: string;
  secret: string;
}

/** `s_<uuid>`: anything else is not one of our client ids (and skips the look-up, not the HMAC). */
export const CLIENT_ID_RE = /^s_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Longest secret worth hashing; ours are 43 characters. */
const MAX_SECRET_LENGTH = 512;

/** application/x-www-form-urlencoded decoding of one Basic credential half (RFC 6749 §2.3.1). */
function formDecode(s: string): string | null {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return null;
  }
}

/**
 * The client's credentials from `Authorization: Basic` or the body (RFC 6749 §2.3.1), or null
 * when it sent none. Two methods at once is `invalid_request`; a malformed Basic header is
 * `invalid_client`. A `client_id` in the body beside Basic must name the same client.
 */
export function extractClientCredentials(authorization: string | undefined, body: Record<string, string | undefined>): ClientCredentials | null {
  const postId = body.client_id;
  const postSecret = body.client_secret;
  if (authorization !== undefined) {
    // A malformed Basic header, a bearer token or another scheme: not client authentication here.
    const m = /^Basic +([A-Za-z0-9+/]+=*) *$/i.exec(authorization);
    if (!m) throw invalidClient();
    if (postSecret !== undefined) {
      throw invalidRequest('use one client authentication method: client_secret_basic or client_secret_post, not both');
    }
    const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) throw invalidClient();
    const clientId = formDecode(decoded.slice(0, colon));
    const secret = formDecode(decoded.slice(colon + 1));
    if (clientId === null || secret === null || clientId === '') throw invalidClient();
    if (postId !== undefined && postId !== clientId) {
      throw invalidRequest('client_id in the body differs from the client authenticated by the Authorization header');
    }
    return { method: 'client_secret_basic', clientId, secret };
  }
  if (postSecret !== undefined || postId !== undefined) {
    if (!postId || postSecret === undefined) throw invalidClient();
    return { method: 'client_secret_post', clientId: postId, secret: postSecret };
  }
  return null;
}

/** The pieces verification is made of: the look-up, the HMAC and the comparison. */
export interface ClientAuthDeps {
  lookup(clientId: string): Promise<ClientEntry | null> | ClientEntry | null;
  /** HMAC-SHA256(pepper, secret) as stored. */
  hash(secret: string): Buffer;
  /** Constant-time comparison. */
  compare(a: Buffer, b: Buffer): boolean;
}

/** Stands in for the stored hash when the client does not exist, so both paths do the same work. */
const DUMMY_HASH = Buffer.alloc(32, 0x5a);

/**
 * Verifies a client's secret. Unknown, wrong, disabled and suspended-owner clients all end in the
 * same `invalid_client`, after the same work: one HMAC and two constant-time compares, against the
 * current secret's hash and the previous one's (a rotation's overlap), each replaced by a dummy
 * hash when absent. Both compares always run, so the time taken says nothing about which matched.
 * The look-up returns a previous hash only until its expiry.
 */
export async function verifyClientCredentials(creds: ClientCredentials, deps: ClientAuthDeps): Promise<ClientEntry> {
  const entry = CLIENT_ID_RE.test(creds.clientId) ? await deps.lookup(creds.clientId) : null;
  const secret = creds.secret.length <= MAX_SECRET_LENGTH ? creds.secret : '';
  const presented = deps.hash(secret);
  const current = deps.compare(presented, entry?.secretHash ?? DUMMY_HASH);
  const previous = deps.compare(presented, entry?.previousSecretHash ?? DUMMY_HASH);
  const matches = current || previous;
  if (!entry || !entry.secretHash || !matches || secret === '' || entry.status !== 'enabled' || entry.userStatus !== 'active') {
    throw invalidClient();
  }
  return entry;
}

function tooMany(ttlInSeconds: number, what: string): OAuthError {
  const s = String(Math.max(1, ttlInSeconds));
  return new OAuthError(429, 'temporarily_unavailable', `${what}; retry in ${s} s`, { 'retry-after': s });
}

/**
 * Client authentication for /oauth/token, /oauth/introspect and /oauth/revoke (RFC 6749 §2.3.1):
 * the credentials are read from `Authorization: Basic` or the form body, and verified against the
 * SDK-key cache with the pepper's HMAC and a constant-time compare.
 *
 * Failed authentications are limited per IP when `config.rateLimit.enabled`: every attempt takes a
 * slot of its IP's budget synchronously, before any parsing, look-up or hash, and gives it back
 * unless it ends in `invalid_client`. So at most `failedAuthPerIp` failures a minute are worked on
 * per IP, however many arrive at once; the others get 429 with `Retry-After` without touching
 * Postgres or the pepper (an attempt that finds the budget held by attempts still under way waits
 * for their outcome first).
 */
export class ClientAuthenticator {
  /** What verification runs on; its members are looked up on every call (tests wrap them to count the work). */
  readonly checks: ClientAuthDeps;
  private readonly failed: AttemptLimiter | null;
  private readonly assertions: ClientAssertionVerifier;
  private readonly issuer: string;

  constructor(deps: {
    clients: Pick<ClientCache, 'get'>;
    config: Pick<Config, 'pepper' | 'rateLimit' | 'issuer' | 'clockToleranceSeconds' | 'proofOfPossession'>;
    clock: Clock;
    replay: Pick<ReplayGuard, 'firstUse'>;
    /** Where the failures of every instance are counted too (Redis); null or absent: this instance only. */
    sharedFailures?: CounterStore | null;
  }) {
    const { clients, config, clock } = deps;
    this.issuer = config.issuer;
    this.assertions = new ClientAssertionVerifier({ config, clock, replay: deps.replay, lookup: (clientId) => clients.get(clientId) });
    this.checks = {
      lookup: (clientId) => clients.get(clientId),
      hash: (secret) => hashSecret(config.pepper, secret, SDK_KEY_PURPOSE),
      compare: safeEqual,
    };
    const limits = config.rateLimit;
    this.failed = limits.enabled ? new AttemptLimiter({ max: limits.failedAuthPerIp, windowMs: 60_000, clock, shared: deps.sharedFailures ?? null }) : null;
  }

  /**
   * The SDK key the request authenticates as. No credentials, malformed ones and wrong ones are
   * `invalid_client` (401); two methods at once is `invalid_request`; past the per-IP budget of
   * failures, 429.
   */
  async authenticateClient(request: FastifyRequest): Promise<ClientEntry> {
    const slot = this.failed ? await this.failed.acquire(request.ip) : null;
    if (slot && !slot.ok) throw tooMany(slot.retryAfterSeconds, 'too many failed client authentications');
    let counts = false;
    try {
      const body = request.body as Record<string, string | undefined>;
      if (body.client_assertion !== undefined || body.client_assertion_type !== undefined) return await this.assertion(request, body);
      const creds = extractClientCredentials(request.headers.authorization, body);
      if (!creds) throw invalidClient();
      return await verifyClientCredentials(creds, this.checks);
    } catch (err) {
      counts = err instanceof OAuthError && err.error === 'invalid_client';
      throw err;
    } finally {
      if (slot?.ok) {
        if (counts) await slot.keep();
        else slot.release();
      }
    }
  }

  /** private_key_jwt: `client_assertion_type` jwt-bearer and a `client_assertion` signed by the key's registered key. */
  private async assertion(request: FastifyRequest, body: Record<string, string | undefined>): Promise<ClientEntry> {
    if (request.headers.authorization !== undefined || body.client_secret !== undefined) {
      throw invalidRequest('use one client authentication method: a client assertion, or a client secret, not both');
    }
    if (body.client_assertion_type !== JWT_BEARER_ASSERTION || !body.client_assertion) throw invalidClient();
    const clientId = ClientAssertionVerifier.subject(body.client_assertion);
    if (clientId === null || !CLIENT_ID_RE.test(clientId) || (body.client_id !== undefined && body.client_id !== clientId)) throw invalidClient();
    return this.assertions.verify(body.client_assertion, clientId, requestUrl(this.issuer, request));
  }
}
