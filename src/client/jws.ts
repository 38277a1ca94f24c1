import { KeyObject, verify as nodeVerify } from 'node:crypto';
import type { FlattenedJWSInput, JWSHeaderParameters, JWTPayload } from 'jose';

/** Finds the key of a JWS header (jose's JWKS resolvers have this shape). */
export type JwsKeyLookup = (header: JWSHeaderParameters, token: FlattenedJWSInput) => Promise<unknown>;

/** Why a compact JWS was refused. */
export class JwsRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'JwsRefused';
  }
}

/** Longest compact JWS read (a Tessera JWT or SET is well under 2 KiB; RSA-4096 signatures included). */
const MAX_LENGTH = 16_384;

/** The characters of a base64url segment (RFC 7515 §2, no padding). */
const B64URL = /^[A-Za-z0-9_-]*$/;

/**
 * Each algorithm a Tessera key signs with: node:crypto's digest, its signature encoding, and
 * the key it needs (type and curve or size). A key of another type is refused before any
 * signature check, so no algorithm can be checked with a key meant for another.
 */
const ALGS: Record<string, { hash: string | null; p1363: boolean; fits: (k: KeyObject) => boolean }> = {
  EdDSA: { hash: null, p1363: false, fits: (k) => k.asymmetricKeyType === 'ed25519' },
  ES256: { hash: 'sha256', p1363: true, fits: (k) => k.asymmetricKeyType === 'ec' && k.asymmetricKeyDetails?.namedCurve === 'prime256v1' },
  RS256: { hash: 'sha256', p1363: false, fits: (k) => k.asymmetricKeyType === 'rsa' && (k.asymmetricKeyDetails?.modulusLength ?? 0) >= 2048 },
};

/** Every algorithm {@link verifyCompactJws} can check. */
export const JWS_ALGORITHMS: readonly string[] = Object.keys(ALGS);

/** node:crypto's form of each key the lookup gives (jose hands out WebCrypto keys), made once per key. */
const keyObjects = new WeakMap<object, KeyObject>();

function keyObject(key: unknown): KeyObject {
  if (key instanceof KeyObject) return key;
  if (typeof key !== 'object' || key === null || key instanceof Uint8Array) throw new JwsRefused('the key is not a public key');
  let k = keyObjects.get(key);
  if (k === undefined) {
    try {
      k = KeyObject.from(key as Parameters<typeof KeyObject.from>[0]);
    } catch {
      throw new JwsRefused('the key is not a public key');
    }
    keyObjects.set(key, k);
  }
  return k;
}

function jsonObject(segment: string, what: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
  } catch {
    throw new JwsRefused(`the ${what} is not JSON`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new JwsRefused(`the ${what} is not a JSON object`);
  return v as Record<string, unknown>;
}

/**
 * Checks a compact JWS with node:crypto (the signature on libuv's thread pool) and returns its
 * header and JSON payload; throws {@link JwsRefused} otherwise. Guarantees: three base64url
 * segments; a JSON-object header whose `alg` is one of `algorithms` and of Tessera's (EdDSA
 * over Ed25519, ES256 over P-256, RS256 with at least 2048 bits; never `none` or HMAC); no `crit`
 * (no extension is understood); the key `lookup` gives for that header is public and of the
 * algorithm's type; the signature verifies; the payload is a JSON object. Errors of `lookup`
 * itself pass through unchanged (the caller tells an unknown kid from a refusal). Claims are the
 * caller's to check.
 *
 * Written on node:crypto rather than jose's `jwtVerify` (WebCrypto) because a verifier checks
 * every security event of the stream this way: it is a third less CPU per check, most of it off
 * the event loop.
 */
export async function verifyCompactJws(
  jws: string,
  lookup: JwsKeyLookup,
  algorithms: readonly string[],
): Promise<{ header: JWSHeaderParameters; payload: JWTPayload }> {
  if (typeof jws !== 'string' || jws.length > MAX_LENGTH) throw new JwsRefused('the JWS is too long');
  const a = jws.indexOf('.');
  const b = a < 0 ? -1 : jws.indexOf('.', a + 1);
  if (b < 0 || jws.indexOf('.', b + 1) !== -1) throw new JwsRefused('the JWS does not have three parts');
  const h = jws.slice(0, a);
  const p = jws.slice(a + 1, b);
  const s = jws.slice(b + 1);
  if (h === '' || s === '' || !B64URL.test(h) || !B64URL.test(p) || !B64URL.test(s)) throw new JwsRefused('the JWS is not base64url');
  const header = jsonObject(h, 'JWS header') as JWSHeaderParameters;
  const alg = header.alg;
  if (typeof alg !== 'string' || !algorithms.includes(alg) || !Object.hasOwn(ALGS, alg)) {
    throw new JwsRefused(`algorithm ${JSON.stringify(alg)} is not accepted`);
  }
  if (header.crit !== undefined) throw new JwsRefused('the JWS has critical header parameters');
  const spec = ALGS[alg]!;
  const key = keyObject(await lookup(header, { protected: h, payload: p, signature: s }));
  if (key.type !== 'public' || !spec.fits(key)) throw new JwsRefused(`the key is not an ${alg} public key`);
  const ok = await new Promise<boolean>((resolve) => {
    try {
      nodeVerify(spec.hash, Buffer.from(`${h}.${p}`), spec.p1363 ? { key, dsaEncoding: 'ieee-p1363' } : key, Buffer.from(s, 'base64url'), (err, valid) =>
        resolve(err === null && valid),
      );
    } catch {
      resolve(false);
    }
  });
  if (!ok) throw new JwsRefused('the signature is invalid');
  return { header, payload: jsonObject(p, 'JWS payload') as JWTPayload };
}
