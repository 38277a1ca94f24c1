import { createHash, createHmac } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { calculateJwkThumbprint, decodeProtectedHeader, importJWK, jwtVerify, type CryptoKey, type JWK, type JWTPayload, type KeyObject } from 'jose';
import { epochSeconds, type Clock } from '../clock.js';
import type { Config } from '../config.js';
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
  return createHash('sha256').update(token, 'ascii').digest('base64url');
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
 * any instance (one insert in the shared replay record, made last, so refused proofs cost nothing).
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
  /**
   * Public keys already imported, by their JWK's members and the algorithm: a client signs every
   * proof with the same key, and the import (and thumbprint) is a good part of a verification.
   */
  private readonly keys = new Map<string, Promise<{ key: KeyObject | CryptoKey | Uint8Array; jkt: string }>>();
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

  /** Verifies a proof for `target`; returns the JWK SHA-256 thumbprint of its key (`cnf.jkt`). */
  async verify(proof: string, target: ProofTarget, fail: DpopFail): Promise<{ jkt: string }> {
    const invalid = (d: string) => fail('invalid_dpop_proof', d);
    if (proof.length === 0 || proof.length > MAX_PROOF_LENGTH) throw invalid('the DPoP proof is empty or too long');
    let header: ReturnType<typeof decodeProtectedHeader>;
    try {
      header = decodeProtectedHeader(proof);
    } catch {
      throw invalid('the DPoP proof is not a JWT');
    }
    if (header.typ !== 'dpop+jwt') throw invalid('the DPoP proof must have typ dpop+jwt');
    if (typeof header.alg !== 'string' || !this.algorithms.includes(header.alg)) {
      throw invalid(`the DPoP proof must be signed with one of: ${this.algorithms.join(' ')}`);
    }
    if (!isPublicJwk(header.jwk)) throw invalid('the DPoP proof must carry a public EC, OKP or RSA jwk, and no private key member');
    const { clock, config } = this.deps;
    const jwk = header.jwk as JWK;
    if (jwk.use !== undefined && jwk.use !== 'sig') throw invalid('the DPoP proof jwk must be a signing key');
    const { kty, crv, x, y, n, e } = jwk;
    const publicJwk = { kty, crv, x, y, n, e } as JWK;
    const cacheKey = `${header.alg}\0${JSON.stringify(publicJwk)}`;
    let imported = this.keys.get(cacheKey);
    if (!imported) {
      imported = (async () => ({ key: await importJWK(publicJwk, header.alg), jkt: await calculateJwkThumbprint(publicJwk, 'sha256') }))();
      if (this.keys.size >= DpopVerifier.MAX_KEYS) this.keys.clear();
      this.keys.set(cacheKey, imported);
      imported.catch(() => this.keys.delete(cacheKey));
    }
    let payload: JWTPayload;
    let jkt: string;
    try {
      const k = await imported;
      jkt = k.jkt;
      if ((k.key as { type?: string }).type !== 'public') throw new Error('not a public key');
      ({ payload } = await jwtVerify(proof, k.key, {
        algorithms: [header.alg],
        typ: 'dpop+jwt',
        currentDate: new Date(clock.now()),
        clockTolerance: config.clockToleranceSeconds,
      }));
    } catch {
      throw invalid('the DPoP proof signature or claims are invalid');
    }
    if (typeof payload.jti !== 'string' || payload.jti.length === 0 || payload.jti.length > 256) throw invalid('the DPoP proof needs a jti');
    if (payload.htm !== target.method) throw invalid('the DPoP proof was made for another HTTP method');
    if (typeof payload.htu !== 'string' || !sameUrl(payload.htu, target.url)) throw invalid('the DPoP proof was made for another URL');
    const now = clock.now() / 1000;
    const tolerance = config.clockToleranceSeconds;
    if (typeof payload.iat !== 'number' || payload.iat < now - this.maxAge - tolerance || payload.iat > now + tolerance) {
      throw invalid('the DPoP proof iat is outside the accepted window');
    }
    if (target.accessToken !== undefined) {
      if (typeof payload.ath !== 'string' || !safeEqual(Buffer.from(payload.ath), Buffer.from(accessTokenHash(target.accessToken)))) {
        throw invalid('the DPoP proof ath does not match the access token');
      }
    }
    if (this.nonceRequired && !this.nonceValid(payload.nonce)) throw fail('use_dpop_nonce', 'use the server nonce in the DPoP-Nonce header');
    // Kept until no instance would accept it on its iat.
    const keepUntil = new Date((payload.iat + this.maxAge + 2 * tolerance) * 1000);
    if (!(await this.deps.replay.firstUse('dpop', jkt, payload.jti, keepUntil))) throw invalid('the DPoP proof was already used');
    return { jkt };
  }
}
