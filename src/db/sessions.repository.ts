import { sql, type Kysely, type Selectable, type Transaction } from 'kysely';
import type { Database } from './database.js';
import type { SessionsTable } from './tables/sessions.js';

export type SessionRow = Selectable<SessionsTable>;
type Q = Kysely<Database> | Transaction<Database>;

/**
 * The effective expiry of a session row as SQL: `expires_at`, or with sliding sessions also
 * `last_used_at + ttl` (whichever is later).
 */
function effectiveExpiry(sliding: { ttlSeconds: number } | null) {
  return sliding
    ? sql<Date>`greatest(sessions.expires_at, coalesce(sessions.last_used_at, sessions.created_at) + make_interval(secs => ${sliding.ttlSeconds}))`
    : sql<Date>`sessions.expires_at`;
}

/**
 * The live API token with this hash and its owner's status. Not locked: a login racing a
 * revocation or suspension may leave a session row the revocation missed, but such a session is
 * never accepted, since every verification also requires its API token live and its user active
 * (and a row lock here would serialise concurrent logins with one token on multixacts).
 */
export async function lockApiTokenForLogin(db: Q, tokenHash: Buffer) {
  return db
    .selectFrom('api_tokens')
    .innerJoin('users', 'users.id', 'api_tokens.user_id')
    .select(['api_tokens.id', 'api_tokens.user_id', 'api_tokens.scopes', 'api_tokens.expires_at', 'users.status as user_status'])
    .where('api_tokens.token_hash', '=', tokenHash)
    .where('api_tokens.revoked_at', 'is', null)
    .executeTakeFirst();
}

export async function insertSession(
  db: Q,
  row: { tokenHash: Buffer; userId: string; apiTokenId: string; scopes: string[]; createdAt: Date; expiresAt: Date; ip: string | null },
): Promise<SessionRow> {
  return db
    .insertInto('sessions')
    .values({
      token_hash: row.tokenHash,
      user_id: row.userId,
      api_token_id: row.apiTokenId,
      scopes: row.scopes,
      created_at: row.createdAt,
      expires_at: row.expiresAt,
      last_used_at: null,
      revoked_at: null,
      ip: row.ip,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}

/**
 * The live session with this hash: not revoked, not expired at `now`, its API token live and its
 * user active. Returns its effective expiry.
 */
export async function findLiveSessionByHash(db: Q, tokenHash: Buffer, now: Date, sliding: { ttlSeconds: number } | null) {
  const expiry = effectiveExpiry(sliding);
  return db
    .selectFrom('sessions')
    .innerJoin('api_tokens', 'api_tokens.id', 'sessions.api_token_id')
    .innerJoin('users', 'users.id', 'sessions.user_id')
    .select([
      'sessions.id',
      'sessions.user_id',
      'sessions.api_token_id',
      'sessions.scopes',
      expiry.as('expires_at'),
      'api_tokens.expires_at as api_token_expires_at',
    ])
    .where('sessions.token_hash', '=', tokenHash)
    .where('sessions.revoked_at', 'is', null)
    .where(expiry, '>', now)
    .where('api_tokens.revoked_at', 'is', null)
    .where((eb) => eb.or([eb('api_tokens.expires_at', 'is', null), eb('api_tokens.expires_at', '>', now)]))
    .where('users.status', '=', 'active')
    .executeTakeFirst();
}

/** Logout: revokes the live, unexpired session with this hash; undefined when there is none. */
export async function revokeSessionByHash(db: Q, tokenHash: Buffer, now: Date, sliding: { ttlSeconds: number } | null) {
  return db
    .updateTable('sessions')
    .set({ revoked_at: now })
    .where('token_hash', '=', tokenHash)
    .where('revoked_at', 'is', null)
    .where(effectiveExpiry(sliding), '>', now)
    .returning(['id', 'user_id', 'api_token_id'])
    .executeTakeFirst();
}

/** Ends every live session made from one API token; returns their ids. */
export async function revokeSessionsOfApiToken(db: Q, apiTokenId: string, now: Date): Promise<string[]> {
  const rows = await db
    .updateTable('sessions')
    .set({ revoked_at: now })
    .where('api_token_id', '=', apiTokenId)
    .where('revoked_at', 'is', null)
    .returning('id')
    .execute();
  return rows.map((r) => r.id);
}

/** Ends every live session of a user; returns how many. */
export async function revokeSessionsOfUser(db: Q, userId: string, now: Date): Promise<number> {
  const rows = await db
    .updateTable('sessions')
    .set({ revoked_at: now })
    .where('user_id', '=', userId)
    .where('revoked_at', 'is', null)
    .returning('id')
    .execute();
  return rows.length;
}

/**
 * Deletes sessions that can no longer be used: expired before `now`, or revoked before
 * `revokedBefore` (kept a little while for people reading the audit trail). Returns how many.
 */
export async function pruneSessions(db: Q, now: Date, revokedBefore: Date, sliding: { ttlSeconds: number } | null): Promise<number> {
  const r = await db
    .deleteFrom('sessions')
    .where((eb) => eb.or([eb(effectiveExpiry(sliding), '<=', now), eb('sessions.revoked_at', '<', revokedBefore)]))
    .executeTakeFirst();
  return Number(r.numDeletedRows);
}
