import { type Kysely } from 'kysely';

// Frozen in time: never import application code here.

// A credential created through the API with an API token (or a session made from one) records
// that token as its parent: it never outlives it nor holds more scopes, and revoking the parent
// ends it. SDK keys get an expiry, the parent's at most, which their tokens never outlive.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .alterTable('api_tokens')
    .addColumn('parent_api_token_id', 'uuid', (c) => c.references('api_tokens.id').onDelete('cascade'))
    .execute();
  await db.schema
    .alterTable('sdk_keys')
    .addColumn('parent_api_token_id', 'uuid', (c) => c.references('api_tokens.id').onDelete('cascade'))
    .addColumn('expires_at', 'timestamptz')
    .execute();
  await db.schema.createIndex('api_tokens_parent_idx').on('api_tokens').column('parent_api_token_id').where('parent_api_token_id', 'is not', null).execute();
  await db.schema.createIndex('sdk_keys_parent_idx').on('sdk_keys').column('parent_api_token_id').where('parent_api_token_id', 'is not', null).execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('sdk_keys_parent_idx').execute();
  await db.schema.dropIndex('api_tokens_parent_idx').execute();
  await db.schema.alterTable('sdk_keys').dropColumn('expires_at').dropColumn('parent_api_token_id').execute();
  await db.schema.alterTable('api_tokens').dropColumn('parent_api_token_id').execute();
}
