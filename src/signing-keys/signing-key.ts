import { createPrivateKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { calculateJwkThumbprint, importJWK, type CryptoKey, type JWK } from 'jose';
import type { MasterKey, SigningAlg } from '../platform/config.js';
import { open, seal } from '../platform/crypto/aead.js';

/** What a new signing key is stored as. */
export interface NewSigningKey {
  kid: string;
  alg: SigningAlg;
  publicJwk: JWK & { kid: string; alg: SigningAlg; use: 'sig' };
  privateKeyCiphertext: Buffer;
  masterKeyId: string;
}

/** Associated data binding a sealed private key to its kid. */
export const privateKeyAad = (kid: string) => `signing_key:${kid}`;

function generatePair(alg: SigningAlg): { publicKey: KeyObject; privateKey: KeyObject } {
  switch (alg) {
    case 'EdDSA':
      return generateKeyPairSync('ed25519');
    case 'ES256':
      return generateKeyPairSync('ec', { namedCurve: 'P-256' });
    case 'RS256':
      return generateKeyPairSync('rsa', { modulusLength: 2048 });
  }
}

/**
 * Generates a key pair for `alg`; the kid is the RFC 7638 thumbprint of the public key, so kids
 * are distinct per key. The private key (PKCS#8 DER) is sealed under the master key.
 */
export async function generateSigningKey(alg: SigningAlg, masterKey: MasterKey): Promise<NewSigningKey> {
  const { publicKey, privateKey } = generatePair(alg);
  const jwk = publicKey.export({ format: 'jwk' }) as JWK;
  const kid = await calculateJwkThumbprint(jwk, 'sha256');
  const der = privateKey.export({ format: 'der', type: 'pkcs8' });
  const sealed = seal(masterKey, der, privateKeyAad(kid));
  return {
    kid,
    alg,
    publicJwk: { ...jwk, kid, alg, use: 'sig' },
    privateKeyCiphertext: sealed.ciphertext,
    masterKeyId: sealed.keyId,
  };
}

/** Opens a stored private key with whichever configured master key sealed it. */
export function openPrivateKey(keys: readonly MasterKey[], row: { kid: string; private_key_ciphertext: Buffer; master_key_id: string }): KeyObject {
  const der = open(keys, { ciphertext: row.private_key_ciphertext, keyId: row.master_key_id }, privateKeyAad(row.kid));
  return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
}

/** The public JWK as published: only public members (a stored row never holds more, but be sure). */
export function publicMembers(jwk: Record<string, unknown>): JWK {
  const out: Record<string, unknown> = {};
  for (const k of ['kty', 'crv', 'x', 'y', 'n', 'e', 'kid', 'alg', 'use']) if (jwk[k] !== undefined) out[k] = jwk[k];
  return out as JWK;
}

/** Public key as a WebCrypto key for jose's verifier. */
export async function importVerifyKey(jwk: JWK, alg: SigningAlg): Promise<CryptoKey> {
  return (await importJWK(jwk, alg)) as CryptoKey;
}
