import { base62u32, crc32, hashSecret, randomBase62 } from '../crypto/secrets.js';

/**
 * Personal access tokens look like `tsr_pat_<43 base62 chars: 256 random bits><6 chars: CRC-32>`.
 * The prefix lets secret scanners find them; the checksum lets Tessera (and scanners) reject a
 * mistyped or made-up token without a database look-up.
 */
export const API_TOKEN_PREFIX = 'tsr_pat_';
const BODY_LEN = 43;
const TOKEN_RE = /^tsr_pat_([0-9A-Za-z]{43})([0-9A-Za-z]{6})$/;

export function generateApiToken(): string {
  const body = randomBase62(256);
  if (body.length !== BODY_LEN) throw new Error('unexpected token body length');
  return `${API_TOKEN_PREFIX}${body}${base62u32(crc32(body))}`;
}

/** Shape and checksum check; true only for a well-formed token. */
export function isWellFormedApiToken(token: string): boolean {
  const m = TOKEN_RE.exec(token);
  return !!m && base62u32(crc32(m[1]!)) === m[2];
}

export function hashApiToken(pepper: Buffer, token: string): Buffer {
  return hashSecret(pepper, token, 'api_token');
}

/** What a list may show of a token: its prefix and first characters. */
export function displayPrefix(token: string): string {
  return token.slice(0, API_TOKEN_PREFIX.length + 4);
}
