// DPoP proofs for the bench: a P-256 key (ES256: what Tessera's TypeScript and Python clients make, and
// the algorithm of RFC 9449's examples; BENCH_DPOP_ALG=EdDSA for Ed25519) and proofs signed synchronously
// with node:crypto, each with its own jti (the server refuses a proof it has seen). Pools are made before
// a timed run, so signing does not compete with the server for the CPU during it.
import { createHash, generateKeyPairSync, randomUUID, sign } from 'node:crypto';

const b64u = (b) => Buffer.from(b).toString('base64url');

/** The proofs' algorithm: ES256 unless BENCH_DPOP_ALG says EdDSA. */
export const DPOP_ALG = process.env.BENCH_DPOP_ALG === 'EdDSA' ? 'EdDSA' : 'ES256';

export function dpopKey(alg = DPOP_ALG) {
  if (alg === 'EdDSA') {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const { kty, crv, x } = publicKey.export({ format: 'jwk' });
    return { alg, privateKey, publicKey, header: b64u(JSON.stringify({ typ: 'dpop+jwt', alg, jwk: { kty, crv, x } })) };
  }
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const { kty, crv, x, y } = publicKey.export({ format: 'jwk' });
  return { alg, privateKey, publicKey, header: b64u(JSON.stringify({ typ: 'dpop+jwt', alg, jwk: { kty, crv, x, y } })) };
}

/** One proof for `method` `htu`; with `token`, bound to it by `ath`. */
export function dpopProof(key, method, htu, token) {
  const claims = { htm: method, htu, jti: randomUUID(), iat: Math.floor(Date.now() / 1000) };
  if (token) claims.ath = createHash('sha256').update(token).digest('base64url');
  const input = `${key.header}.${b64u(JSON.stringify(claims))}`;
  const sig =
    key.alg === 'EdDSA'
      ? sign(null, Buffer.from(input), key.privateKey)
      : sign('sha256', Buffer.from(input), { key: key.privateKey, dsaEncoding: 'ieee-p1363' });
  return `${input}.${b64u(sig)}`;
}

/**
 * The proofs of a pool made now, one per call: `perSecond` times `seconds` of them (plus a margin); past
 * the pool's end proofs are signed on the spot. For `withHeaderEach(request, 'dpop', ...)`.
 */
export function proofPool(key, method, htu, token, seconds, perSecond) {
  const n = Math.ceil((seconds + 2) * perSecond);
  const pool = Array.from({ length: n }, () => dpopProof(key, method, htu, token));
  let next = 0;
  return () => (next < pool.length ? pool[next++] : dpopProof(key, method, htu, token));
}
