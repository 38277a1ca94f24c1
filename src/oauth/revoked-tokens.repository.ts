import type { Kysely, Transaction } from 'kysely';
import type { Database } from '../platform/database/database.js';
import { recordAudits } from '../platform/database/audit.repository.js';
import { publishChanges, type ChangeEvent } from '../platform/database/notifications.js';

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

/** One RFC 7009 revocation of a batch: the token's jti and expiry, who revoked it, from where. */
export interface RevocationInput {
  jti: string;
  exp: number;
  clientId: string;
  userId: string | null;
  ip: string | null;
  requestId: string | null;
}

/**
 * Revokes a batch of tokens in one transaction: the denylist rows (a jti already there, or twice
 * in the batch, stays one row; the security-event trigger fires once per row inserted), one audit
 * row per revocation with that request's ip and request id, and one `revoked_token` change event
 * per revocation, all sent by the same commit. Three statements whatever the batch size.
 */
export async function revokeTokens(db: Kysely<Database>, inputs: RevocationInput[]): Promise<void[]> {
  if (inputs.length === 0) return [];
  await db.transaction().execute(async (trx) => {
    await trx
      .insertInto('revoked_tokens')
      .values(inputs.map((r) => ({ jti: r.jti, client_id: r.clientId, expires_at: new Date(r.exp * 1000) })))
      .onConflict((oc) => oc.column('jti').doNothing())
      .execute();
    await recordAudits(
      trx,
      inputs.map((r) => ({
        actor: { userId: r.userId, credential: `client:${r.clientId}`, ip: r.ip, requestId: r.requestId },
        entry: { action: 'oauth.token.revoke', targetType: 'access_token', targetId: r.jti, details: { client_id: r.clientId } },
      })),
    );
    await publishChanges(
      trx,
      inputs.map((r): ChangeEvent<'revoked_token'> => ({ type: 'revoked_token', id: r.jti, exp: r.exp })),
    );
  });
  return inputs.map(() => undefined);
}
