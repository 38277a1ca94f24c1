import type { Kysely, Transaction } from 'kysely';
import type { Database } from '../db/database.js';
import { insertApiToken, type ApiTokenRow } from '../db/api-tokens.repository.js';
import { displayPrefix, generateApiToken, hashApiToken } from './api-token.js';

/** Creates an API token and returns it with its row; the token exists nowhere else after this. */
export async function issueApiToken(
  db: Kysely<Database> | Transaction<Database>,
  pepper: Buffer,
  input: { userId: string; name: string; scopes: string[]; expiresAt: Date | null },
): Promise<{ token: string; row: ApiTokenRow }> {
  const token = generateApiToken();
  const row = await insertApiToken(db, {
    userId: input.userId,
    name: input.name,
    tokenHash: hashApiToken(pepper, token),
    displayPrefix: displayPrefix(token),
    scopes: [...new Set(input.scopes)],
    expiresAt: input.expiresAt,
  });
  return { token, row };
}
