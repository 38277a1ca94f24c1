import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application code here.

/**
 * Invitations to join an organization. An invitation is not a membership: `memberships` holds
 * only accepted ones (every membership existing before this migration counts as accepted). An
 * invitation row lives until it is accepted, declined or cancelled (then it is deleted; the audit
 * log keeps its history) or replaced by a new invitation for the same user and organization.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('organization_invitations')
    .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('organization_id', 'uuid', (c) => c.notNull().references('organizations.id').onDelete('cascade'))
    .addColumn('user_id', 'uuid', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('role', 'text', (c) => c.notNull().check(sql`role in ('owner', 'maintainer', 'member')`))
    // Null when an operator (CLI) invited, or the inviting user was deleted.
    .addColumn('invited_by', 'uuid', (c) => c.references('users.id').onDelete('set null'))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now() + interval '7 days'`))
    .addUniqueConstraint('organization_invitations_org_user_key', ['organization_id', 'user_id'])
    .execute();
  await db.schema.createIndex('organization_invitations_user_idx').on('organization_invitations').column('user_id').execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('organization_invitations').execute();
}
