import { sql, type Kysely, type Selectable, type Transaction } from 'kysely';
import type { Database } from '../platform/database/database.js';
import type { ProviderTokenOwnerType, ProviderTokensTable } from './provider-tokens.table.js';

export type ProviderTokenRow = Selectable<ProviderTokensTable>;
type Q = Kysely<Database> | Transaction<Database>;

/** Whose credential: a user's own, or an organization's. */
export interface ProviderTokenOwner {
  type: ProviderTokenOwnerType;
  id: string;
}

const ownerColumn = (o: ProviderTokenOwner) => (o.type === 'user' ? 'user_id' : 'organization_id') as 'user_id' | 'organization_id';

export async function findProviderToken(db: Q, owner: ProviderTokenOwner, provider: string): Promise<ProviderTokenRow | undefined> {
  return db
    .selectFrom('provider_tokens')
    .selectAll()
    .where(ownerColumn(owner), '=', owner.id)
    .where('owner_type', '=', owner.type)
    .where('provider', '=', provider)
    .executeTakeFirst();
}

export async function listProviderTokens(db: Q, owner: ProviderTokenOwner): Promise<ProviderTokenRow[]> {
  return db
    .selectFrom('provider_tokens')
    .selectAll()
    .where(ownerColumn(owner), '=', owner.id)
    .where('owner_type', '=', owner.type)
    .orderBy('provider')
    .execute();
}

/**
 * Creates or replaces the owner's credential for `provider` in one statement (safe under
 * concurrent writers). `created` tells which happened.
 */
export async function upsertProviderToken(
  db: Q,
  owner: ProviderTokenOwner,
  row: { provider: string; label: string | null; ciphertext: Buffer; keyId: string; hint: string | null; actorUserId: string | null; now: Date },
): Promise<ProviderTokenRow & { created: boolean }> {
  const col = ownerColumn(owner);
  const result = await db
    .insertInto('provider_tokens')
    .values({
      owner_type: owner.type,
      user_id: owner.type === 'user' ? owner.id : null,
      organization_id: owner.type === 'organization' ? owner.id : null,
      provider: row.provider,
      label: row.label,
      ciphertext: row.ciphertext,
      key_id: row.keyId,
      hint: row.hint,
      created_by: row.actorUserId,
      updated_by: row.actorUserId,
      created_at: row.now,
      updated_at: row.now,
      last_used_at: null,
    })
    .onConflict((oc) =>
      oc.columns([col, 'provider']).where(col, 'is not', null).doUpdateSet({
        label: row.label,
        ciphertext: row.ciphertext,
        key_id: row.keyId,
        hint: row.hint,
        updated_by: row.actorUserId,
        updated_at: row.now,
      }),
    )
    .returningAll()
    // xmax = 0 only for a freshly inserted tuple.
    .returning(sql<boolean>`(xmax = 0)`.as('created'))
    .executeTakeFirstOrThrow();
  return result;
}

export async function deleteProviderToken(db: Q, owner: ProviderTokenOwner, provider: string): Promise<ProviderTokenRow | undefined> {
  return db
    .deleteFrom('provider_tokens')
    .where(ownerColumn(owner), '=', owner.id)
    .where('owner_type', '=', owner.type)
    .where('provider', '=', provider)
    .returningAll()
    .executeTakeFirst();
}

/** Rows sealed under any key but `currentKeyId`, after `afterId`, locked for rewrapping. */
export async function lockRowsToRewrap(db: Q, currentKeyId: string, afterId: string | null, limit: number): Promise<ProviderTokenRow[]> {
  let q = db.selectFrom('provider_tokens').selectAll().where('key_id', '<>', currentKeyId).orderBy('id').limit(limit).forUpdate();
  if (afterId) q = q.where('id', '>', afterId);
  return q.execute();
}

export async function replaceCiphertext(db: Q, id: string, fromKeyId: string, ciphertext: Buffer, keyId: string): Promise<boolean> {
  const r = await db.updateTable('provider_tokens').set({ ciphertext, key_id: keyId }).where('id', '=', id).where('key_id', '=', fromKeyId).executeTakeFirst();
  return Number(r.numUpdatedRows) === 1;
}

/** Rows per master key id. */
export async function countByKey(db: Q): Promise<Record<string, number>> {
  const rows = await db
    .selectFrom('provider_tokens')
    .select(['key_id', (eb) => eb.fn.countAll<number>().as('n')])
    .groupBy('key_id')
    .execute();
  return Object.fromEntries(rows.map((r) => [r.key_id, Number(r.n)]));
}
