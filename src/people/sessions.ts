import { sql } from 'kysely';
import type { Config } from '../platform/config.js';
import { hashSecret, randomSecret } from '../platform/crypto/secrets.js';
import { recordAudit, type Actor } from '../platform/database/audit.repository.js';
import type { Principal } from '../platform/auth/principal.js';
import { peopleDb, type PeopleDb } from './db.js';
import type { Kysely } from 'kysely';
import type { Database } from '../platform/database/database.js';
import type { PeopleTables } from './people.table.js';

const PURPOSE = 'console_session';

export type SignInMethod = 'passkey' | 'password' | 'api_token';

export interface ConsoleSession {
  id: string;
  userId: string;
  apiTokenId: string;
  scopes: readonly string[];
  method: SignInMethod;
  createdAt: Date;
  /** When the session ends at the latest (absolute timeout, or its API token's expiry). */
  expiresAt: Date;
}

export function hashSessionCookie(pepper: Buffer, value: string): Buffer {
  return hashSecret(pepper, value, PURPOSE);
}

/**
 * Starts a browser session acting for `apiTokenId` and returns the cookie value (the only place it
 * exists; the database keeps its keyed hash). Audited as `console_session.create`.
 */
export async function startSession(
  db: Kysely<Database>,
  config: Config,
  input: { userId: string; apiTokenId: string; method: SignInMethod; now: Date; ip: string | null; userAgent: string | null; requestId: string | null },
): Promise<{ cookie: string; id: string }> {
  const cookie = randomSecret();
  const row = await peopleDb(db)
    .insertInto('console_sessions')
    .values({
      token_hash: hashSessionCookie(config.pepper, cookie),
      user_id: input.userId,
      api_token_id: input.apiTokenId,
      method: input.method,
      created_at: input.now,
      last_seen_at: input.now,
      expires_at: new Date(input.now.getTime() + config.console.sessionMaxSeconds * 1000),
      revoked_at: null,
      ip: input.ip,
      user_agent: input.userAgent?.slice(0, 300) ?? null,
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  await recordAudit(
    db,
    { userId: input.userId, credential: `console_session:${row.id}`, ip: input.ip, requestId: input.requestId },
    { action: 'console_session.create', targetType: 'console_session', targetId: row.id, details: { method: input.method } },
  );
  return { cookie, id: row.id };
}

/**
 * The live session with this cookie value: not revoked, within both its idle and absolute
 * timeouts, its API token live and unexpired, its user active. Read from Postgres on every request,
 * so a sign-out on any instance holds on every instance from the moment it commits. Moves the idle
 * clock forward (at most once a minute).
 */
export async function findLiveSession(db: Kysely<Database>, config: Config, cookie: string, now: Date): Promise<ConsoleSession | null> {
  if (cookie.length < 40 || cookie.length > 64) return null;
  const p = peopleDb(db);
  const idle = config.console.sessionIdleSeconds;
  const row = await p
    .selectFrom('console_sessions as s')
    .innerJoin('api_tokens as t', 't.id', 's.api_token_id')
    .innerJoin('users as u', 'u.id', 's.user_id')
    .select([
      's.id',
      's.user_id',
      's.api_token_id',
      's.method',
      's.created_at',
      's.last_seen_at',
      's.expires_at',
      't.scopes',
      't.expires_at as token_expires_at',
    ])
    .where('s.token_hash', '=', hashSessionCookie(config.pepper, cookie))
    .where('s.revoked_at', 'is', null)
    .where('s.expires_at', '>', now)
    .where(sql<Date>`s.last_seen_at + make_interval(secs => ${idle})`, '>', now)
    .where('t.revoked_at', 'is', null)
    .where((eb) => eb.or([eb('t.expires_at', 'is', null), eb('t.expires_at', '>', now)]))
    .where('u.status', '=', 'active')
    .executeTakeFirst();
  if (!row) return null;
  if (now.getTime() - row.last_seen_at.getTime() > Math.min(60_000, (idle * 1000) / 10)) {
    await p.updateTable('console_sessions').set({ last_seen_at: now }).where('id', '=', row.id).where('revoked_at', 'is', null).execute();
  }
  const ends = row.token_expires_at && row.token_expires_at < row.expires_at ? row.token_expires_at : row.expires_at;
  return {
    id: row.id,
    userId: row.user_id,
    apiTokenId: row.api_token_id,
    scopes: Object.freeze([...row.scopes]),
    method: row.method,
    createdAt: row.created_at,
    expiresAt: ends,
  };
}

/** The principal a console session acts as: a session of the API token it acts for. */
export function principalOf(s: ConsoleSession): Principal {
  return {
    kind: 'console_session',
    userId: s.userId,
    scopes: s.scopes,
    credentialId: s.id,
    clientId: null,
    organizationId: null,
    expiresAt: Math.floor(s.expiresAt.getTime() / 1000),
    apiTokenId: s.apiTokenId,
  };
}

/** Ends one session of a user (durable before it returns). False when it was not live. */
export async function endSession(db: Kysely<Database>, actor: Actor, userId: string, sessionId: string, now: Date): Promise<boolean> {
  return db.transaction().execute(async (trx) => {
    const r = await trx
      .withTables<PeopleTables>()
      .updateTable('console_sessions')
      .set({ revoked_at: now })
      .where('id', '=', sessionId)
      .where('user_id', '=', userId)
      .where('revoked_at', 'is', null)
      .returning('id')
      .executeTakeFirst();
    if (!r) return false;
    await recordAudit(trx, actor, { action: 'console_session.end', targetType: 'console_session', targetId: sessionId });
    return true;
  });
}

/** Ends every console session of a user (sign out everywhere); returns how many ended. */
export async function endAllSessions(db: Kysely<Database>, actor: Actor, userId: string, now: Date): Promise<number> {
  return db.transaction().execute(async (trx) => {
    const rows = await trx
      .withTables<PeopleTables>()
      .updateTable('console_sessions')
      .set({ revoked_at: now })
      .where('user_id', '=', userId)
      .where('revoked_at', 'is', null)
      .returning('id')
      .execute();
    await recordAudit(trx, actor, { action: 'console_session.end_all', targetType: 'user', targetId: userId, details: { ended: rows.length } });
    return rows.length;
  });
}

/** The live sessions of a user, newest first (for the "my sessions" page). */
export async function listSessions(db: PeopleDb, config: Config, userId: string, now: Date) {
  return db
    .selectFrom('console_sessions')
    .select(['id', 'method', 'created_at', 'last_seen_at', 'expires_at', 'ip', 'user_agent'])
    .where('user_id', '=', userId)
    .where('revoked_at', 'is', null)
    .where('expires_at', '>', now)
    .where(sql<Date>`last_seen_at + make_interval(secs => ${config.console.sessionIdleSeconds})`, '>', now)
    .orderBy('created_at', 'desc')
    .execute();
}
