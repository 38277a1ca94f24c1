import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application code here.

/**
 * Proof of possession: the single-use record of DPoP proofs and client assertions (shared by every
 * instance, so a replay is refused whichever instance it reaches), and SDK keys that authenticate
 * with a registered public key (private_key_jwt) or whose tokens must be DPoP-bound.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('used_jtis')
    // What kind of JWT the jti belongs to ('dpop', 'client_assertion').
    .addColumn('namespace', 'text', (c) => c.notNull())
    // SHA-256 of the issuer of the JWT (key thumbprint or client_id) and its jti; never the raw jti.
    .addColumn('jti_hash', 'bytea', (c) => c.notNull())
    // After this the JWT is refused on its own time claims, so the row may go.
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .addPrimaryKeyConstraint('used_jtis_pkey', ['namespace', 'jti_hash'])
    .execute();
  await db.schema.createIndex('used_jtis_expires_idx').on('used_jtis').column('expires_at').execute();

  await db.schema
    .alterTable('sdk_keys')
    .addColumn('token_endpoint_auth_method', 'text', (c) =>
      c
        .notNull()
        .defaultTo('client_secret_basic')
        .check(sql`token_endpoint_auth_method in ('client_secret_basic', 'private_key_jwt')`),
    )
    // The public JWK of a private_key_jwt key (public members only).
    .addColumn('public_jwk', 'jsonb')
    .addColumn('dpop_bound_access_tokens', 'boolean', (c) => c.notNull().defaultTo(false))
    .execute();
  await db.schema
    .alterTable('sdk_keys')
    .alterColumn('secret_hash', (c) => c.dropNotNull())
    .execute();
  await sql`alter table sdk_keys add constraint sdk_keys_auth_material check (
    (token_endpoint_auth_method = 'private_key_jwt' and public_jwk is not null and secret_hash is null)
    or (token_endpoint_auth_method = 'client_secret_basic' and public_jwk is null and secret_hash is not null))`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`alter table sdk_keys drop constraint sdk_keys_auth_material`.execute(db);
  await db.deleteFrom('sdk_keys').where('secret_hash', 'is', null).execute();
  await db.schema
    .alterTable('sdk_keys')
    .alterColumn('secret_hash', (c) => c.setNotNull())
    .execute();
  await db.schema.alterTable('sdk_keys').dropColumn('dpop_bound_access_tokens').dropColumn('public_jwk').dropColumn('token_endpoint_auth_method').execute();
  await db.schema.dropTable('used_jtis').execute();
}
