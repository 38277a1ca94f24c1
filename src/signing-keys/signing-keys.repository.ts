import type { Kysely, Selectable, Transaction } from 'kysely';
import type { Database } from '../platform/database/database.js';
import type { SigningKeyState, SigningKeysTable } from './signing-keys.table.js';

export type SigningKeyRow = Selectable<SigningKeysTable>;
type Q = Kysely<Database> | Transaction<Database>;

/** Keys in the given states (default: every key that is published or signs), oldest first. */
export async function listSigningKeys(db: Q, states: readonly SigningKeyState[] = ['next', 'active', 'retired']): Promise<SigningKeyRow[]> {
  return db
    .selectFrom('signing_keys')
    .selectAll()
    .where('state', 'in', [...states])
    .orderBy('created_at')
    .orderBy('kid')
    .execute();
}

export async function findActiveSigningKey(db: Q): Promise<SigningKeyRow | undefined> {
  return db.selectFrom('signing_keys').selectAll().where('state', '=', 'active').executeTakeFirst();
}

export async function insertSigningKey(
  db: Q,
  row: {
    kid: string;
    alg: string;
    state: SigningKeyState;
    publicJwk: Record<string, unknown>;
    privateKeyCiphertext: Buffer;
    masterKeyId: string;
    activateAfter: Date | null;
    activatedAt: Date | null;
  },
): Promise<SigningKeyRow> {
  return db
    .insertInto('signing_keys')
    .values({
      kid: row.kid,
      alg: row.alg,
      state: row.state,
      public_jwk: JSON.stringify(row.publicJwk),
      private_key_ciphertext: row.privateKeyCiphertext,
      master_key_id: row.masterKeyId,
      activate_after: row.activateAfter,
      activated_at: row.activatedAt,
      retired_at: null,
      not_after: null,
      revoked_at: null,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}

/** Signing keys per master key id (every state: revoked private keys stay sealed too). */
export async function countSigningKeysByMasterKey(db: Q): Promise<Record<string, number>> {
  const rows = await db
    .selectFrom('signing_keys')
    .select(['master_key_id', (eb) => eb.fn.countAll<number>().as('n')])
    .groupBy('master_key_id')
    .execute();
  return Object.fromEntries(rows.map((r) => [r.master_key_id, Number(r.n)]));
}

/** Locks a batch of keys sealed under another master key, by kid. */
export async function lockSigningKeysToRewrap(db: Q, currentKeyId: string, afterKid: string | null, limit: number): Promise<SigningKeyRow[]> {
  let q = db.selectFrom('signing_keys').selectAll().where('master_key_id', '<>', currentKeyId).orderBy('kid').limit(limit).forUpdate();
  if (afterKid) q = q.where('kid', '>', afterKid);
  return q.execute();
}

export async function replacePrivateKeyCiphertext(db: Q, kid: string, fromKeyId: string, ciphertext: Buffer, keyId: string): Promise<boolean> {
  const r = await db
    .updateTable('signing_keys')
    .set({ private_key_ciphertext: ciphertext, master_key_id: keyId })
    .where('kid', '=', kid)
    .where('master_key_id', '=', fromKeyId)
    .executeTakeFirst();
  return Number(r.numUpdatedRows) === 1;
}

/** Every key row, whatever its state (operators' list), oldest first. */
export async function listAllSigningKeys(db: Q): Promise<SigningKeyRow[]> {
  return listSigningKeys(db, ['next', 'active', 'retired', 'revoked']);
}

export async function findSigningKey(db: Q, kid: string): Promise<SigningKeyRow | undefined> {
  return db.selectFrom('signing_keys').selectAll().where('kid', '=', kid).executeTakeFirst();
}

/** Moves a key from one state to another (no-op and `undefined` when it is not in `from` any more). */
export async function setSigningKeyState(
  db: Q,
  kid: string,
  from: SigningKeyState,
  patch: Partial<Pick<SigningKeyRow, 'state' | 'activate_after' | 'activated_at' | 'retired_at' | 'not_after' | 'revoked_at'>>,
): Promise<SigningKeyRow | undefined> {
  return db.updateTable('signing_keys').set(patch).where('kid', '=', kid).where('state', '=', from).returningAll().executeTakeFirst();
}

/** Deletes retired and revoked keys whose `not_after` has passed; returns what was removed. */
export async function deleteExpiredSigningKeys(db: Q, now: Date): Promise<Array<Pick<SigningKeyRow, 'kid' | 'state' | 'alg'>>> {
  return db
    .deleteFrom('signing_keys')
    .where('state', 'in', ['retired', 'revoked'])
    .where('not_after', 'is not', null)
    .where('not_after', '<=', now)
    .returning(['kid', 'state', 'alg'])
    .execute();
}
