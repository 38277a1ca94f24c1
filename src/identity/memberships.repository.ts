import type { Kysely, Transaction } from 'kysely';
import type { Database } from '../platform/database/database.js';
import type { Organization } from './organizations.repository.js';
import type { Role } from './identity.table.js';

type Q = Kysely<Database> | Transaction<Database>;

export interface MemberRow {
  user_id: string;
  email: string;
  name: string;
  role: Role;
  created_at: Date;
}

/**
 * Locks the organization row for the rest of the transaction: every membership change takes this
 * lock first, so changes to one organization's members run one after another (the last-owner
 * rule is then checked against a count nobody else can change meanwhile).
 */
export async function lockOrganization(trx: Transaction<Database>, id: string): Promise<Organization | undefined> {
  return trx.selectFrom('organizations').selectAll().where('id', '=', id).forNoKeyUpdate().executeTakeFirst();
}

export async function countOwners(db: Q, organizationId: string): Promise<number> {
  const r = await db
    .selectFrom('memberships')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('organization_id', '=', organizationId)
    .where('role', '=', 'owner')
    .executeTakeFirstOrThrow();
  return Number(r.n);
}

export async function listMembers(db: Q, organizationId: string): Promise<MemberRow[]> {
  return db
    .selectFrom('memberships')
    .innerJoin('users', 'users.id', 'memberships.user_id')
    .select(['memberships.user_id', 'users.email', 'users.name', 'memberships.role', 'memberships.created_at'])
    .where('memberships.organization_id', '=', organizationId)
    .orderBy('memberships.created_at')
    .orderBy('memberships.user_id')
    .execute();
}

export async function deleteMembership(db: Q, organizationId: string, userId: string): Promise<boolean> {
  const r = await db.deleteFrom('memberships').where('organization_id', '=', organizationId).where('user_id', '=', userId).executeTakeFirst();
  return Number(r.numDeletedRows) === 1;
}

/**
 * Organizations by id (keyset paging), with how many members each has; `nameContains` keeps those
 * whose name contains it, in any case, matched literally (`%` and `_` are not wildcards).
 */
export async function listOrganizations(db: Q, opts: { limit: number; after?: string; nameContains?: string }) {
  let q = db
    .selectFrom('organizations')
    .select((eb) => [
      'organizations.id',
      'organizations.name',
      'organizations.created_at',
      eb.selectFrom('memberships').select(eb.fn.countAll<number>().as('n')).whereRef('memberships.organization_id', '=', 'organizations.id').as('member_count'),
    ])
    .orderBy('organizations.id')
    .limit(opts.limit);
  if (opts.after) q = q.where('organizations.id', '>', opts.after);
  if (opts.nameContains) q = q.where('organizations.name', 'ilike', `%${opts.nameContains.replace(/[\\%_]/g, (c) => `\\${c}`)}%`);
  return q.execute();
}
