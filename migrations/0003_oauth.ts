import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application code here.

export async function up(db: Kysely<any>): Promise<void> {
  // SDK keys: OAuth confidential clients owned by a user.
  await db.schema
    .createTable('sdk_keys')
    .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('client_id', 'text', (c) =>
      c
        .notNull()
        .unique()
        .check(sql`client_id ~ '^s_[0-9a-f-]{36}$'`),
    )
    .addColumn('user_id', 'uuid', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('name', 'text', (c) => c.notNull().check(sql`length(name) between 1 and 200`))
    .addColumn('secret_hash', 'bytea', (c) => c.notNull().check(sql`length(secret_hash) = 32`))
    .addColumn('scopes', sql`text[]`, (c) => c.notNull())
    // An explicit organization for the org_id claim; null -> the owner's only organization, if one.
    .addColumn('organization_id', 'uuid', (c) => c.references('organizations.id').onDelete('set null'))
    .addColumn('status', 'text', (c) =>
      c
        .notNull()
        .defaultTo('enabled')
        .check(sql`status in ('enabled', 'disabled')`),
    )
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('last_used_at', 'timestamptz')
    // Every token the key issued before this instant is rejected (set when the key is disabled).
    .addColumn('tokens_valid_after', 'timestamptz')
    .execute();
  await db.schema.createIndex('sdk_keys_user_idx').on('sdk_keys').column('user_id').execute();

  // At most two keys per user, whoever inserts: the trigger locks the owner's row, so concurrent
  // inserts for one user run one after the other and each counts the rows committed before it.
  await sql`
    create function sdk_keys_limit() returns trigger language plpgsql as $$
    begin
      perform 1 from users where id = new.user_id for update;
      if (select count(*) from sdk_keys where user_id = new.user_id) >= 2 then
        raise exception 'a user may hold at most 2 SDK keys' using errcode = 'TS409', constraint = 'sdk_keys_per_user_limit';
      end if;
      return new;
    end
    $$`.execute(db);
  await sql`create trigger sdk_keys_limit before insert on sdk_keys for each row execute function sdk_keys_limit()`.execute(db);

  // Signing keys: next -> active -> retired -> (removed); revoked for emergencies.
  await db.schema
    .createTable('signing_keys')
    .addColumn('kid', 'text', (c) => c.primaryKey())
    .addColumn('alg', 'text', (c) => c.notNull().check(sql`alg in ('EdDSA', 'ES256', 'RS256')`))
    .addColumn('state', 'text', (c) => c.notNull().check(sql`state in ('next', 'active', 'retired', 'revoked')`))
    .addColumn('public_jwk', 'jsonb', (c) => c.notNull())
    // AES-256-GCM(master key, PKCS#8 DER), aad binds it to the kid.
    .addColumn('private_key_ciphertext', 'bytea', (c) => c.notNull())
    .addColumn('master_key_id', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    // When the key may start signing (end of its pre-publication window).
    .addColumn('activate_after', 'timestamptz')
    .addColumn('activated_at', 'timestamptz')
    .addColumn('retired_at', 'timestamptz')
    // A retired key stays published until then (the last token it signed has expired).
    .addColumn('not_after', 'timestamptz')
    .addColumn('revoked_at', 'timestamptz')
    .execute();
  // Exactly one signer, even when instances race.
  await sql`create unique index signing_keys_one_active on signing_keys ((true)) where state = 'active'`.execute(db);

  // jti denylist (RFC 7009 revocation), pruned after expiry.
  await db.schema
    .createTable('revoked_tokens')
    .addColumn('jti', 'text', (c) => c.primaryKey())
    .addColumn('client_id', 'text')
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .addColumn('revoked_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema.createIndex('revoked_tokens_expires_idx').on('revoked_tokens').column('expires_at').execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('revoked_tokens').execute();
  await db.schema.dropTable('signing_keys').execute();
  await db.schema.dropTable('sdk_keys').execute();
  await sql`drop function if exists sdk_keys_limit()`.execute(db);
}
