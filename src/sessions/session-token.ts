import { checksummedTokens, hashSecret } from '../platform/crypto/secrets.js';

/** Session tokens (the `id` loginWithToken returns): `tsr_ses_<256 random bits, base62><CRC-32>`. */
const sessionTokens = checksummedTokens('tsr_ses_');
export const SESSION_TOKEN_PREFIX = sessionTokens.prefix;

export function generateSessionToken(): string {
  return sessionTokens.generate();
}

/** Shape and checksum check; true only for a well-formed session token. */
export function isWellFormedSessionToken(token: string): boolean {
  return sessionTokens.isWellFormed(token);
}

export function hashSessionToken(pepper: Buffer, token: string): Buffer {
  return hashSecret(pepper, token, 'session');
}
