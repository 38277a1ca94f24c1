import type { Kysely, Transaction } from 'kysely';
import type { Database } from '../db/database.js';
import { insertApiToken, revokeApiTokenOfUser, type ApiTokenRow } from '../db/api-tokens.repository.js';
import { revokeSessionsOfApiToken } from '../db/sessions.repository.js';
import { publishChange } from '../db/notifications.js';
import { recordAudit, type Actor } from '../db/audit.repository.js';
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

/**
 * Revokes one of the user's API tokens and every session made from it, in one transaction that
 * also tells every instance. False when the user has no such live token.
 */
export async function revokeApiToken(
  db: Kysely<Database>,
  input: { userId: string; tokenId: string; now: Date; actor: Actor },
): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    const row = await revokeApiTokenOfUser(trx, input.userId, input.tokenId, input.now);
    if (!row) return false;
    const sessions = await revokeSessionsOfApiToken(trx, row.id, input.now);
    await publishChange(trx, { type: 'api_token', id: row.id });
    await recordAudit(trx, input.actor, {
      action: 'api_token.revoke',
      targetType: 'api_token',
      targetId: row.id,
      details: { user_id: row.user_id, sessions_ended: sessions.length },
    });
    return true;
  });
}
