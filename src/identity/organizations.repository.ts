import type { Kysely, Selectable, Transaction } from 'kysely';
import type { Database } from '../platform/database/database.js';
import type { MembershipsTable, OrganizationsTable, Role } from './identity.table.js';

export type Organization = Selectable<OrganizationsTable>;
export type Membership = Selectable<MembershipsTable>;
type Q = Kysely<Database> | Transaction<Database>;

export const ROLES: readonly Role[] = ['owner', 'maintainer', 'member'];

export async function createOrganization(db: Q, name: string): Promise<Organization> {
  return db.insertInto('organizations').values({ name: name.trim() }).returningAll().executeTakeFirstOrThrow();
}

export async function findOrganization(db: Q, id: string): Promise<Organization | undefined> {
  return db.selectFrom('organizations').selectAll().where('id', '=', id).executeTakeFirst();
}

/** Adds a member, or changes the role of an existing one. */
export async function upsertMembership(db: Q, organizationId: string, userId: string, role: Role): Promise<Membership> {
  return db
    .insertInto('memberships')
    .values({ organization_id: organizationId, user_id: userId, role })
    .onConflict((oc) => oc.columns(['organization_id', 'user_id']).doUpdateSet({ role }))
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function findMembership(db: Q, organizationId: string, userId: string): Promise<Membership | undefined> {
  return db.selectFrom('memberships').selectAll().where('organization_id', '=', organizationId).where('user_id', '=', userId).executeTakeFirst();
}

/** The user's organizations with the user's role in each, oldest membership first. */
export async function organizationsOfUser(db: Q, userId: string): Promise<Array<Organization & { role: Role }>> {
  return db
    .selectFrom('memberships')
    .innerJoin('organizations', 'organizations.id', 'memberships.organization_id')
    .select(['organizations.id', 'organizations.name', 'organizations.created_at', 'memberships.role'])
    .where('memberships.user_id', '=', userId)
    .orderBy('memberships.created_at')
    .orderBy('organizations.id')
    .execute();
}
