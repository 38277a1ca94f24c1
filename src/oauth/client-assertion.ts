import { KeyObject } from 'node:crypto';
import { decodeJwt, importJWK, type CryptoKey, type JWTPayload } from 'jose';
import type { Clock } from '../platform/clock.js';
import type { Config } from '../platform/config.js';
import { isPublicJwk } from '../platform/auth/dpop.js';
import { verifySignature } from '../platform/crypto/jws.js';
import type { ReplayGuard } from '../platform/database/replay-guard.js';
import { invalidClient } from '../platform/errors/oauth-error.js';
import type { ClientEntry } from './client-cache.js';
import type { PublicJwk } from './oauth.table.js';

/** RFC 7523 §2.2 client_assertion_type of a JWT client assertion. */
export const JWT_BEARER_ASSERTION = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

/** Longest assertion worth parsing (an RSA-4096 signature and a few claims fit in far less). */
const MAX_ASSERTION_LENGTH = 8192;

/** The characters of a base64url segment of a compact JWS (RFC 7515 §2, no padding). */
const B64URL = /^[A-Za-z0-9_-]+$/;

/** A JSON object from a base64url segment, or null. */
function jsonSegment(segment: string): Record<string, unknown> | null {
  try {
    const v: unknown = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** The algorithm a JWK's key type signs with when the JWK does not name one. */
function defaultAlg(jwk: { kty?: unknown; crv?: unknown }): string | null {
  if (jwk.kty === 'EC') return jwk.crv === 'P-256' ? 'ES256' : jwk.crv === 'P-384' ? 'ES384' : null;
  if (jwk.kty === 'OKP') return jwk.crv === 'Ed25519' ? 'EdDSA' : null;
  if (jwk.kty === 'RSA') return 'RS256';
  return null;
}

/**
 * The public key an SDK key registers for private_key_jwt, as stored: public members only, an
 * `alg` of the allowlist (the JWK's own, else its key type's usual one), a key jose can import
 * for that algorithm, RSA at least 2048 bits. A JWK with any private member is refused outright.
 * Returns the reason when it is not acceptable.
 */
export async function registrableJwk(jwk: unknown, algorithms: readonly string[]): Promise<{ ok: true; jwk: PublicJwk } | { ok: false; reason: string }> {
  if (!isPublicJwk(jwk)) return { ok: false, reason: 'jwk must be a public EC, OKP or RSA key without private members (d, p, q, dp, dq, qi, k)' };
  const j = jwk as Record<string, unknown>;
  const alg = typeof j.alg === 'string' ? j.alg : defaultAlg(j);
  if (alg === null || !algorithms.includes(alg)) return { ok: false, reason: `jwk alg must be one of: ${algorithms.join(' ')}` };
  if (j.use !== undefined && j.use !== 'sig') return { ok: false, reason: 'jwk use must be sig' };
  const stored: PublicJwk = { kty: j.kty as string, alg };
  for (const m of ['crv', 'x', 'y', 'n', 'e', 'kid'] as const) {
    if (j[m] !== undefined) {
      if (typeof j[m] !== 'string' || (j[m] as string).length > 2048) return { ok: false, reason: `jwk ${m} must be a string` };
      stored[m] = j[m] as string;
    }
  }
  if (stored.kty === 'RSA' && Buffer.from(stored.n ?? '', 'base64url').length < 256) return { ok: false, reason: 'RSA keys must be at least 2048 bits' };
  try {
    const key = await importJWK({ ...stored }, alg);
    if ((key as KeyObject | CryptoKey).type !== 'public') throw new Error('not public');
  } catch {
    return { ok: false, reason: `jwk is not a valid public key for ${alg}` };
  }
  return { ok: true, jwk: stored };
}

/** Imported keys per cache entry: a changed key is a new entry, so a stale import is never used. */
const imported = new WeakMap<ClientEntry, Promise<KeyObject>>();

/** The registered key as a node:crypto KeyObject, imported once per cache entry. */
function keyOf(entry: ClientEntry, jwk: PublicJwk): Promise<KeyObject> {
  let key = imported.get(entry);
  if (!key) {
    key = importJWK({ ...jwk, alg: undefined }, jwk.alg).then((k) => {
      if (k instanceof Uint8Array) throw new TypeError('not an asymmetric key');
      return k instanceof KeyObject ? k : KeyObject.from(k as CryptoKey);
    });
    imported.set(entry, key);
    key.catch(() => imported.delete(entry));
  }
  return key;
}

/**
 * private_key_jwt (RFC 7523 §2.2, RFC 7521 §4.2): verifies a client assertion against the public
 * key the SDK key registered (never one fetched from anywhere): the header algorithm is the key's,
 * within the allowlist; `iss` = `sub` = the client_id; `aud` names the issuer, the token endpoint
 * or the endpoint called; `exp` is present and at most the configured lifetime away (and from
 * `iat`); `jti` is used once across every instance (one insert, made last). Every failure is the
 * same `invalid_client`.
 */
export class ClientAssertionVerifier {
  constructor(
    private readonly deps: {
      config: Pick<Config, 'issuer' | 'clockToleranceSeconds' | 'proofOfPossession'>;
      clock: Clock;
      replay: Pick<ReplayGuard, 'firstUse'>;
      lookup(clientId: string): Promise<ClientEntry | null> | ClientEntry | null;
    },
  ) {}

  /** The client_id an assertion claims to come from (its `sub`), or null when it is not a readable JWT. */
  static subject(assertion: string): string | null {
    if (assertion.length > MAX_ASSERTION_LENGTH) return null;
    try {
      const sub = decodeJwt(assertion).sub;
      return typeof sub === 'string' ? sub : null;
    } catch {
      return null;
    }
  }

  /** The SDK key the assertion authenticates; `endpoint`: the absolute URL of the endpoint called. */
  async verify(assertion: string, clientId: string, endpoint: string): Promise<ClientEntry> {
    const { config, clock, replay } = this.deps;
    const entry = await this.deps.lookup(clientId);
    if (!entry || !entry.publicJwk || entry.status !== 'enabled' || entry.userStatus !== 'active') throw invalidClient();
    const jwk = entry.publicJwk;
    if (assertion.length > MAX_ASSERTION_LENGTH) throw invalidClient();
    const parts = assertion.split('.');
    if (parts.length !== 3 || !parts.every((p) => B64URL.test(p))) throw invalidClient();
    const [headerB64, payloadB64, signatureB64] = parts as [string, string, string];
    const header = jsonSegment(headerB64);
    // No extension is understood, so none may be critical (RFC 7515 §4.1.11).
    if (header === null || header.crit !== undefined) throw invalidClient();
    // The registered key's algorithm (Ed25519 keys sign as EdDSA or by the fully-specified name).
    const accepted = jwk.alg === 'EdDSA' || jwk.alg === 'Ed25519' ? ['EdDSA', 'Ed25519'] : [jwk.alg];
    const allowed = accepted.filter((a) => config.proofOfPossession.clientAssertionAlgorithms.includes(a));
    const alg = header.alg;
    if (typeof alg !== 'string' || !allowed.includes(alg)) throw invalidClient();
    // The DPoP proofs' check: node:crypto on libuv's thread pool, with the key imported once.
    let key: KeyObject;
    try {
      key = await keyOf(entry, jwk);
    } catch {
      throw invalidClient();
    }
    if (!(await verifySignature(alg, key, `${headerB64}.${payloadB64}`, Buffer.from(signatureB64, 'base64url')))) throw invalidClient();
    const payload: JWTPayload | null = jsonSegment(payloadB64);
    if (payload === null) throw invalidClient();
    const now = clock.now() / 1000;
    const tolerance = config.clockToleranceSeconds;
    // RFC 7523 §3: iss and sub the client, aud this server, exp present and not passed; nbf and iat when present.
    if (payload.iss !== clientId || payload.sub !== clientId) throw invalidClient();
    const audiences = new Set([config.issuer, `${config.issuer}/oauth/token`, endpoint]);
    const aud = payload.aud;
    const named = typeof aud === 'string' ? [aud] : Array.isArray(aud) && aud.every((a) => typeof a === 'string') ? aud : [];
    if (!named.some((a) => audiences.has(a))) throw invalidClient();
    if (typeof payload.exp !== 'number' || !Number.isFinite(payload.exp) || payload.exp <= now - tolerance) throw invalidClient();
    if (payload.nbf !== undefined && (typeof payload.nbf !== 'number' || payload.nbf > now + tolerance)) throw invalidClient();
    if (payload.iat !== undefined && (typeof payload.iat !== 'number' || !Number.isFinite(payload.iat))) throw invalidClient();
    const maxLifetime = config.proofOfPossession.clientAssertionMaxLifetimeSeconds;
    const exp = payload.exp;
    if (exp - now > maxLifetime + tolerance) throw invalidClient();
    if (typeof payload.iat === 'number' && exp - payload.iat > maxLifetime) throw invalidClient();
    if (typeof payload.jti !== 'string' || payload.jti === '' || payload.jti.length > 256) throw invalidClient();
    if (!(await replay.firstUse('client_assertion', clientId, payload.jti, new Date((exp + config.clockToleranceSeconds) * 1000)))) throw invalidClient();
    return entry;
  }
}
