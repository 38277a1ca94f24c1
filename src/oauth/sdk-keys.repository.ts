import { sql, type Kysely, type Selectable, type Transaction, type Updateable } from 'kysely';
import type { Database } from '../platform/database/database.js';
import type { PublicJwk, SdkKeyAuthMethod, SdkKeysTable } from './oauth.table.js';
import type { UserStatus } from '../identity/identity.table.js';

export type SdkKeyRow = Selectable<SdkKeysTable>;
type Q = Kysely<Database> | Transaction<Database>;

/** Most SDK keys a user may hold (the database trigger of migration 0003 enforces the same number). */
export const SDK_KEYS_PER_USER = 2;

/** SQLSTATE the `sdk_keys_limit` trigger raises. */
export const SDK_KEY_LIMIT_SQLSTATE = 'TS409';

/** Locks the user's row for the rest of the transaction (serialises key creation per user); false if no such user. */
export async function lockUser(db: Transaction<Database>, userId: string): Promise<boolean> {
  const r = await db.selectFrom('users').select('id').where('id', '=', userId).forUpdate().executeTakeFirst();
  return r !== undefined;
}

export async function countSdkKeys(db: Q, userId: string): Promise<number> {
  const r = await db
    .selectFrom('sdk_keys')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('user_id', '=', userId)
    .executeTakeFirstOrThrow();
  return Number(r.n);
}

export async function insertSdkKey(
  db: Q,
  row: {
    clientId: string;
    userId: string;
    name: string;
    secretHash: Buffer | null;
    scopes: string[];
    organizationId: string | null;
    parentApiTokenId?: string | null;
    expiresAt?: Date | null;
    audiences?: string[] | null;
    publicJwk?: PublicJwk | null;
    dpopBound?: boolean;
  },
): Promise<SdkKeyRow> {
  return db
    .insertInto('sdk_keys')
    .values({
      client_id: row.clientId,
      user_id: row.userId,
      name: row.name,
      secret_hash: row.secretHash,
      scopes: row.scopes,
      organization_id: row.organizationId,
      last_used_at: null,
      tokens_valid_after: null,
      parent_api_token_id: row.parentApiTokenId ?? null,
      expires_at: row.expiresAt ?? null,
      audiences: row.audiences ?? null,
      token_endpoint_auth_method: row.publicJwk ? 'private_key_jwt' : 'client_secret_basic',
      public_jwk: row.publicJwk ? JSON.stringify(row.publicJwk) : null,
      dpop_bound_access_tokens: row.dpopBound ?? false,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function listSdkKeys(db: Q, userId: string): Promise<SdkKeyRow[]> {
  return db.selectFrom('sdk_keys').selectAll().where('user_id', '=', userId).orderBy('created_at').orderBy('id').execute();
}

/** The user's key with this client_id (another user's key is "not found"). */
export async function findSdkKey(db: Q, userId: string, clientId: string, opts: { forUpdate?: boolean } = {}): Promise<SdkKeyRow | undefined> {
  let q = db.selectFrom('sdk_keys').selectAll().where('user_id', '=', userId).where('client_id', '=', clientId);
  if (opts.forUpdate) q = q.forUpdate();
  return q.executeTakeFirst();
}

export async function updateSdkKey(
  db: Q,
  id: string,
  set: Pick<
    Updateable<SdkKeysTable>,
    'name' | 'status' | 'tokens_valid_after' | 'audiences' | 'secret_hash' | 'previous_secret_hash' | 'previous_secret_expires_at' | 'dpop_bound_access_tokens'
  >,
): Promise<SdkKeyRow> {
  return db
    .updateTable('sdk_keys')
    .set({ ...set, updated_at: sql<Date>`now()` })
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirstOrThrow();
}

/**
 * The `tokens_valid_after` a cut-off stamps on each row, the SQL twin of `nextTokensValidAfter`
 * (oauth/access-token.ts): a whole second after `at` and after the row's previous stamp, so it is
 * later than the `iat` of every token the key has issued (issuance may round `iat` up to a stamp).
 */
function nextStamp(at: Date) {
  return sql<Date>`to_timestamp(greatest(floor(${at.getTime()}::float8 / 1000) + 1, ceil(extract(epoch from coalesce(tokens_valid_after, to_timestamp(0)))) + 1))`;
}

/**
 * Stamps `tokens_valid_after` on the user's keys whose tokens may carry `organizationId` as
 * `org_id`: the keys bound to it, and the unbound keys (their tokens carried the owner's only
 * organization at the time they were issued, which may have been this one). Returns their client_ids.
 */
export async function cutOffOrganizationKeys(db: Q, userId: string, organizationId: string, at: Date): Promise<string[]> {
  const rows = await db
    .updateTable('sdk_keys')
    .set({ tokens_valid_after: nextStamp(at), updated_at: sql<Date>`now()` })
    .where('user_id', '=', userId)
    .where((eb) => eb.or([eb('organization_id', '=', organizationId), eb('organization_id', 'is', null)]))
    .returning('client_id')
    .execute();
  return rows.map((r) => r.client_id);
}

export async function deleteSdkKey(db: Q, id: string): Promise<void> {
  await db.deleteFrom('sdk_keys').where('id', '=', id).execute();
}

/** Deletes the keys whose parent is one of these API tokens; returns what the audit trail needs of them. */
export async function deleteSdkKeysOfParents(db: Q, parentIds: readonly string[]) {
  if (parentIds.length === 0) return [];
  return db
    .deleteFrom('sdk_keys')
    .where(sql<boolean>`parent_api_token_id = any(${[...parentIds]}::uuid[])`)
    .returning(['client_id', 'name', 'organization_id', 'parent_api_token_id'])
    .execute();
}

/**
 * Disables every key of a user and stamps `tokens_valid_after`, so every token they issued so
 * far fails for good (enabling a key later does not revive them). Returns the keys.
 */
export async function disableSdkKeysOfUser(db: Q, userId: string, now: Date) {
  return db
    .updateTable('sdk_keys')
    .set({ status: 'disabled', tokens_valid_after: nextStamp(now), updated_at: sql<Date>`now()` })
    .where('user_id', '=', userId)
    .returning(['client_id', 'organization_id'])
    .execute();
}

/** What client authentication and token verification need to know of a key, in one query. */
export interface SdkKeyAuthRow {
  id: string;
  client_id: string;
  user_id: string;
  secret_hash: Buffer | null;
  scopes: string[];
  status: 'enabled' | 'disabled';
  token_endpoint_auth_method: SdkKeyAuthMethod;
  public_jwk: PublicJwk | null;
  dpop_bound_access_tokens: boolean;
  tokens_valid_after: Date | null;
  expires_at: Date | null;
  user_status: UserStatus;
  /** The key's explicit organization, else the owner's only organization, else null. */
  organization_id: string | null;
  /** False when the key is bound to an organization its owner is no longer a member of. */
  organization_binding_valid: boolean;
  audiences: string[] | null;
  previous_secret_hash: Buffer | null;
  previous_secret_expires_at: Date | null;
}

/** What authenticating a client needs of its key and owner, for the keys `where` picks. */
function authRows(db: Q) {
  return db
    .selectFrom('sdk_keys as k')
    .innerJoin('users as u', 'u.id', 'k.user_id')
    .select([
      'k.id',
      'k.client_id',
      'k.user_id',
      'k.secret_hash',
      'k.scopes',
      'k.status',
      'k.token_endpoint_auth_method',
      'k.public_jwk',
      'k.dpop_bound_access_tokens',
      'k.tokens_valid_after',
      'k.expires_at',
      'k.audiences',
      'k.previous_secret_hash',
      'k.previous_secret_expires_at',
      'u.status as user_status',
      sql<string | null>`coalesce(k.organization_id, (
        select case when count(*) = 1 then min(m.organization_id::text)::uuid end
        from memberships m where m.user_id = k.user_id))`.as('organization_id'),
      sql<boolean>`(k.organization_id is null or exists (
        select 1 from memberships m where m.user_id = k.user_id and m.organization_id = k.organization_id))`.as('organization_binding_valid'),
    ]);
}

/** The keys with these client_ids (those that exist), in one statement. */
export async function findSdkKeysForAuth(db: Q, clientIds: readonly string[]): Promise<SdkKeyAuthRow[]> {
  if (clientIds.length === 0) return [];
  return (await authRows(db)
    .where(sql<boolean>`k.client_id = any(${[...clientIds]}::text[])`)
    .execute()) as SdkKeyAuthRow[];
}

/** Up to `limit` keys, the most recently used first (never-used ones last, newest first). */
export async function recentSdkKeysForAuth(db: Q, limit: number): Promise<SdkKeyAuthRow[]> {
  return (await authRows(db)
    .orderBy(sql`k.last_used_at desc nulls last`)
    .orderBy('k.created_at', 'desc')
    .limit(limit)
    .execute()) as SdkKeyAuthRow[];
}
