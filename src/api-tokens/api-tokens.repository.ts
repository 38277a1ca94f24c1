import { sql, type Kysely, type Selectable, type Transaction } from 'kysely';
import type { Database } from '../platform/database/database.js';
import type { ApiTokensTable } from './api-tokens.table.js';

export type ApiTokenRow = Selectable<ApiTokensTable>;
type Q = Kysely<Database> | Transaction<Database>;

export async function insertApiToken(
  db: Q,
  row: {
    userId: string;
    name: string;
    tokenHash: Buffer;
    displayPrefix: string;
    scopes: string[];
    expiresAt: Date | null;
    parentApiTokenId?: string | null;
  },
): Promise<ApiTokenRow> {
  return db
    .insertInto('api_tokens')
    .values({
      user_id: row.userId,
      name: row.name,
      token_hash: row.tokenHash,
      display_prefix: row.displayPrefix,
      scopes: row.scopes,
      expires_at: row.expiresAt,
      last_used_at: null,
      revoked_at: null,
      parent_api_token_id: row.parentApiTokenId ?? null,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}

/** The live token with this hash, with its owner's status; revoked tokens are not returned. */
export async function findApiTokenByHash(db: Q, tokenHash: Buffer) {
  return db
    .selectFrom('api_tokens')
    .innerJoin('users', 'users.id', 'api_tokens.user_id')
    .select(['api_tokens.id', 'api_tokens.user_id', 'api_tokens.scopes', 'api_tokens.expires_at', 'api_tokens.revoked_at', 'users.status as user_status'])
    .where('api_tokens.token_hash', '=', tokenHash)
    .where('api_tokens.revoked_at', 'is', null)
    .executeTakeFirst();
}

export async function countAdminTokens(db: Q): Promise<number> {
  const r = await db
    .selectFrom('api_tokens')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where(sql<boolean>`'admin' = any(scopes)`)
    .where('revoked_at', 'is', null)
    .executeTakeFirstOrThrow();
  return Number(r.n);
}

/** The user's live (not revoked) tokens, oldest first. */
export async function listLiveApiTokens(db: Q, userId: string): Promise<ApiTokenRow[]> {
  return db.selectFrom('api_tokens').selectAll().where('user_id', '=', userId).where('revoked_at', 'is', null).orderBy('created_at').orderBy('id').execute();
}

/** Revokes one of the user's live tokens; undefined when the user has no such live token. */
export async function revokeApiTokenOfUser(db: Q, userId: string, id: string, now: Date): Promise<ApiTokenRow | undefined> {
  return db
    .updateTable('api_tokens')
    .set({ revoked_at: now })
    .where('id', '=', id)
    .where('user_id', '=', userId)
    .where('revoked_at', 'is', null)
    .returningAll()
    .executeTakeFirst();
}

/** Revokes every live token of a user; returns their ids. */
export async function revokeApiTokensOfUser(db: Q, userId: string, now: Date): Promise<string[]> {
  const rows = await db
    .updateTable('api_tokens')
    .set({ revoked_at: now })
    .where('user_id', '=', userId)
    .where('revoked_at', 'is', null)
    .returning('id')
    .execute();
  return rows.map((r) => r.id);
}

/**
 * Locks the user's live, unexpired token with this id (FOR SHARE) for the rest of the
 * transaction, so a revocation waits for it (and then sees what it created); undefined when it
 * is revoked or expired by `now`.
 */
export async function lockLiveApiToken(db: Transaction<Database>, userId: string, id: string, now: Date) {
  return db
    .selectFrom('api_tokens')
    .select(['id', 'scopes', 'expires_at'])
    .where('id', '=', id)
    .where('user_id', '=', userId)
    .where('revoked_at', 'is', null)
    .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]))
    .forShare()
    .executeTakeFirst();
}

/**
 * Revokes every live descendant (children, their children, ...) of an API token; returns them.
 * Descendants are found through revoked ones too, so calling it again finds what a concurrent
 * creation committed meanwhile.
 */
export async function revokeLiveDescendants(db: Q, rootId: string, now: Date): Promise<Array<{ id: string; parent_api_token_id: string }>> {
  const r = await sql<{ id: string; parent_api_token_id: string }>`
    with recursive d(id) as (
      select id from api_tokens where parent_api_token_id = ${rootId}
      union
      select t.id from api_tokens t join d on t.parent_api_token_id = d.id
    )
    update api_tokens set revoked_at = ${now}
    where id in (select id from d) and revoked_at is null
    returning id, parent_api_token_id`.execute(db);
  return r.rows;
}
