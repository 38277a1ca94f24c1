import { constants, sign as nodeSign, verify as nodeVerify, type KeyObject, type VerifyKeyObjectInput, type VerifyPublicKeyInput } from 'node:crypto';
import type { SigningAlg } from '../config.js';

/**
 * Compact JWS over `header` and `payload` with node:crypto. The signature is computed on libuv's
 * thread pool (node:crypto's callback form): signing is a large share of a token request's CPU, and
 * off the event loop it runs on another core while the loop parses and answers other requests.
 */
export function signCompact(alg: SigningAlg, privateKey: KeyObject, headerB64: string, payload: object): Promise<string> {
  const input = `${headerB64}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}`;
  const data = Buffer.from(input);
  return new Promise((resolve, reject) => {
    const done = (err: Error | null, sig: Buffer) => (err ? reject(err) : resolve(`${input}.${sig.toString('base64url')}`));
    switch (alg) {
      case 'EdDSA':
        return nodeSign(null, data, privateKey, done);
      case 'ES256':
        return nodeSign('sha256', data, { key: privateKey, dsaEncoding: 'ieee-p1363' }, done);
      case 'RS256':
        return nodeSign('sha256', data, privateKey, done);
    }
  });
}

/** node:crypto's parameters of each JWS algorithm a proof of possession may use (RFC 7518 §3). */
const VERIFY: Record<string, { hash: string | null; key: (k: KeyObject) => KeyObject | VerifyKeyObjectInput | VerifyPublicKeyInput }> = {
  ES256: { hash: 'sha256', key: (key) => ({ key, dsaEncoding: 'ieee-p1363' }) },
  ES384: { hash: 'sha384', key: (key) => ({ key, dsaEncoding: 'ieee-p1363' }) },
  EdDSA: { hash: null, key: (key) => key },
  Ed25519: { hash: null, key: (key) => key },
  RS256: { hash: 'sha256', key: (key) => key },
  PS256: { hash: 'sha256', key: (key) => ({ key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST }) },
};

/** True when {@link verifySignature} knows `alg`. */
export function verifiableAlg(alg: string): boolean {
  return Object.hasOwn(VERIFY, alg);
}

/**
 * Checks the signature of a compact JWS's signing input (`header.payload`, as sent) with
 * node:crypto on libuv's thread pool, as {@link signCompact} signs. The caller has made sure the key
 * is of `alg`'s type and curve (jose's `importJWK` for that algorithm) and strong enough. False
 * for a wrong signature, an unknown algorithm, or a signature node:crypto cannot read.
 */
export function verifySignature(alg: string, publicKey: KeyObject, signingInput: string, signature: Buffer): Promise<boolean> {
  const v = Object.hasOwn(VERIFY, alg) ? VERIFY[alg]! : null;
  if (v === null) return Promise.resolve(false);
  return new Promise((resolve) => {
    try {
      nodeVerify(v.hash, Buffer.from(signingInput), v.key(publicKey), signature, (err, ok) => resolve(err === null && ok));
    } catch {
      resolve(false);
    }
  });
}
