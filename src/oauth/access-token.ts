import { randomUUID } from 'node:crypto';
import { decodeProtectedHeader, errors as joseErrors, jwtVerify, type JWTPayload } from 'jose';
import { epochSeconds, type Clock } from '../platform/clock.js';
import type { Config } from '../platform/config.js';
import type { SigningKeyStore } from '../signing-keys/key-store.js';
import { signCompact } from '../platform/crypto/jws.js';
import type { ClientCache, ClientEntry } from './client-cache.js';
import type { RevokedTokenSet } from './denylist.js';

/**
 * Claims of a Tessera access token (RFC 9068 §2.2). Nothing else is put in: `sub` is the
 * client_id (the client acts for itself), `org_id` the organization the key acts in (or null).
 */
export interface AccessTokenClaims {
  iss: string;
  sub: string;
  aud: string;
  exp: number;
  iat: number;
  jti: string;
  client_id: string;
  scope: string;
  org_id: string | null;
  /** RFC 9449 §6: the DPoP key the token is bound to (absent on bearer tokens). */
  cnf?: { jkt: string };
}

export interface MintedToken {
  token: string;
  claims: AccessTokenClaims;
}

/**
 * The `iat` of a token the client gets now: the current whole second, or the client's
 * `tokens_valid_after` (whole seconds) when that is later. With {@link nextTokensValidAfter}
 * stamping, this makes "valid iff `iat * 1000 >= tokens_valid_after`" exact at JWT precision:
 * - every token issued before a disable has `iat` < the stamp, so it is refused for good;
 * - every token issued after the key is enabled again (by an instance that has seen the stamp)
 *   has `iat` >= the stamp, so it is accepted at once, even within the second of the disable.
 * The `iat` is then at most one second ahead of the clock (far within the verification tolerance).
 */
export function issuedAtFor(client: Pick<ClientEntry, 'tokensValidAfterMs'>, nowMs: number): number {
  return Math.max(epochSeconds(nowMs), Math.ceil(client.tokensValidAfterMs / 1000));
}

/**
 * The `tokens_valid_after` a disable stamps (epoch ms, a whole second): strictly after the `iat`
 * of every token issued so far, i.e. after the current second and after the previous stamp (a
 * token issued after an earlier re-enable may carry that stamp's second as its `iat`).
 */
export function nextTokensValidAfter(previousMs: number | null, nowMs: number): number {
  return Math.max(epochSeconds(nowMs) + 1, Math.ceil((previousMs ?? 0) / 1000) + 1) * 1000;
}

/** Signs an access token with the active key; header `{alg, kid, typ: 'at+jwt'}`; `exp` never after the key's `expires_at`. */
export async function mintAccessToken(
  keys: SigningKeyStore,
  input: { issuer: string; audience: string; client: ClientEntry; scopes: readonly string[]; nowMs: number; ttlSeconds: number; jkt?: string | null },
): Promise<MintedToken> {
  const key = keys.signingKey();
  const iat = issuedAtFor(input.client, input.nowMs);
  // Never later than the key's own expiry.
  const keyExp = input.client.expiresAtMs === null ? Infinity : epochSeconds(input.client.expiresAtMs);
  const claims: AccessTokenClaims = {
    iss: input.issuer,
    sub: input.client.clientId,
    aud: input.audience,
    exp: Math.min(iat + input.ttlSeconds, keyExp),
    iat,
    jti: randomUUID(),
    client_id: input.client.clientId,
    scope: input.scopes.join(' '),
    org_id: input.client.organizationId,
  };
  if (input.jkt) claims.cnf = { jkt: input.jkt };
  return { token: await signCompact(key.alg, key.privateKey, key.accessTokenHeader, claims), claims };
}

/** Why a token was refused (for logs and tests; callers answer "invalid" whatever it is). */
export type RejectReason = 'malformed' | 'algorithm' | 'unknown_kid' | 'signature' | 'claims' | 'expired' | 'audience' | 'revoked' | 'client';

export type VerifyResult = { ok: true; claims: AccessTokenClaims; client: ClientEntry } | { ok: false; reason: RejectReason };

export interface VerifyOptions {
  /** Required audience; `null` accepts any (introspection answers for every resource server). */
  audience: string | null;
}

const fail = (reason: RejectReason): VerifyResult => ({ ok: false, reason });

/**
 * The one access-token check, used by every Tessera route (through the JWT authenticator) and by
 * introspection and revocation:
 * - algorithm allowlist: only the algorithms Tessera signs with, and only the kid's own algorithm;
 * - the kid looked up among our loaded keys only (`jku`, `x5u`, `jwk` headers are never used);
 * - `typ` at+jwt, exact `iss`, `aud`, `exp`/`nbf`/`iat` with `clockToleranceSeconds`;
 * - the jti denylist; the SDK key still exists, is enabled, its owner active, and the token's
 *   `iat` is at or after the key's `tokens_valid_after` (exact: see {@link issuedAtFor}).
 */
export class AccessTokenVerifier {
  /**
   * Tokens whose signature and fixed claims (typ, iss, required claims) jose has already checked,
   * by their exact compact serialisation: a gateway sees the same token many times until it
   * expires, and decoding and the signature check are most of the cost of a verification. A hit is
   * trusted only while its kid is still among the loaded keys with the same algorithm; time claims,
   * audience, the denylist and the client are checked on every call as on a miss.
   */
  private readonly checked = new Map<string, { kid: string; alg: string; payload: JWTPayload }>();
  private static readonly MAX_CHECKED = 10_000;

  constructor(
    private readonly deps: {
      config: Pick<Config, 'issuer' | 'clockToleranceSeconds'>;
      clock: Clock;
      keys: SigningKeyStore;
      clients: ClientCache;
      revoked: RevokedTokenSet;
    },
  ) {}

  async verify(token: string, opts: VerifyOptions): Promise<VerifyResult> {
    const { config, clock, keys, clients, revoked } = this.deps;
    let payload: JWTPayload;
    // A token checked before: its header is what it was then (same bytes), so no decoding again.
    const hit = this.checked.get(token);
    if (hit) {
      const key = keys.verificationKey(hit.kid);
      if (!key) return fail('unknown_kid');
      if (hit.alg !== key.alg) return fail('algorithm');
      payload = hit.payload;
      // What jose checks against the audience and the clock, again (its order, rules and outcomes).
      if (opts.audience !== null) {
        const aud = payload.aud;
        if (!(aud === opts.audience || (Array.isArray(aud) && aud.includes(opts.audience)))) return fail('audience');
      }
      const now = epochSeconds(clock.now());
      const tolerance = config.clockToleranceSeconds;
      if (typeof payload.nbf === 'number' && payload.nbf > now + tolerance) return fail('claims');
      if (typeof payload.exp === 'number' && payload.exp <= now - tolerance) return fail('expired');
    } else {
      let header: ReturnType<typeof decodeProtectedHeader>;
      try {
        header = decodeProtectedHeader(token);
      } catch {
        return fail('malformed');
      }
      if (typeof header.kid !== 'string' || typeof header.alg !== 'string') return fail('malformed');
      const key = keys.verificationKey(header.kid);
      if (!key) return fail('unknown_kid');
      if (header.alg !== key.alg) return fail('algorithm');
      try {
        const result = await jwtVerify(token, key.verifyKey, {
          algorithms: [key.alg],
          typ: 'at+jwt',
          issuer: config.issuer,
          ...(opts.audience !== null ? { audience: opts.audience } : {}),
          clockTolerance: config.clockToleranceSeconds,
          currentDate: new Date(clock.now()),
          requiredClaims: ['exp', 'iat', 'jti', 'sub', 'client_id', 'scope'],
        });
        payload = result.payload;
        if (this.checked.size >= AccessTokenVerifier.MAX_CHECKED) this.checked.clear();
        this.checked.set(token, { kid: header.kid, alg: header.alg, payload });
      } catch (err) {
        if (err instanceof joseErrors.JWTExpired) return fail('expired');
        if (err instanceof joseErrors.JWSSignatureVerificationFailed) return fail('signature');
        if (err instanceof joseErrors.JWTClaimValidationFailed && err.claim === 'aud') return fail('audience');
        if (err instanceof joseErrors.JOSEAlgNotAllowed) return fail('algorithm');
        return fail(err instanceof joseErrors.JOSEError ? 'claims' : 'malformed');
      }
    }
    const nowS = clock.now() / 1000;
    if (
      typeof payload.iat !== 'number' ||
      payload.iat > nowS + config.clockToleranceSeconds ||
      typeof payload.jti !== 'string' ||
      typeof payload.client_id !== 'string' ||
      payload.sub !== payload.client_id ||
      typeof payload.scope !== 'string' ||
      typeof payload.aud !== 'string'
    ) {
      return fail('claims');
    }
    if (revoked.has(payload.jti)) return fail('revoked');
    const client = await clients.get(payload.client_id);
    if (!client || client.status !== 'enabled' || client.userStatus !== 'active' || !client.organizationBindingValid) return fail('client');
    if (payload.iat * 1000 < client.tokensValidAfterMs) return fail('revoked');
    const claims: AccessTokenClaims = {
      iss: payload.iss!,
      sub: payload.sub!,
      aud: payload.aud,
      exp: payload.exp!,
      iat: payload.iat,
      jti: payload.jti,
      client_id: payload.client_id,
      scope: payload.scope,
      org_id: typeof payload.org_id === 'string' ? payload.org_id : null,
    };
    const cnf = payload.cnf as { jkt?: unknown } | undefined;
    if (cnf !== undefined) {
      if (typeof cnf !== 'object' || cnf === null || typeof cnf.jkt !== 'string') return fail('claims');
      claims.cnf = { jkt: cnf.jkt };
    }
    return { ok: true, claims, client };
  }
}

/** A token shaped like a JWS compact serialisation (two dots). */
export function looksLikeJwt(token: string): boolean {
  const first = token.indexOf('.');
  if (first <= 0) return false;
  const second = token.indexOf('.', first + 1);
  return second > first && token.indexOf('.', second + 1) === -1;
}
