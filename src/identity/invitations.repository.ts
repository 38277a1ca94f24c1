import type { Kysely, Selectable, Transaction } from 'kysely';
import type { Database } from '../platform/database/database.js';
import type { OrganizationInvitationsTable, Role } from './identity.table.js';

type Q = Kysely<Database> | Transaction<Database>;

export type InvitationRow = Selectable<OrganizationInvitationsTable>;
/** An invitation with the name of its organization (what the invited user is shown). */
export type InvitationView = InvitationRow & { organization_name: string };

function views(db: Q) {
  return db
    .selectFrom('organization_invitations as i')
    .innerJoin('organizations as o', 'o.id', 'i.organization_id')
    .select(['i.id', 'i.organization_id', 'o.name as organization_name', 'i.user_id', 'i.role', 'i.invited_by', 'i.created_at', 'i.expires_at']);
}

/**
 * Creates the invitation of this user to this organization, or replaces the one there is (a
 * pending or expired one: new role, inviter, times and id).
 */
export async function upsertInvitation(
  db: Q,
  row: { organizationId: string; userId: string; role: Role; invitedBy: string | null; createdAt: Date; expiresAt: Date },
): Promise<InvitationRow> {
  return db
    .insertInto('organization_invitations')
    .values({
      organization_id: row.organizationId,
      user_id: row.userId,
      role: row.role,
      invited_by: row.invitedBy,
      created_at: row.createdAt,
      expires_at: row.expiresAt,
    })
    .onConflict((oc) =>
      oc.columns(['organization_id', 'user_id']).doUpdateSet((eb) => ({
        id: eb.fn('gen_random_uuid', []),
        role: eb.ref('excluded.role'),
        invited_by: eb.ref('excluded.invited_by'),
        created_at: eb.ref('excluded.created_at'),
        expires_at: eb.ref('excluded.expires_at'),
      })),
    )
    .returningAll()
    .executeTakeFirstOrThrow();
}

/** The invitation with this id, if it exists (expired or not). */
export async function findInvitation(db: Q, id: string): Promise<InvitationRow | undefined> {
  return db.selectFrom('organization_invitations').selectAll().where('id', '=', id).executeTakeFirst();
}

/** Deletes the invitation with this id; returns it, or undefined when there was none. */
export async function deleteInvitation(db: Q, id: string): Promise<InvitationRow | undefined> {
  return db.deleteFrom('organization_invitations').where('id', '=', id).returningAll().executeTakeFirst();
}

/** Deletes the invitation of this user to this organization, if any (a membership supersedes it). */
export async function deleteInvitationOf(db: Q, organizationId: string, userId: string): Promise<InvitationRow | undefined> {
  return db
    .deleteFrom('organization_invitations')
    .where('organization_id', '=', organizationId)
    .where('user_id', '=', userId)
    .returningAll()
    .executeTakeFirst();
}

/** The organization's invitations that have not expired at `now`, oldest first. */
export async function listOrganizationInvitations(db: Q, organizationId: string, now: Date): Promise<InvitationView[]> {
  return views(db).where('i.organization_id', '=', organizationId).where('i.expires_at', '>', now).orderBy('i.created_at').orderBy('i.id').execute();
}

/** The user's invitations that have not expired at `now`, oldest first. */
export async function listUserInvitations(db: Q, userId: string, now: Date): Promise<InvitationView[]> {
  return views(db).where('i.user_id', '=', userId).where('i.expires_at', '>', now).orderBy('i.created_at').orderBy('i.id').execute();
}
