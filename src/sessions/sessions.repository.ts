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

/** One login of a batch: the API token's hash and what the new session gets. */
export interface LoginInput {
  apiTokenHash: Buffer;
  tokenHash: Buffer;
  now: Date;
  expiresAt: Date;
  ip: string | null;
  requestId: string | null;
}

/**
 * loginWithToken for a batch of requests in one statement (one round trip, one implicit
 * transaction, committed durably before it returns: an acknowledged session survives a Postgres
 * crash). For each input it finds the live API token with that hash whose user is active and which
 * has not expired at the input's `now`, inserts the session with that token's scopes, and writes
 * its `session.create` audit row. Answers per input, in order: the new session, or undefined when
 * that API token does not qualify (nothing is written for that input then).
 *
 * The API token is not locked: a login racing a revocation or suspension may leave a session row
 * the revocation missed, but such a session is never accepted, since every verification also
 * requires its API token live and its user active (and a row lock here would serialise
 * concurrent logins with one token on multixacts).
 */
export async function createSessionsFromApiTokens(db: Q, inputs: readonly LoginInput[]): Promise<Array<NewSession | undefined>> {
  const audit = auditInsertFrom(
    'sa',
    { userId: sql`sa.user_id`, credential: sql`'api_token:' || sa.api_token_id`, ip: sql`sa.ip`, requestId: sql`sa.request_id` },
    {
      action: 'session.create',
      targetType: 'session',
      targetId: sql`sa.id::text`,
      details: sql`jsonb_build_object('api_token_id', sa.api_token_id, 'scopes', to_jsonb(sa.scopes))`,
    },
  );
  const r = await sql<NewSession & { token_hash: Buffer }>`${sql.raw(preparedMarker('session_login_batch'))}
    with i as (
      select * from unnest(${inputs.map((x) => x.apiTokenHash)}::bytea[], ${inputs.map((x) => x.tokenHash)}::bytea[],
        ${inputs.map((x) => x.now)}::timestamptz[], ${inputs.map((x) => x.expiresAt)}::timestamptz[],
        ${inputs.map((x) => x.ip)}::text[], ${inputs.map((x) => x.requestId)}::text[])
        as i(api_token_hash, token_hash, now, expires_at, ip, request_id)
    ), t as (
      select i.token_hash, i.now, i.expires_at, i.ip, api_tokens.id, api_tokens.user_id, api_tokens.scopes,
        api_tokens.expires_at as token_expires_at
      from i join api_tokens on api_tokens.token_hash = i.api_token_hash
        join users on users.id = api_tokens.user_id
      where api_tokens.revoked_at is null
        and (api_tokens.expires_at is null or api_tokens.expires_at > i.now)
        and users.status = 'active'
    ), s as (
      insert into sessions (token_hash, user_id, api_token_id, scopes, created_at, expires_at, last_used_at, revoked_at, ip)
      select t.token_hash, t.user_id, t.id, t.scopes, t.now, least(t.expires_at, t.token_expires_at), null, null, t.ip from t
      returning ${sql.raw(NEW_SESSION_COLUMNS)}, scopes, token_hash, ip
    ), sa as (
      select s.id, s.user_id, s.api_token_id, s.scopes, s.ip, i.request_id from s join i on i.token_hash = s.token_hash
    ), a as (${audit})
    select ${sql.raw(NEW_SESSION_COLUMNS)}, token_hash from s`.execute(db);
  const byHash = new Map(r.rows.map((row) => [row.token_hash.toString('base64'), row]));
  return inputs.map((x) => {
    const row = byHash.get(x.tokenHash.toString('base64'));
    return row && { id: row.id, user_id: row.user_id, api_token_id: row.api_token_id, created_at: row.created_at, expires_at: row.expires_at };
  });
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

/** One logout of a batch. */
export interface LogoutInput {
  tokenHash: Buffer;
  now: Date;
  ip: string | null;
  requestId: string | null;
}

/** The session a logout ended. */
export interface EndedSession {
  id: string;
  user_id: string;
  api_token_id: string;
}

/**
 * Logout for a batch of requests in one statement (one round trip, one implicit transaction,
 * committed durably before it returns): for each input, revokes the live session with that hash
 * that has not expired at the input's `now`, writes its `session.logout` audit row and notifies
 * every instance (`session` change event, sent on commit). Answers per input, in order: the ended
 * session, or undefined when there is no such session (nothing is written for it then). Of inputs
 * naming one session, only the first ends it; the others get undefined, as a second logout does.
 */
export async function revokeSessionsByHash(
  db: Q,
  inputs: readonly LogoutInput[],
  sliding: { ttlSeconds: number } | null,
): Promise<Array<EndedSession | undefined>> {
  // One entry per session, in hash order: concurrent batches then lock shared rows in one order.
  const first = new Map<string, LogoutInput>();
  for (const x of inputs) {
    const key = x.tokenHash.toString('base64');
    if (!first.has(key)) first.set(key, x);
  }
  const unique = [...first.values()].sort((a, b) => Buffer.compare(a.tokenHash, b.tokenHash));
  const audit = auditInsertFrom(
    's',
    { userId: sql`s.user_id`, credential: sql`'session:' || s.id`, ip: sql`s.ip`, requestId: sql`s.request_id` },
    { action: 'session.logout', targetType: 'session', targetId: sql`s.id::text` },
  );
  const r = await sql<EndedSession & { token_hash: Buffer }>`${sql.raw(preparedMarker('session_logout_batch'))}
    with i as (
      select * from unnest(${unique.map((x) => x.tokenHash)}::bytea[], ${unique.map((x) => x.now)}::timestamptz[],
        ${unique.map((x) => x.ip)}::text[], ${unique.map((x) => x.requestId)}::text[])
        as i(token_hash, now, ip, request_id)
    ), s as (
      update sessions set revoked_at = i.now from i
      where sessions.token_hash = i.token_hash and sessions.revoked_at is null and ${effectiveExpiry(sliding)} > i.now
      returning sessions.id, sessions.user_id, sessions.api_token_id, sessions.token_hash, i.ip, i.request_id
    ), a as (${audit})
    select s.id, s.user_id, s.api_token_id, s.token_hash, ${changeNotifySql('session', sql`s.id`)} as notified from s`.execute(db);
  const byHash = new Map(r.rows.map((row) => [row.token_hash.toString('base64'), row]));
  return inputs.map((x) => {
    const key = x.tokenHash.toString('base64');
    if (first.get(key) !== x) return undefined;
    const row = byHash.get(key);
    return row && { id: row.id, user_id: row.user_id, api_token_id: row.api_token_id };
  });
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
