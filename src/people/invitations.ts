import type { Kysely, Transaction } from 'kysely';
import type { Database } from '../platform/database/database.js';
import { hashSecret, randomSecret } from '../platform/crypto/secrets.js';
import { recordAudit, type Actor } from '../platform/database/audit.repository.js';
import { findUserById, type User } from '../identity/users.repository.js';
import { peopleTrx } from './db.js';
import type { PeopleTables } from './people.table.js';

const PURPOSE = 'user_invitation';

/** Scopes a console grant holds when the operator names none. */
export const DEFAULT_INVITATION_SCOPES: readonly string[] = ['api', 'quantum_tokens'];

export function hashInvitationCode(pepper: Buffer, code: string): Buffer {
  return hashSecret(pepper, code, PURPOSE);
}

/**
 * The link a person opens to set their passkey or password. The code travels in the fragment, so
 * browsers never send it to a server (nor to a log, nor in a Referer); the page posts it in a form.
 */
export function invitationUrl(issuer: string, code: string): string {
  return `${issuer}/console/invitation#${code}`;
}

export interface NewInvitation {
  id: string;
  userId: string;
  code: string;
  url: string;
  scopes: string[];
  expiresAt: Date;
}

/**
 * Invites an existing user to the console: a one-time code (256 random bits, stored only as its
 * keyed hash) that expires after `ttlSeconds`. Earlier unused invitations of the user stop
 * working. Null when there is no such user; audited as `user.invite`.
 */
export async function inviteUser(
  db: Kysely<Database>,
  pepper: Buffer,
  actor: Actor,
  input: { userId: string; scopes: readonly string[]; ttlSeconds: number; now: Date; issuer: string },
): Promise<NewInvitation | null> {
  return db.transaction().execute(async (trx) => {
    const user = await trx.selectFrom('users').select(['id']).where('id', '=', input.userId).forUpdate().executeTakeFirst();
    if (!user) return null;
    const p = peopleTrx(trx);
    await p.updateTable('user_invitations').set({ used_at: input.now }).where('user_id', '=', input.userId).where('used_at', 'is', null).execute();
    const code = randomSecret();
    const expiresAt = new Date(input.now.getTime() + input.ttlSeconds * 1000);
    const scopes = [...new Set(input.scopes)];
    const row = await p
      .insertInto('user_invitations')
      .values({ user_id: input.userId, token_hash: hashInvitationCode(pepper, code), scopes, created_at: input.now, expires_at: expiresAt, used_at: null })
      .returning('id')
      .executeTakeFirstOrThrow();
    await recordAudit(trx, actor, {
      action: 'user.invite',
      targetType: 'user',
      targetId: input.userId,
      details: { invitation_id: row.id, scopes, expires_at: expiresAt.toISOString() },
    });
    return { id: row.id, userId: input.userId, code, url: invitationUrl(input.issuer, code), scopes, expiresAt };
  });
}

/** The user and scopes of a live (unused, unexpired) invitation, without using it; null otherwise. */
export async function peekInvitation(db: Kysely<Database>, pepper: Buffer, code: string, now: Date): Promise<{ user: User; scopes: string[] } | null> {
  if (code.length < 40 || code.length > 64) return null;
  const row = await db
    .withTables<PeopleTables>()
    .selectFrom('user_invitations')
    .select(['user_id', 'scopes'])
    .where('token_hash', '=', hashInvitationCode(pepper, code))
    .where('used_at', 'is', null)
    .where('expires_at', '>', now)
    .executeTakeFirst();
  if (!row) return null;
  const user = await findUserById(db, row.user_id);
  if (!user || user.status !== 'active') return null;
  return { user, scopes: row.scopes };
}

/**
 * Uses a live invitation inside the caller's transaction (row-locked, so it is used once however
 * many requests race); null when it is not live or its user is not active.
 */
export async function useInvitation(trx: Transaction<Database>, pepper: Buffer, code: string, now: Date): Promise<{ userId: string; scopes: string[] } | null> {
  if (code.length < 40 || code.length > 64) return null;
  const p = peopleTrx(trx);
  const row = await p
    .updateTable('user_invitations')
    .set({ used_at: now })
    .where('token_hash', '=', hashInvitationCode(pepper, code))
    .where('used_at', 'is', null)
    .where('expires_at', '>', now)
    .returning(['id', 'user_id', 'scopes'])
    .executeTakeFirst();
  if (!row) return null;
  const user = await trx.selectFrom('users').select('status').where('id', '=', row.user_id).executeTakeFirst();
  if (user?.status !== 'active') return null;
  await recordAudit(
    trx,
    { userId: row.user_id, credential: `user_invitation:${row.id}` },
    { action: 'user.invitation_used', targetType: 'user', targetId: row.user_id },
  );
  return { userId: row.user_id, scopes: row.scopes };
}
