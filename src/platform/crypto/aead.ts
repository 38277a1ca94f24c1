import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { MasterKey } from '../config.js';

/** A secret sealed under a master key: AES-256-GCM, fresh 96-bit nonce, 128-bit tag. */
export interface Sealed {
  /** nonce (12) || ciphertext || tag (16) */
  readonly ciphertext: Buffer;
  /** Id of the master key that sealed it. */
  readonly keyId: string;
}

export class DecryptError extends Error {
  override name = 'DecryptError';
}

/**
 * Encrypts `plaintext` under the master key. `aad` binds the ciphertext to where it lives
 * (owner, purpose), so a row copied elsewhere fails to open.
 */
export function seal(key: MasterKey, plaintext: Buffer | string, aad: string): Sealed {
  const nonce = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key.key, nonce);
  cipher.setAAD(Buffer.from(aad, 'utf8'));
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return { ciphertext: Buffer.concat([nonce, body, cipher.getAuthTag()]), keyId: key.id };
}

/** Opens a sealed value with whichever known master key sealed it. */
export function open(keys: readonly MasterKey[], sealed: Sealed, aad: string): Buffer {
  const key = keys.find((k) => k.id === sealed.keyId);
  if (!key) throw new DecryptError(`master key ${sealed.keyId} is not configured (set it in TESSERA_PREVIOUS_MASTER_KEYS)`);
  const data = sealed.ciphertext;
  if (data.length < 12 + 16) throw new DecryptError('ciphertext too short');
  const decipher = createDecipheriv('aes-256-gcm', key.key, data.subarray(0, 12));
  decipher.setAAD(Buffer.from(aad, 'utf8'));
  decipher.setAuthTag(data.subarray(data.length - 16));
  try {
    return Buffer.concat([decipher.update(data.subarray(12, data.length - 16)), decipher.final()]);
  } catch {
    throw new DecryptError('ciphertext failed authentication (wrong key, or moved/tampered data)');
  }
}
