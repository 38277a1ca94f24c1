import { sql, type Kysely, type Selectable, type Transaction } from 'kysely';
import { preparedMarker, type Database } from '../platform/database/database.js';
import type { SessionsTable } from './sessions.table.js';
import { auditInsertFrom } from '../platform/database/audit.repository.js';
import { changeNotifySql } from '../platform/database/notifications.js';

export type SessionRow = Selectable<SessionsTable>;
type Q = Kysely<Database> | Transaction<Database>;

/** What a login returns of the new session (spelled out: prepared statements must not use `*`). */
export type NewSession = Pick<SessionRow, 'id' | 'user_id' | 'api_token_id' | 'created_at' | 'expires_at'>;
const NEW_SESSION_COLUMNS = 'id, user_id, api_token_id, created_at, expires_at';

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
 * loginWithToken in one statement (one round trip, one implicit transaction): finds the live API
 * token with this hash whose user is active and which has not expired at `now`, inserts the
 * session with that token's scopes, and writes the `session.create` audit row. Returns the new
 * session, or undefined when the API token does not qualify (nothing is written then).
 *
 * The API token is not locked: a login racing a revocation or suspension may leave a session row
 * the revocation missed, but such a session is never accepted, since every verification also
 * requires its API token live and its user active (and a row lock here would serialise
 * concurrent logins with one token on multixacts).
 */
export async function createSessionFromApiToken(
  db: Q,
  row: { apiTokenHash: Buffer; tokenHash: Buffer; now: Date; expiresAt: Date; ip: string | null; requestId: string | null },
): Promise<NewSession | undefined> {
  const audit = auditInsertFrom(
    's',
    { userId: sql`s.user_id`, credential: sql`'api_token:' || s.api_token_id`, ip: row.ip, requestId: row.requestId },
    {
      action: 'session.create',
      targetType: 'session',
      targetId: sql`s.id::text`,
      details: sql`jsonb_build_object('api_token_id', s.api_token_id, 'scopes', to_jsonb(s.scopes))`,
    },
  );
  // A login commits durably like every other write: an acknowledged session survives a Postgres crash.
  const r = await sql<NewSession>`${sql.raw(preparedMarker('session_login'))}
    with t as (
      select api_tokens.id, api_tokens.user_id, api_tokens.scopes, api_tokens.expires_at
      from api_tokens join users on users.id = api_tokens.user_id
      where api_tokens.token_hash = ${row.apiTokenHash}
        and api_tokens.revoked_at is null
        and (api_tokens.expires_at is null or api_tokens.expires_at > ${row.now})
        and users.status = 'active'
    ), s as (
      insert into sessions (token_hash, user_id, api_token_id, scopes, created_at, expires_at, last_used_at, revoked_at, ip)
      select ${row.tokenHash}, t.user_id, t.id, t.scopes, ${row.now}, least(${row.expiresAt}::timestamptz, t.expires_at), null, null, ${row.ip} from t
      returning ${sql.raw(NEW_SESSION_COLUMNS)}, scopes
    ), a as (${audit})
    select ${sql.raw(NEW_SESSION_COLUMNS)} from s`.execute(db);
  return r.rows[0];
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

/**
 * Logout in one statement (one round trip, one implicit transaction, committed durably before it
 * returns): revokes the live, unexpired session with this hash, writes the `session.logout` audit
 * row and notifies every instance (`session` change event, sent on commit). Undefined when there
 * is no such session (nothing is written then).
 */
export async function revokeSessionByHash(
  db: Q,
  input: { tokenHash: Buffer; now: Date; sliding: { ttlSeconds: number } | null; ip: string | null; requestId: string | null },
) {
  const audit = auditInsertFrom(
    's',
    { userId: sql`s.user_id`, credential: sql`'session:' || s.id`, ip: input.ip, requestId: input.requestId },
    { action: 'session.logout', targetType: 'session', targetId: sql`s.id::text` },
  );
  const r = await sql<{ id: string; user_id: string; api_token_id: string }>`${sql.raw(preparedMarker('session_logout'))}
    with s as (
      update sessions set revoked_at = ${input.now}
      where token_hash = ${input.tokenHash} and revoked_at is null and ${effectiveExpiry(input.sliding)} > ${input.now}
      returning id, user_id, api_token_id
    ), a as (${audit})
    select s.id, s.user_id, s.api_token_id, ${changeNotifySql('session', sql`s.id`)} as notified from s`.execute(db);
  const row = r.rows[0];
  return row && { id: row.id, user_id: row.user_id, api_token_id: row.api_token_id };
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
