import type { Kysely, Transaction } from 'kysely';
import type { Database } from '../platform/database/database.js';
import { issueApiToken } from '../api-tokens/api-tokens.service.js';
import { lockLiveApiToken } from '../api-tokens/api-tokens.repository.js';
import { peopleDb, peopleTrx, type PeopleQ } from './db.js';
import { normaliseEmail } from '../identity/users.repository.js';

/**
 * What a password sign-in needs about an email, in one query whether or not anyone has it (so
 * known and unknown emails cost the same): the user, their status and password hash.
 */
export async function passwordAccountByEmail(db: Kysely<Database>, email: string) {
  return peopleDb(db)
    .selectFrom('users')
    .leftJoin('people_accounts', 'people_accounts.user_id', 'users.id')
    .select(['users.id', 'users.status', 'people_accounts.password_hash'])
    .where('users.email', '=', normaliseEmail(email))
    .executeTakeFirst();
}

/** The sign-in state of a user: password hash, console grant, passkey count. */
export async function accountOf(db: PeopleQ, userId: string) {
  const acc = await db.selectFrom('people_accounts').select(['password_hash', 'grant_api_token_id']).where('user_id', '=', userId).executeTakeFirst();
  const passkeys = await db
    .selectFrom('passkeys')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('user_id', '=', userId)
    .executeTakeFirstOrThrow();
  return { passwordHash: acc?.password_hash ?? null, grantApiTokenId: acc?.grant_api_token_id ?? null, passkeys: Number(passkeys.n) };
}

/**
 * The live API token the user's console sessions act for, made now when the user has none or it
 * was revoked or expired. Without `parentApiTokenId` (an operator's invitation) it is a root token
 * with `scopes` that never expires; with it (a person signed in with an API token adding a
 * passkey or password) it is a child of that token: its scopes and expiry, revoked with it, so a
 * sign-in method never outlives or outranks the credential that set it up. Its secret is
 * discarded at once: nobody ever sees it.
 */
export async function ensureGrant(
  trx: Transaction<Database>,
  pepper: Buffer,
  userId: string,
  scopes: readonly string[],
  now: Date,
  parentApiTokenId?: string,
): Promise<string> {
  const p = peopleTrx(trx);
  await p
    .insertInto('people_accounts')
    .values({ user_id: userId })
    .onConflict((oc) => oc.column('user_id').doNothing())
    .execute();
  const acc = await p.selectFrom('people_accounts').select('grant_api_token_id').where('user_id', '=', userId).forUpdate().executeTakeFirstOrThrow();
  if (acc.grant_api_token_id && (await lockLiveApiToken(trx, userId, acc.grant_api_token_id, now))) return acc.grant_api_token_id;
  let grant: { scopes: string[]; expiresAt: Date | null; parentApiTokenId: string | null } = { scopes: [...scopes], expiresAt: null, parentApiTokenId: null };
  if (parentApiTokenId !== undefined) {
    const parent = await lockLiveApiToken(trx, userId, parentApiTokenId, now);
    if (!parent) throw new Error('the API token behind this session is no longer live');
    grant = { scopes: [...parent.scopes], expiresAt: parent.expires_at, parentApiTokenId: parent.id };
  }
  const { row } = await issueApiToken(trx, pepper, { userId, name: 'Console sign-in', ...grant });
  await p.updateTable('people_accounts').set({ grant_api_token_id: row.id, updated_at: now }).where('user_id', '=', userId).execute();
  return row.id;
}

/** The live console grant of a user, or null (none yet, or revoked, or expired). */
export async function liveGrant(db: Kysely<Database>, userId: string, now: Date): Promise<string | null> {
  return db.transaction().execute(async (trx) => {
    const acc = await peopleTrx(trx).selectFrom('people_accounts').select('grant_api_token_id').where('user_id', '=', userId).executeTakeFirst();
    if (!acc?.grant_api_token_id) return null;
    return (await lockLiveApiToken(trx, userId, acc.grant_api_token_id, now)) ? acc.grant_api_token_id : null;
  });
}

export async function setPasswordHash(trx: Transaction<Database>, userId: string, passwordHash: string, now: Date): Promise<void> {
  await peopleTrx(trx)
    .insertInto('people_accounts')
    .values({ user_id: userId, password_hash: passwordHash })
    .onConflict((oc) => oc.column('user_id').doUpdateSet({ password_hash: passwordHash, updated_at: now }))
    .execute();
}
