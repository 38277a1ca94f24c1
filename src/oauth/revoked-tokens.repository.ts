import type { Kysely, Transaction } from 'kysely';
import type { Database } from '../platform/database/database.js';

type Q = Kysely<Database> | Transaction<Database>;

/** Adds a jti to the denylist (idempotent). */
export async function insertRevokedToken(db: Q, row: { jti: string; clientId: string | null; expiresAt: Date }): Promise<void> {
  await db
    .insertInto('revoked_tokens')
    .values({ jti: row.jti, client_id: row.clientId, expires_at: row.expiresAt })
    .onConflict((oc) => oc.column('jti').doNothing())
    .execute();
}

/** Denylisted jtis whose tokens have not yet expired. */
export async function listLiveRevokedTokens(db: Q, now: Date): Promise<Array<{ jti: string; expires_at: Date }>> {
  return db.selectFrom('revoked_tokens').select(['jti', 'expires_at']).where('expires_at', '>', now).execute();
}

/** Removes entries whose tokens have expired anyway; returns how many. */
export async function pruneRevokedTokens(db: Q, now: Date): Promise<number> {
  const r = await db.deleteFrom('revoked_tokens').where('expires_at', '<=', now).executeTakeFirst();
  return Number(r.numDeletedRows);
}
