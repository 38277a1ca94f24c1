import { base62u32, crc32, hashSecret, randomBase62 } from '../crypto/secrets.js';

/**
 * Session tokens (the `id` loginWithToken returns) look like
 * `tsr_ses_<43 base62 chars: 256 random bits><6 chars: CRC-32>`: recognisable by scanners, and a
 * mistyped or made-up token is refused without a database look-up.
 */
export const SESSION_TOKEN_PREFIX = 'tsr_ses_';
const BODY_LEN = 43;
const TOKEN_RE = /^tsr_ses_([0-9A-Za-z]{43})([0-9A-Za-z]{6})$/;

export function generateSessionToken(): string {
  const body = randomBase62(256);
  if (body.length !== BODY_LEN) throw new Error('unexpected token body length');
  return `${SESSION_TOKEN_PREFIX}${body}${base62u32(crc32(body))}`;
}

/** Shape and checksum check; true only for a well-formed session token. */
export function isWellFormedSessionToken(token: string): boolean {
  const m = TOKEN_RE.exec(token);
  return !!m && base62u32(crc32(m[1]!)) === m[2];
}

export function hashSessionToken(pepper: Buffer, token: string): Buffer {
  return hashSecret(pepper, token, 'session');
}
