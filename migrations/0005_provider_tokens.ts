import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application code here.

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('provider_tokens')
    .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('owner_type', 'text', (c) => c.notNull().check(sql`owner_type in ('user', 'organization')`))
    .addColumn('user_id', 'uuid', (c) => c.references('users.id').onDelete('cascade'))
    .addColumn('organization_id', 'uuid', (c) => c.references('organizations.id').onDelete('cascade'))
    .addColumn('provider', 'text', (c) => c.notNull().check(sql`provider ~ '^[a-z][a-z0-9_]{1,62}$'`))
    .addColumn('label', 'text', (c) => c.check(sql`length(label) between 1 and 200`))
    // nonce (12) || AES-256-GCM ciphertext || tag (16); the plaintext is never stored.
    .addColumn('ciphertext', 'bytea', (c) => c.notNull().check(sql`length(ciphertext) >= 29`))
    .addColumn('key_id', 'text', (c) => c.notNull())
    .addColumn('hint', 'text', (c) => c.check(sql`length(hint) <= 8`))
    .addColumn('created_by', 'uuid', (c) => c.references('users.id').onDelete('set null'))
    .addColumn('updated_by', 'uuid', (c) => c.references('users.id').onDelete('set null'))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('last_used_at', 'timestamptz')
    .addCheckConstraint(
      'provider_tokens_owner_check',
      sql`(owner_type = 'user' and user_id is not null and organization_id is null)
        or (owner_type = 'organization' and organization_id is not null and user_id is null)`,
    )
    .execute();
  await db.schema
    .createIndex('provider_tokens_user_provider_key')
    .unique()
    .on('provider_tokens')
    .columns(['user_id', 'provider'])
    .where(sql.ref('user_id'), 'is not', null)
    .execute();
  await db.schema
    .createIndex('provider_tokens_org_provider_key')
    .unique()
    .on('provider_tokens')
    .columns(['organization_id', 'provider'])
    .where(sql.ref('organization_id'), 'is not', null)
    .execute();
  // Rewrap finds rows sealed under an old master key.
  await db.schema.createIndex('provider_tokens_key_idx').on('provider_tokens').column('key_id').execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('provider_tokens').execute();
}
