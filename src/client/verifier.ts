import { createHash } from 'node:crypto';
import {
  calculateJwkThumbprint,
  createLocalJWKSet,
  decodeProtectedHeader,
  EmbeddedJWK,
  errors as joseErrors,
  jwtVerify,
  type JSONWebKeySet,
  type JWSHeaderParameters,
  type JWTPayload,
  type FlattenedJWSInput,
} from 'jose';
import type { ClientCredentials } from './client-credentials.js';
import { TesseraError, TesseraVerifyError, type VerifyFailureReason } from './errors.js';
import { normaliseIssuer, requestWithRetry, SingleFlight, transport, type Transport, type TransportOptions } from './http.js';
import { RevocationStream, type RevocationStreamOptions } from './revocation-stream.js';

/** Algorithms Tessera signs with. */
export const TESSERA_ALGORITHMS = ['EdDSA', 'ES256', 'RS256'] as const;

/** Algorithms a DPoP proof may be signed with by default (asymmetric only: RFC 9449 §4.2). */
export const DPOP_PROOF_ALGORITHMS = ['ES256', 'ES384', 'EdDSA', 'RS256', 'PS256'] as const;

export interface RemoteCheckOptions {
  /**
   * Which JWT access tokens are also checked with Tessera (revocation, disabled SDK keys): `true`
   * for all, or a predicate over the verified claims. Default: none. Opaque tokens (session tokens
   * `tsr_ses_...`, API tokens) are always checked remotely, as nothing else can verify them.
   */
  jwt?: boolean | ((claims: JWTPayload) => boolean);
  /**
   * `gateway`: `GET /gateway/verify` with the token itself (no credentials; JWTs only when their
   * audience is Tessera; DPoP-bound JWTs cannot be checked this way and are refused with 503). `introspection`: `POST /oauth/introspect` with `introspectionAuth` as bearer
   * (scope `introspect`; any audience). Default: introspection when `introspectionAuth` is given.
   */
  method?: 'gateway' | 'introspection';
  /** The bearer the verifier introspects with: an SDK key holding scope `introspect`, or a function. */
  introspectionAuth?: ClientCredentials | (() => Promise<string>);
  /** How long a remote answer is reused, in ms (default 5000; never past the token's expiry). */
  cacheTtlMs?: number;
  /** Most answers kept (default 10000; the oldest go first). */
  maxCacheEntries?: number;
}

export interface VerifierOptions extends TransportOptions {
  /** Tessera's issuer URL: the exact `iss` required. */
  issuer: string;
  /** The audience (or audiences) this resource server accepts: tokens for anyone else are refused. */
  audience: string | readonly string[];
  /** JWS algorithms accepted (default EdDSA, ES256, RS256). `none` and HMAC never are. */
  algorithms?: readonly string[];
  /** The JWKS URL (default `<issuer>/.well-known/jwks.json`). */
  jwksUri?: string;
  /** Skew tolerated on exp/nbf/iat, in seconds (default 30). */
  clockToleranceSeconds?: number;
  /** Least time between two JWKS fetches caused by unknown kids, in ms (default 30000). */
  jwksCooldownMs?: number;
  /** JWKS cache lifetime when the response has no `Cache-Control: max-age` (default 300000 ms); at most `jwksMaxCacheMs`. */
  jwksDefaultMaxAgeMs?: number;
  /** Upper bound on the JWKS cache lifetime, whatever Cache-Control says (default 3600000 ms). */
  jwksMaxCacheMs?: number;
  /** Revocation checks through Tessera. */
  remote?: RemoteCheckOptions;
  /** Accept opaque tokens (session and API tokens) by asking Tessera (default true). */
  opaqueTokens?: boolean;
  /**
   * `stream`: follow Tessera's security events (`/events/stream`) and refuse revoked JWTs locally
   * (revoked jti, disabled or deleted SDK key, revoked signing key), with `events` saying how to
   * subscribe and what to do while the stream is down. Default: no stream.
   */
  revocations?: 'stream';
  events?: RevocationStreamOptions;
  /** DPoP proofs (RFC 9449) of DPoP-bound tokens. */
  dpop?: {
    /** Algorithms a proof may use (default {@link DPOP_PROOF_ALGORITHMS}). */
    algorithms?: readonly string[];
    /** How old a proof's `iat` may be, in seconds (default 60; the clock tolerance is added). */
    maxAgeSeconds?: number;
    /**
     * Proof `jti`s remembered to refuse replays (default 100000). A replay within the proof's
     * lifetime is refused as long as at most `maxRemembered - ceil(maxRemembered / 10)` other proofs
     * were accepted since: when the memory is full of live proofs, the oldest tenth is forgotten at
     * once. Replays reaching another verifier instance are not seen here: give `replay` for that.
     */
    maxRemembered?: number;
    /**
     * A record of used proofs shared by every verifier process of a deployment (see
     * {@link redisProofReplayStore}), so a proof replayed at another process is refused too. Asked
     * after every other check passed and after this process's own memory; when it cannot answer
     * (an error, or no answer within 2 s) the token is refused as `unavailable`, never accepted unchecked.
     */
    replay?: ProofReplayStore;
  };
}

/** Used DPoP proofs, shared by the verifier processes of a deployment. */
export interface ProofReplayStore {
  /**
   * Records `key` as used for `ttlMs`; resolves true only for the first caller of any process
   * sharing the store, false for every later one while the record lasts.
   */
  firstUse(key: string, ttlMs: number): Promise<boolean>;
}

/** The one command {@link redisProofReplayStore} needs: ioredis' and node-redis' `set` with NX and PX. */
export interface RedisSetNx {
  set(key: string, value: string, px: 'PX', ms: number, nx: 'NX'): Promise<string | null>;
}

/**
 * A {@link ProofReplayStore} on Redis (or Valkey): one `SET key 1 PX <ms> NX` per proof, which
 * Redis answers `OK` to exactly once for a key while it lives. Pass an ioredis client (or any
 * client with that `set`); keys are `<prefix><sha256 of the proof's key thumbprint and jti>`.
 */
export function redisProofReplayStore(redis: RedisSetNx, prefix = 'tessera:dpop-proof:'): ProofReplayStore {
  return {
    async firstUse(key, ttlMs) {
      const ms = Math.max(1, Math.ceil(ttlMs));
      return (await redis.set(prefix + createHash('sha256').update(key).digest('base64url'), '1', 'PX', ms, 'NX')) === 'OK';
    },
  };
}

/** How long the shared record of used proofs may take to answer before the token is refused. */
const SHARED_REPLAY_TIMEOUT_MS = 2000;

/** `p`, or a rejection once `ms` have passed. */
function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** What a verified token says about the caller. */
export interface VerifiedToken {
  /** `jwt` (an SDK key's access token), or the kind Tessera reports for an opaque token. */
  kind: 'jwt' | 'session' | 'api_token' | 'client' | 'opaque';
  /** `sub`: the client_id for JWTs, the user id for opaque tokens. */
  subject: string;
  /** The owning user when known (opaque tokens; JWTs checked by introspection). */
  userId: string | null;
  clientId: string | null;
  scopes: string[];
  organizationId: string | null;
  /** Expiry in seconds since the epoch, when known. */
  expiresAt: number | null;
  /** The JWT claims (null for opaque tokens). */
  claims: JWTPayload | null;
  /** True when Tessera itself confirmed the token is live. */
  checkedRemotely: boolean;
}

export interface VerifyCallOptions {
  /** Scopes the token must hold (all of them), else `insufficient_scope`. */
  scopes?: readonly string[];
  /**
   * The request a DPoP-bound token came with: its `DPoP` proof, method and absolute URL (query and
   * fragment are ignored). Without it a DPoP-bound token is refused, as RFC 9449 §7.1 requires.
   */
  dpop?: { proof: string; method: string; url: string };
  /** For `verifyRequest`: the request's method and absolute URL, which a DPoP proof must name. */
  method?: string;
  url?: string;
}

export interface Verifier {
  /** Verifies a bearer token; throws `TesseraVerifyError`. */
  verify(token: string, options?: VerifyCallOptions): Promise<VerifiedToken>;
  /**
   * Verifies the token of an incoming request (`Authorization: Bearer`, `x-access-token`, or
   * `Authorization: DPoP` with a `DPoP` proof, checked against `options.method` and `options.url`).
   */
  verifyRequest(headers: Record<string, string | string[] | undefined>, options?: VerifyCallOptions): Promise<VerifiedToken>;
  /** Forgets cached keys and remote answers. */
  clearCaches(): void;
  /** The security events subscription (`revocations: 'stream'`), else null. */
  readonly revocationStream: RevocationStream | null;
  /** Stops the subscription, if any. */
  close(): void;
}

const fail = (reason: VerifyFailureReason, message: string, cause?: unknown) =>
  new TesseraVerifyError(reason === 'unavailable' ? 'temporarily_unavailable' : 'invalid_token', reason, message, [], { cause });

/** The bearer credential of a request: `Authorization: Bearer`, else `x-access-token`; null when none. */
export function extractToken(headers: Record<string, string | string[] | undefined>): string | null {
  const auth = headers.authorization;
  if (typeof auth === 'string' && auth !== '') {
    const m = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(auth);
    if (!m) throw fail('malformed', 'the Authorization header is not a Bearer credential');
    return m[1]!;
  }
  const x = headers['x-access-token'];
  if (typeof x === 'string' && x !== '') return x.trim();
  return null;
}

/** An absolute URL without query and fragment, normalised as the WHATWG URL parser does; '' when not a URL. */
function withoutQuery(url: string): string {
  try {
    const u = new URL(url);
    u.search = '';
    u.hash = '';
    return u.href;
  } catch {
    return '';
  }
}

function looksLikeJwt(token: string): boolean {
  return token.split('.').length === 3;
}

/** `max-age` of a Cache-Control header in ms, or null (`no-store`/`no-cache` count as 0). */
function maxAgeMs(cacheControl: string | null): number | null {
  if (!cacheControl) return null;
  if (/(^|,)\s*(no-store|no-cache)\s*(,|$)/i.test(cacheControl)) return 0;
  const m = /(?:^|,)\s*max-age\s*=\s*"?(\d+)"?/i.exec(cacheControl);
  return m ? Number(m[1]) * 1000 : null;
}

/**
 * The remote JWKS, cached for its `Cache-Control: max-age` (bounded below by the cooldown and
 * above by `maxCacheMs`), revalidated with `If-None-Match`; an unknown kid refetches it, at most
 * once per cooldown. When a refresh fails, the keys already held go on being used.
 */
class RemoteKeySet {
  private jwks: JSONWebKeySet | null = null;
  private local: ReturnType<typeof createLocalJWKSet> | null = null;
  private etag: string | null = null;
  private expiresAt = 0;
  private lastFetch = Number.NEGATIVE_INFINITY;
  private readonly flight = new SingleFlight<void>();
  /** Changes whenever the keys held change (a new set fetched, or cleared); a 304 keeps it. */
  generation = 0;

  constructor(
    private readonly t: Transport,
    private readonly uri: string,
    private readonly o: { cooldownMs: number; defaultMaxAgeMs: number; maxCacheMs: number },
  ) {}

  /** True while the keys held are within their cache lifetime (no refresh due). */
  get fresh(): boolean {
    return this.local !== null && this.t.now() < this.expiresAt;
  }

  clear(): void {
    this.generation++;
    this.jwks = null;
    this.local = null;
    this.etag = null;
    this.expiresAt = 0;
    this.lastFetch = Number.NEGATIVE_INFINITY;
  }

  /** Fetches the key set now, whatever the cooldown (a signed security event names a kid not held). */
  refreshNow(): Promise<void> {
    return this.flight.current ?? this.refresh();
  }

  private refresh(): Promise<void> {
    return this.flight.run(async () => {
      this.lastFetch = this.t.now();
      const headers: Record<string, string> = { accept: 'application/json' };
      if (this.etag && this.jwks) headers['if-none-match'] = this.etag;
      const res = await requestWithRetry(this.t, this.uri, { method: 'GET', headers });
      const ttl = (age: number | null) => Math.min(this.o.maxCacheMs, Math.max(this.o.cooldownMs, age ?? this.o.defaultMaxAgeMs));
      if (res.status === 304 && this.jwks) {
        this.expiresAt = this.t.now() + ttl(maxAgeMs(res.headers.get('cache-control')));
        return;
      }
      if (!res.ok) {
        await res.body?.cancel().catch(() => undefined);
        throw new TesseraError(`JWKS ${this.uri} answered ${res.status}`);
      }
      const body = (await res.json()) as JSONWebKeySet;
      const local = createLocalJWKSet(body); // validates the shape
      this.generation++;
      this.jwks = body;
      this.local = local;
      this.etag = res.headers.get('etag');
      this.expiresAt = this.t.now() + ttl(maxAgeMs(res.headers.get('cache-control')));
    });
  }

  /** The key for a JWS header; refreshes an expired set and refetches on an unknown kid. */
  async key(header: JWSHeaderParameters, token: FlattenedJWSInput) {
    if (!this.local || this.t.now() >= this.expiresAt) {
      try {
        await this.refresh();
      } catch (err) {
        if (!this.local) throw fail('unavailable', 'cannot fetch the signing keys', err);
        this.t.logger.warn(`Tessera verifier: JWKS refresh failed, using the keys held: ${(err as Error).message}`);
      }
    }
    try {
      return await this.local!(header, token);
    } catch (err) {
      if (!(err instanceof joseErrors.JWKSNoMatchingKey)) throw err;
      // A fetch under way may bring the key: wait for it. Else refetch, at most once per cooldown.
      const pending = this.flight.current;
      if (!pending && this.t.now() - this.lastFetch < this.o.cooldownMs) throw err;
      try {
        await (pending ?? this.refresh());
      } catch (e) {
        throw fail('unavailable', 'cannot fetch the signing keys', e);
      }
      return this.local!(header, token);
    }
  }
}

interface CacheEntry {
  expiresAt: number;
  result: VerifiedToken | TesseraVerifyError;
}

/**
 * A verifier for gateways and resource servers: JWT access tokens are checked locally against
 * Tessera's JWKS (alg allowlist, `typ: at+jwt`, exact `iss`, `aud`, `exp`/`nbf`/`iat`); opaque
 * tokens, and JWTs chosen by `remote.jwt`, are confirmed with Tessera (`/gateway/verify` or
 * introspection), answers cached briefly.
 */
export function createVerifier(options: VerifierOptions): Verifier {
  const t = transport({ ...options, retry: { maxRetries: 1, ...options.retry } });
  const issuer = normaliseIssuer(options.issuer);
  const audiences = typeof options.audience === 'string' ? [options.audience] : [...options.audience];
  if (audiences.length === 0 || audiences.some((a) => !a)) throw new TesseraError('audience is required');
  const algorithms = [...(options.algorithms ?? TESSERA_ALGORITHMS)];
  if (algorithms.some((a) => a === 'none' || /^HS/.test(a))) throw new TesseraError('none and HMAC algorithms cannot be allowed');
  const tolerance = options.clockToleranceSeconds ?? 30;
  const keys = new RemoteKeySet(t, options.jwksUri ?? `${issuer}/.well-known/jwks.json`, {
    cooldownMs: options.jwksCooldownMs ?? 30_000,
    defaultMaxAgeMs: options.jwksDefaultMaxAgeMs ?? 300_000,
    maxCacheMs: options.jwksMaxCacheMs ?? 3_600_000,
  });
  const remote = options.remote ?? {};
  const method = remote.method ?? (remote.introspectionAuth ? 'introspection' : 'gateway');
  if (method === 'introspection' && !remote.introspectionAuth) throw new TesseraError('remote.method introspection needs remote.introspectionAuth');
  const cacheTtlMs = remote.cacheTtlMs ?? 5_000;
  const maxEntries = remote.maxCacheEntries ?? 10_000;
  const opaque = options.opaqueTokens ?? true;
  const cache = new Map<string, CacheEntry>();
  const flights = new Map<string, Promise<VerifiedToken>>();
  let stream: RevocationStream | null = null;
  if (options.revocations === 'stream') {
    if (!options.events) throw new TesseraError("revocations: 'stream' needs events.auth (a credential with scope events:read)");
    stream = new RevocationStream(
      t,
      issuer,
      options.events,
      (h, tok) => keys.key(h, tok),
      // Remote answers about a user whose credentials changed are stale: drop them.
      (userId) => {
        for (const [k, e] of cache) if (!(e.result instanceof TesseraVerifyError) && e.result.userId === userId) cache.delete(k);
      },
      () => keys.refreshNow(),
    );
    stream.start();
  }

  /** The Authorization headers of one introspection request (a DPoP-bound token with a fresh proof of it). */
  async function introspectionAuthorization(url: string): Promise<Record<string, string>> {
    const a = remote.introspectionAuth!;
    return typeof a === 'function' ? { authorization: `Bearer ${await a()}` } : a.authorization('POST', url);
  }

  async function askTessera(token: string): Promise<VerifiedToken> {
    let res: Response;
    try {
      if (method === 'gateway') {
        res = await requestWithRetry(t, `${issuer}/gateway/verify`, { method: 'GET', headers: { authorization: `Bearer ${token}` } });
      } else {
        const url = `${issuer}/oauth/introspect`;
        // Built for every attempt: a DPoP proof is accepted once.
        res = await requestWithRetry(t, url, async () => ({
          method: 'POST',
          headers: {
            ...(await introspectionAuthorization(url)),
            'content-type': 'application/x-www-form-urlencoded',
            accept: 'application/json',
          },
          body: new URLSearchParams({ token }).toString(),
        }));
      }
    } catch (err) {
      throw fail('unavailable', 'cannot reach Tessera to check the token', err);
    }
    if (method === 'gateway') {
      await res.body?.cancel().catch(() => undefined);
      if (res.status === 401) throw fail('revoked', 'the token is invalid, expired or revoked');
      if (res.status !== 200) throw fail('unavailable', `Tessera answered ${res.status} to the token check`);
      const h = (n: string) => res.headers.get(n) ?? '';
      return {
        kind: 'opaque',
        subject: h('x-tessera-subject'),
        userId: h('x-tessera-subject') || null,
        clientId: h('x-tessera-client-id') || null,
        scopes: h('x-tessera-scopes').split(' ').filter(Boolean),
        organizationId: h('x-tessera-org-id') || null,
        expiresAt: null,
        claims: null,
        checkedRemotely: true,
      };
    }
    if (res.status !== 200) {
      await res.body?.cancel().catch(() => undefined);
      throw fail('unavailable', `Tessera answered ${res.status} to the introspection`);
    }
    const body = (await res.json()) as Record<string, unknown>;
    if (body.active !== true) throw fail('revoked', 'the token is invalid, expired or revoked');
    const str = (v: unknown) => (typeof v === 'string' && v ? v : null);
    const kind = body.credential_kind;
    return {
      kind: kind === 'session' || kind === 'api_token' || kind === 'client' ? kind : 'opaque',
      subject: str(body.sub) ?? '',
      userId: str(body.user_id),
      clientId: str(body.client_id),
      scopes: (str(body.scope) ?? '').split(' ').filter(Boolean),
      organizationId: str(body.org_id),
      expiresAt: typeof body.exp === 'number' ? body.exp : null,
      claims: null,
      checkedRemotely: true,
    };
  }

  const proofAlgorithms = [...(options.dpop?.algorithms ?? DPOP_PROOF_ALGORITHMS)];
  if (proofAlgorithms.some((a) => a === 'none' || /^HS/.test(a))) throw new TesseraError('none and HMAC algorithms cannot sign DPoP proofs');
  const proofMaxAge = options.dpop?.maxAgeSeconds ?? 60;
  const maxRemembered = options.dpop?.maxRemembered ?? 100_000;
  if (!Number.isSafeInteger(maxRemembered) || maxRemembered < 1) throw new TesseraError('dpop.maxRemembered must be a positive integer');
  /**
   * Proof jtis seen by this verifier (key: thumbprint and jti), with when they stop mattering (ms),
   * in insertion order. Every entry lives equally long, so (on a clock that does not step back) the
   * expired ones are a prefix of that order.
   */
  const usedProofs = new Map<string, number>();
  /** How long a proof's jti is remembered: one second past the last instant its `iat` is accepted (whole seconds). */
  const proofMemoryMs = (proofMaxAge + 2 * tolerance + 1) * 1000;

  /**
   * Records a proof's jti as used from `now`. When the memory is full, the expired entries go from
   * the front (stopping at the first live one); if it is still full, the oldest tenth goes at once,
   * so a burst of live proofs costs O(1) amortised per proof rather than a scan each.
   */
  function rememberProof(key: string, now: number): void {
    usedProofs.delete(key);
    if (usedProofs.size >= maxRemembered) {
      for (const [k, until] of usedProofs) {
        if (until > now) break;
        usedProofs.delete(k);
      }
    }
    if (usedProofs.size >= maxRemembered) {
      let drop = Math.ceil(maxRemembered / 10);
      for (const k of usedProofs.keys()) {
        if (drop-- <= 0) break;
        usedProofs.delete(k);
      }
    }
    usedProofs.set(key, now + proofMemoryMs);
  }

  /**
   * RFC 9449 §7: a token bound to a key (`cnf.jkt`) is accepted only with a proof for this request
   * signed by that key; an unbound token is refused with the DPoP scheme (§7.1). The proof: `typ`
   * dpop+jwt, an allowed asymmetric algorithm, a public `jwk` that verifies it, `htm` and `htu` of
   * the request, `iat` within `proofMaxAge` (and the clock tolerance), `ath` the token's hash, and a
   * `jti` this verifier has not seen (replays reaching another verifier instance are not seen here).
   */
  async function checkBinding(token: string, payload: JWTPayload, request: VerifyCallOptions['dpop'] | null): Promise<void> {
    const cnf = payload.cnf as { jkt?: unknown } | undefined;
    const jkt = typeof cnf?.jkt === 'string' ? cnf.jkt : null;
    if (jkt === null) {
      if (request) throw fail('dpop', 'the token is not DPoP-bound: send it with the Bearer scheme');
      return;
    }
    if (!request) throw fail('dpop', 'the token is DPoP-bound: send it with the DPoP scheme and a proof');
    let header: JWSHeaderParameters;
    let claims: JWTPayload;
    try {
      header = decodeProtectedHeader(request.proof);
      if (header.jwk && 'd' in header.jwk) throw fail('dpop', 'the DPoP proof carries a private key');
      ({ payload: claims } = await jwtVerify(request.proof, EmbeddedJWK, {
        typ: 'dpop+jwt',
        algorithms: proofAlgorithms,
        maxTokenAge: proofMaxAge,
        clockTolerance: tolerance,
        currentDate: new Date(t.now()),
        requiredClaims: ['jti', 'htm', 'htu', 'iat', 'ath'],
      }));
    } catch (err) {
      if (err instanceof TesseraVerifyError) throw err;
      throw fail('dpop', 'the DPoP proof is invalid', err);
    }
    if (typeof claims.iat === 'number' && claims.iat > t.now() / 1000 + tolerance) throw fail('dpop', 'the DPoP proof was made in the future');
    if (claims.htm !== request.method.toUpperCase()) throw fail('dpop', 'the DPoP proof was made for another method');
    if (typeof claims.htu !== 'string' || withoutQuery(claims.htu) !== withoutQuery(request.url)) throw fail('dpop', 'the DPoP proof was made for another URL');
    if (claims.ath !== createHash('sha256').update(token).digest('base64url')) throw fail('dpop', 'the DPoP proof was made for another access token');
    if ((await calculateJwkThumbprint(header.jwk!, 'sha256')) !== jkt) throw fail('dpop', 'the DPoP proof is signed by another key than the token is bound to');
    const seen = `${jkt}:${String(claims.jti)}`;
    const now = t.now();
    if ((usedProofs.get(seen) ?? 0) > now) throw fail('dpop', 'the DPoP proof was used before');
    rememberProof(seen, now);
    const shared = options.dpop?.replay;
    if (shared) {
      let first: boolean;
      try {
        first = await withTimeout(shared.firstUse(seen, proofMemoryMs), SHARED_REPLAY_TIMEOUT_MS);
      } catch (err) {
        throw fail('unavailable', 'the shared record of used DPoP proofs cannot be reached', err);
      }
      if (!first) throw fail('dpop', 'the DPoP proof was used before');
    }
  }

  /** A remote answer, cached for `cacheTtlMs` (failures to reach Tessera are not cached). */
  async function remoteCheck(token: string, expSeconds: number | null): Promise<VerifiedToken> {
    const key = createHash('sha256').update(token).digest('base64url');
    const now = t.now();
    const hit = cache.get(key);
    if (hit && hit.expiresAt > now) {
      if (hit.result instanceof TesseraVerifyError) throw hit.result;
      return hit.result;
    }
    const pending = flights.get(key);
    if (pending) return pending;
    const p = (async () => {
      let result: VerifiedToken | TesseraVerifyError;
      try {
        result = await askTessera(token);
      } catch (err) {
        if (!(err instanceof TesseraVerifyError) || err.code === 'temporarily_unavailable') throw err;
        result = err;
      }
      let until = t.now() + cacheTtlMs;
      if (expSeconds !== null) until = Math.min(until, expSeconds * 1000);
      if (cache.size >= maxEntries) cache.delete(cache.keys().next().value!);
      cache.delete(key);
      cache.set(key, { expiresAt: until, result });
      if (result instanceof TesseraVerifyError) throw result;
      return result;
    })().finally(() => flights.delete(key));
    flights.set(key, p);
    return p;
  }

  /**
   * Tokens whose signature and fixed claims (alg, typ, iss, aud, required claims) were checked,
   * by their exact bytes, with the key set they were checked against: a gateway sees one token
   * many times until it expires. A hit counts only while that key set is still the one held and
   * within its cache lifetime; time claims, the DPoP proof, revocations and remote checks are
   * done on every call.
   */
  const checked = new Map<string, { generation: number; kid: string | undefined; payload: JWTPayload }>();
  const maxChecked = 10_000;

  /** The payload of a token checked before, if that check still holds at `nowMs` (else undefined). */
  function checkedBefore(token: string, nowMs: number): { kid: string | undefined; payload: JWTPayload } | undefined {
    const hit = checked.get(token);
    if (!hit || hit.generation !== keys.generation || !keys.fresh) return undefined;
    const now = Math.floor(nowMs / 1000);
    // jose's clock rules, again (whole seconds, as jose counts them).
    if (typeof hit.payload.exp === 'number' && hit.payload.exp <= now - tolerance) throw fail('expired', 'the token has expired');
    if (typeof hit.payload.nbf === 'number' && hit.payload.nbf > now + tolerance) throw fail('claims', 'the token nbf claim is not acceptable');
    return hit;
  }

  async function verifyJwt(token: string, dpopRequest: VerifyCallOptions['dpop'] | null): Promise<VerifiedToken> {
    const before = checkedBefore(token, t.now());
    const { kid, payload } = before ?? (await checkSignatureAndClaims(token));
    return afterSignature(token, kid, payload, dpopRequest);
  }

  async function checkSignatureAndClaims(token: string): Promise<{ kid: string | undefined; payload: JWTPayload }> {
    let header: JWSHeaderParameters;
    try {
      header = decodeProtectedHeader(token);
    } catch (err) {
      throw fail('malformed', 'the token is not a JWS', err);
    }
    if (typeof header.alg !== 'string' || !algorithms.includes(header.alg)) {
      throw fail('algorithm', `algorithm ${String(header.alg)} is not accepted`);
    }
    const generation = keys.generation;
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, (h, tok) => keys.key(h, tok), {
        algorithms,
        typ: 'at+jwt',
        issuer,
        audience: audiences,
        clockTolerance: tolerance,
        currentDate: new Date(t.now()),
        requiredClaims: ['exp', 'iat', 'sub', 'jti', 'client_id'],
      }));
    } catch (err) {
      if (err instanceof TesseraVerifyError) throw err;
      if (err instanceof joseErrors.JWTExpired) throw fail('expired', 'the token has expired', err);
      if (err instanceof joseErrors.JWKSNoMatchingKey) throw fail('unknown_kid', 'the token is signed by an unknown key', err);
      if (err instanceof joseErrors.JOSEAlgNotAllowed) throw fail('algorithm', 'the token algorithm is not accepted', err);
      if (err instanceof joseErrors.JWSSignatureVerificationFailed) throw fail('signature', 'the token signature is invalid', err);
      if (err instanceof joseErrors.JWTClaimValidationFailed) {
        const reason = err.claim === 'aud' ? 'audience' : err.claim === 'iss' ? 'issuer' : err.claim === 'typ' ? 'type' : 'claims';
        throw fail(reason, `the token ${err.claim} claim is not acceptable`, err);
      }
      throw fail('malformed', 'the token is malformed', err);
    }
    if (typeof payload.iat === 'number' && payload.iat > t.now() / 1000 + tolerance) {
      throw fail('claims', 'the token was issued in the future');
    }
    // Checked against the keys held when it began (a refresh under way would not have them).
    if (generation === keys.generation) {
      if (checked.size >= maxChecked) checked.delete(checked.keys().next().value!);
      checked.set(token, { generation, kid: header.kid, payload });
    }
    return { kid: header.kid, payload };
  }

  async function afterSignature(
    token: string,
    kid: string | undefined,
    payload: JWTPayload,
    dpopRequest: VerifyCallOptions['dpop'] | null,
  ): Promise<VerifiedToken> {
    await checkBinding(token, payload, dpopRequest);
    const base: VerifiedToken = {
      kind: 'jwt',
      subject: payload.sub!,
      userId: null,
      clientId: typeof payload.client_id === 'string' ? payload.client_id : null,
      scopes: typeof payload.scope === 'string' ? payload.scope.split(' ').filter(Boolean) : [],
      organizationId: typeof payload.org_id === 'string' ? payload.org_id : null,
      expiresAt: payload.exp!,
      claims: payload,
      checkedRemotely: false,
    };
    const verdict = stream ? stream.check(payload, kid) : 'ok';
    if (verdict === 'revoked') throw fail('revoked', 'the token is revoked');
    const streamDown = verdict === 'down';
    if (streamDown && options.events?.whenDown !== 'remote') throw fail('unavailable', 'the revocation stream is down; tokens cannot be checked');
    const check = streamDown || remote.jwt === true || (typeof remote.jwt === 'function' && remote.jwt(payload));
    if (!check) return base;
    // /gateway/verify takes a bound token only with a proof for /gateway/verify, which this
    // verifier cannot make: such a token is checked by introspection or not at all (never accepted unchecked).
    if (method === 'gateway' && payload.cnf !== undefined) {
      throw fail('unavailable', 'a DPoP-bound token can be checked with Tessera only by introspection (remote.method: introspection)');
    }
    const confirmed = await remoteCheck(token, payload.exp!);
    return { ...base, userId: confirmed.userId, checkedRemotely: true };
  }

  async function verify(token: string, call: VerifyCallOptions = {}): Promise<VerifiedToken> {
    if (!token) throw fail('missing', 'no bearer token');
    if (token.length > 8192) throw fail('malformed', 'the token is too long');
    let result: VerifiedToken;
    if (looksLikeJwt(token)) result = await verifyJwt(token, call.dpop ?? null);
    else if (call.dpop) throw fail('dpop', 'only JWT access tokens are DPoP-bound');
    else if (opaque && /^[A-Za-z0-9\-._~+/]+=*$/.test(token)) result = await remoteCheck(token, null);
    else throw fail('malformed', 'the token is not a JWT');
    const required = call.scopes ?? [];
    const missing = required.filter((s) => !result.scopes.includes(s));
    if (missing.length > 0) {
      throw new TesseraVerifyError('insufficient_scope', 'scope', `this request needs scope: ${required.join(' ')}`, required);
    }
    return result;
  }

  return {
    verify,
    async verifyRequest(headers, call = {}) {
      const auth = headers.authorization;
      const dpopScheme = typeof auth === 'string' ? /^DPoP +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(auth) : null;
      if (!dpopScheme) {
        const token = extractToken(headers);
        if (!token) throw fail('missing', 'no bearer token');
        return verify(token, call);
      }
      const proof = headers.dpop;
      if (typeof proof !== 'string' || proof === '') throw fail('dpop', 'the DPoP scheme needs exactly one DPoP proof header');
      if (!call.method || !call.url) throw new TesseraError('verifyRequest needs options.method and options.url to check a DPoP proof');
      return verify(dpopScheme[1]!, { ...call, dpop: { proof, method: call.method, url: call.url } });
    },
    clearCaches() {
      keys.clear();
      checked.clear();
      cache.clear();
    },
    revocationStream: stream,
    close() {
      stream?.stop();
    },
  };
}
