import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application code here.

// An SDK key may list the audiences (resource servers) its tokens may name; null: any the
// operator allows. Rotating its secret keeps the previous secret's hash until a chosen instant,
// so both authenticate during the overlap and only the new one after it.
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .alterTable('sdk_keys')
    .addColumn('audiences', sql`text[]`)
    .addColumn('previous_secret_hash', 'bytea')
    .addColumn('previous_secret_expires_at', 'timestamptz')
    .execute();
  await sql`alter table sdk_keys add constraint sdk_keys_previous_secret_pair
    check ((previous_secret_hash is null) = (previous_secret_expires_at is null))`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`alter table sdk_keys drop constraint sdk_keys_previous_secret_pair`.execute(db);
  await db.schema.alterTable('sdk_keys').dropColumn('previous_secret_expires_at').dropColumn('previous_secret_hash').dropColumn('audiences').execute();
}
