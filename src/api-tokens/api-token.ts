import { checksummedTokens, hashSecret } from '../platform/crypto/secrets.js';

/**
 * Personal access tokens look like `tsr_pat_<43 base62 chars: 256 random bits><6 chars: CRC-32>`.
 * The prefix lets secret scanners find them; the checksum lets Tessera (and scanners) reject a
 * mistyped or made-up token without a database look-up.
 */
const apiTokens = checksummedTokens('tsr_pat_');
export const API_TOKEN_PREFIX = apiTokens.prefix;

export function generateApiToken(): string {
  return apiTokens.generate();
}

/** Shape and checksum check; true only for a well-formed token. */
export function isWellFormedApiToken(token: string): boolean {
  return apiTokens.isWellFormed(token);
}

export function hashApiToken(pepper: Buffer, token: string): Buffer {
  return hashSecret(pepper, token, 'api_token');
}

/** What a list may show of a token: its prefix and first characters. */
export function displayPrefix(token: string): string {
  return token.slice(0, API_TOKEN_PREFIX.length + 4);
}
