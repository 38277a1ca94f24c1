import type { Insertable, Selectable } from 'kysely';
import type { Kysely, Transaction } from 'kysely';
import type { Database, Db } from '../platform/database/database.js';
import type { UsersTable, UserStatus } from './identity.table.js';

export type User = Selectable<UsersTable>;
type Q = Kysely<Database> | Transaction<Database>;

export function normaliseEmail(email: string): string {
  return email.trim().toLowerCase();
}

export async function createUser(db: Q, user: Pick<Insertable<UsersTable>, 'email' | 'name'>): Promise<User> {
  return db
    .insertInto('users')
    .values({ email: normaliseEmail(user.email), name: user.name.trim() })
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function findUserById(db: Q, id: string): Promise<User | undefined> {
  return db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
}

export async function findUserByEmail(db: Q, email: string): Promise<User | undefined> {
  return db.selectFrom('users').selectAll().where('email', '=', normaliseEmail(email)).executeTakeFirst();
}

export async function listUsers(db: Db, opts: { limit: number; after?: string }): Promise<User[]> {
  let q = db.selectFrom('users').selectAll().orderBy('id').limit(opts.limit);
  if (opts.after) q = q.where('id', '>', opts.after);
  return q.execute();
}

export async function setUserStatus(db: Q, id: string, status: UserStatus): Promise<User | undefined> {
  return db.updateTable('users').set({ status, updated_at: new Date() }).where('id', '=', id).returningAll().executeTakeFirst();
}

/**
 * Locks an active user's row (FOR SHARE) for the rest of the transaction, so a suspension waits
 * for it (and then sees what it created); false when the user is not active.
 */
export async function lockActiveUser(db: Transaction<Database>, id: string): Promise<boolean> {
  const r = await db.selectFrom('users').select('id').where('id', '=', id).where('status', '=', 'active').forShare().executeTakeFirst();
  return r !== undefined;
}
