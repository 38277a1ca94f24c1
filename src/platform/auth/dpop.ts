import { createHmac, hash, KeyObject } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { calculateJwkThumbprint, importJWK, type JWK, type JWTPayload } from 'jose';
import { epochSeconds, type Clock } from '../clock.js';
import type { Config } from '../config.js';
import { verifiableAlg, verifySignature } from '../crypto/jws.js';
import { safeEqual } from '../crypto/secrets.js';
import type { ReplayGuard } from '../database/replay-guard.js';

/** RFC 9449 §7.1 and §8 error codes of a refused proof. */
export type DpopErrorCode = 'invalid_dpop_proof' | 'use_dpop_nonce';

/** Builds the error a refused proof answers with (the token endpoint and the API word them differently). */
export type DpopFail = (code: DpopErrorCode, description: string) => Error;

/** What a proof must be bound to: the request's method and URL, and for resource requests the access token. */
export interface ProofTarget {
  method: string;
  /** Absolute URL of the request without query or fragment (the issuer's base URL and the path). */
  url: string;
  /** The access token the request presents (resource requests): the proof's `ath` must be its SHA-256. */
  accessToken?: string;
}

/** Members a public JWK never has (EC/OKP `d`, RSA private parts, symmetric `k`). */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'] as const;

/** Longest DPoP header worth parsing: an RSA-4096 proof is about 1.5 KiB. */
const MAX_PROOF_LENGTH = 8192;

/** The characters of a base64url segment of a compact JWS (RFC 7515 §2, no padding). */
const B64URL = /^[A-Za-z0-9_-]+$/;

/** What an accepted proof header gives: its algorithm, the imported key, the key's thumbprint. */
interface ProofKey {
  alg: string;
  key: KeyObject;
  jkt: string;
}

/** A server nonce is valid for the window it was made in and the next one. */
const NONCE_WINDOW_SECONDS = 300;

/** The JWK members a thumbprint and a key import use; anything else in a client's JWK is dropped. */
export function isPublicJwk(jwk: unknown): jwk is JWK {
  if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) return false;
  const j = jwk as Record<string, unknown>;
  if (j.kty !== 'EC' && j.kty !== 'OKP' && j.kty !== 'RSA') return false;
  return PRIVATE_MEMBERS.every((m) => !(m in j));
}

/** SHA-256 of an access token, base64url: a proof's `ath` (RFC 9449 §4.2). */
export function accessTokenHash(token: string): string {
  return hash('sha256', token, 'base64url');
}

/** The request's URL as a proof names it: the issuer's base URL and the path, without query or fragment. */
export function requestUrl(issuer: string, request: Pick<FastifyRequest, 'url'>): string {
  const q = request.url.indexOf('?');
  return issuer + (q < 0 ? request.url : request.url.slice(0, q));
}

/** The one `DPoP` header of a request; null when none; refused when several. */
export function proofHeader(request: Pick<FastifyRequest, 'headers'>, fail: DpopFail): string | null {
  const h = request.headers.dpop;
  if (h === undefined) return null;
  if (Array.isArray(h)) throw fail('invalid_dpop_proof', 'send one DPoP header');
  return h;
}

function sameUrl(htu: string, expected: string): boolean {
  // The usual case: the client names the URL exactly as the request reached it.
  if (htu === expected) return true;
  let u: URL;
  try {
    u = new URL(htu);
  } catch {
    return false;
  }
  u.search = '';
  u.hash = '';
  return u.href === new URL(expected).href;
}

/**
 * DPoP proof verification (RFC 9449 §4.3): `typ` dpop+jwt, an asymmetric algorithm of the
 * configured allowlist, a public `jwk` in the header that verifies the signature, `htm` and `htu`
 * (query and fragment ignored) of the request, `iat` within the configured window, `ath` of the
 * presented access token, the server nonce when nonces are on, and a `jti` never seen before by
 * any instance (one row in the shared, group-committed replay record, written last, so refused
 * proofs cost nothing). The signature is checked with node:crypto on libuv's thread pool.
 *
 * Nonces are stateless: an HMAC with the pepper of a five-minute window, so every instance makes
 * and accepts the same ones without talking to each other; one stays valid for the window it was
 * made in and the next.
 */
export class DpopVerifier {
  readonly algorithms: readonly string[];
  readonly nonceRequired: boolean;
  private readonly maxAge: number;
  private readonly nonceKey: Buffer;
  /** Accepted proof headers, by their encoding (see {@link DpopVerifier.proofKey}). */
  private readonly keys = new Map<string, Promise<ProofKey>>();
  private static readonly MAX_KEYS = 10_000;

  constructor(
    private readonly deps: {
      config: Pick<Config, 'pepper' | 'clockToleranceSeconds' | 'proofOfPossession'>;
      clock: Clock;
      replay: Pick<ReplayGuard, 'firstUse'>;
    },
  ) {
    const pop = deps.config.proofOfPossession;
    this.algorithms = pop.dpopAlgorithms;
    this.nonceRequired = pop.dpopNonce;
    this.maxAge = pop.dpopProofMaxAgeSeconds;
    this.nonceKey = createHmac('sha256', deps.config.pepper).update('dpop_nonce').digest();
  }

  private nonceFor(window: number): string {
    return createHmac('sha256', this.nonceKey).update(String(window)).digest().subarray(0, 24).toString('base64url');
  }

  /** The nonce a client should put in its next proofs (the `DPoP-Nonce` header). */
  currentNonce(): string {
    return this.nonceFor(Math.floor(epochSeconds(this.deps.clock.now()) / NONCE_WINDOW_SECONDS));
  }

  private nonceValid(nonce: unknown): boolean {
    if (typeof nonce !== 'string' || nonce.length > 64) return false;
    const w = Math.floor(epochSeconds(this.deps.clock.now()) / NONCE_WINDOW_SECONDS);
    const presented = Buffer.from(nonce);
    // Both compared every time: the work does not depend on which one matches.
    const current = safeEqual(presented, Buffer.from(this.nonceFor(w)));
    const previous = safeEqual(presented, Buffer.from(this.nonceFor(w - 1)));
    return current || previous;
  }

  /** The `WWW-Authenticate` challenge of the DPoP scheme (RFC 9449 §7.1), with an error when there is one. */
  challenge(error?: string, description?: string): string {
    const parts = [`DPoP realm="tessera"`];
    if (error) parts.push(`error="${error}"`);
    if (description) parts.push(`error_description="${description.replace(/["\\]/g, "'")}"`);
    parts.push(`algs="${this.algorithms.join(' ')}"`);
    return parts.join(', ');
  }

  /**
   * The checks of a proof's header (`typ`, `alg` of the allowlist, no `crit`, a public signing
   * `jwk` that jose imports for `alg`, RSA of at least 2048 bits) and the key they give, cached by
   * the header's exact encoding: a client sends the same header with every proof, so the parse,
   * the import and the thumbprint are done once per key. Only accepted headers are cached.
   */
  private proofKey(headerB64: string, invalid: (d: string) => Error): Promise<ProofKey> {
    const cached = this.keys.get(headerB64);
    if (cached) return cached;
    let header: unknown;
    try {
      header = JSON.parse(Buffer.from(headerB64, 'base64url').toString('utf8'));
    } catch {
      throw invalid('the DPoP proof is not a JWT');
    }
    if (typeof header !== 'object' || header === null || Array.isArray(header)) throw invalid('the DPoP proof is not a JWT');
    const h = header as Record<string, unknown>;
    if (h.typ !== 'dpop+jwt') throw invalid('the DPoP proof must have typ dpop+jwt');
    const alg = h.alg;
    if (typeof alg !== 'string' || !this.algorithms.includes(alg) || !verifiableAlg(alg)) {
      throw invalid(`the DPoP proof must be signed with one of: ${this.algorithms.join(' ')}`);
    }
    // No extension is understood, so none may be critical (RFC 7515 §4.1.11).
    if (h.crit !== undefined) throw invalid('the DPoP proof must not have critical header parameters');
    if (!isPublicJwk(h.jwk)) throw invalid('the DPoP proof must carry a public EC, OKP or RSA jwk, and no private key member');
    const jwk = h.jwk;
    if (jwk.use !== undefined && jwk.use !== 'sig') throw invalid('the DPoP proof jwk must be a signing key');
    const { kty, crv, x, y, n, e } = jwk;
    const publicJwk = { kty, crv, x, y, n, e } as JWK;
    const imported = (async (): Promise<ProofKey> => {
      let key: KeyObject;
      try {
        const k = await importJWK(publicJwk, alg);
        if (k instanceof Uint8Array) throw new Error('not an asymmetric key');
        key = k instanceof KeyObject ? k : KeyObject.from(k);
      } catch {
        throw invalid('the DPoP proof signature or claims are invalid');
      }
      if (key.type !== 'public') throw invalid('the DPoP proof signature or claims are invalid');
      if ((key.asymmetricKeyType === 'rsa' || key.asymmetricKeyType === 'rsa-pss') && (key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) {
        throw invalid('the DPoP proof signature or claims are invalid');
      }
      return { alg, key, jkt: await calculateJwkThumbprint(publicJwk, 'sha256') };
    })();
    if (this.keys.size >= DpopVerifier.MAX_KEYS) this.keys.clear();
    this.keys.set(headerB64, imported);
    imported.catch(() => this.keys.delete(headerB64));
    return imported;
  }

  /** Verifies a proof for `target`; returns the JWK SHA-256 thumbprint of its key (`cnf.jkt`). */
  async verify(proof: string, target: ProofTarget, fail: DpopFail): Promise<{ jkt: string }> {
    const invalid = (d: string) => fail('invalid_dpop_proof', d);
    if (proof.length === 0 || proof.length > MAX_PROOF_LENGTH) throw invalid('the DPoP proof is empty or too long');
    const parts = proof.split('.');
    if (parts.length !== 3 || !parts.every((p) => B64URL.test(p))) throw invalid('the DPoP proof is not a JWT');
    const [headerB64, payloadB64, signatureB64] = parts as [string, string, string];
    const { clock, config } = this.deps;
    const { alg, key, jkt } = await this.proofKey(headerB64, invalid);
    const claimsInvalid = () => invalid('the DPoP proof signature or claims are invalid');
    if (!(await verifySignature(alg, key, `${headerB64}.${payloadB64}`, Buffer.from(signatureB64, 'base64url')))) throw claimsInvalid();
    let decoded: unknown;
    try {
      decoded = JSON.parse(Buffer.from(payloadB64, 'base64url').toString('utf8'));
    } catch {
      throw claimsInvalid();
    }
    if (typeof decoded !== 'object' || decoded === null || Array.isArray(decoded)) throw claimsInvalid();
    const payload = decoded as JWTPayload;
    const now = clock.now() / 1000;
    const tolerance = config.clockToleranceSeconds;
    // A proof needs no exp or nbf; when it has them they hold (RFC 7519 §4.1.4, §4.1.5).
    if (payload.nbf !== undefined && (typeof payload.nbf !== 'number' || payload.nbf > now + tolerance)) throw claimsInvalid();
    if (payload.exp !== undefined && (typeof payload.exp !== 'number' || payload.exp <= now - tolerance)) throw claimsInvalid();
    if (typeof payload.jti !== 'string' || payload.jti.length === 0 || payload.jti.length > 256) throw invalid('the DPoP proof needs a jti');
    if (payload.htm !== target.method) throw invalid('the DPoP proof was made for another HTTP method');
    if (typeof payload.htu !== 'string' || !sameUrl(payload.htu, target.url)) throw invalid('the DPoP proof was made for another URL');
    if (typeof payload.iat !== 'number' || payload.iat < now - this.maxAge - tolerance || payload.iat > now + tolerance) {
      throw invalid('the DPoP proof iat is outside the accepted window');
    }
    // Both sides come from the request itself (the token it presents, the proof it carries): no
    // secret is compared, so a plain comparison tells the sender nothing it does not know.
    if (target.accessToken !== undefined && payload.ath !== accessTokenHash(target.accessToken)) {
      throw invalid('the DPoP proof ath does not match the access token');
    }
    if (this.nonceRequired && !this.nonceValid(payload.nonce)) throw fail('use_dpop_nonce', 'use the server nonce in the DPoP-Nonce header');
    // Kept until no instance would accept it on its iat.
    const keepUntil = new Date((payload.iat + this.maxAge + 2 * tolerance) * 1000);
    if (!(await this.deps.replay.firstUse('dpop', jkt, payload.jti, keepUntil))) throw invalid('the DPoP proof was already used');
    return { jkt };
  }
}
