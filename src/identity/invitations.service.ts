import type { Transaction } from 'kysely';
import type { Clock } from '../platform/clock.js';
import type { Database } from '../platform/database/database.js';
import { recordAudit, type Actor } from '../platform/database/audit.repository.js';
import { publishChange, type ChangeEventType } from '../platform/database/notifications.js';
import { lockOrganization } from './memberships.repository.js';
import {
  deleteInvitation,
  findInvitation,
  listOrganizationInvitations,
  listUserInvitations,
  upsertInvitation,
  type InvitationView,
} from './invitations.repository.js';
import { findMembership, type Organization } from './organizations.repository.js';
import { findUserById } from './users.repository.js';
import type { Role } from './identity.table.js';
import { conflict, forbidden, notFound } from '../platform/errors/api-error.js';
import {
  actorRole,
  applyMembershipChange,
  membershipChangeDenied,
  requireMembership,
  type MembershipActor,
  type MembershipChange,
  type MembershipDeps,
} from './memberships.service.js';

/** How long an invitation can be accepted. */
export const INVITATION_TTL_MS = 7 * 24 * 3600_000;

/** Change-event type for invitations (id = invitation id, user_id = the invited user). */
export const INVITATION_EVENT = 'invitation' satisfies ChangeEventType;

export type PutMemberResult = { kind: 'changed'; change: MembershipChange } | { kind: 'invited'; invitation: InvitationView };

/**
 * `PUT /api/organizations/{orgId}/members/{userId}` for a user acting through their role: a
 * member's role changes at once; anyone else is invited, never added (membership needs the
 * user's consent). Both are subject to the same role matrix ({@link membershipChangeDenied}).
 */
export async function putMember(
  deps: MembershipDeps,
  actor: Extract<MembershipActor, { kind: 'user' }>,
  organizationId: string,
  targetUserId: string,
  role: Role,
): Promise<PutMemberResult> {
  return deps.db.transaction().execute(async (trx) => {
    const org = await lockOrganization(trx, organizationId);
    if (!org) throw notFound('organization');
    const current = (await findMembership(trx, organizationId, targetUserId))?.role ?? null;
    const own = await actorRole(trx, actor, organizationId, targetUserId, current);
    const denied = membershipChangeDenied(own, actor.userId === targetUserId, current, role);
    if (denied) throw forbidden(denied);
    if (current !== null) {
      return { kind: 'changed', change: await applyMembershipChange(trx, deps, actor, organizationId, targetUserId, current, role, {}) };
    }
    return { kind: 'invited', invitation: await invite(trx, deps.clock, actor.audit, actor.userId, org, targetUserId, role) };
  });
}

/**
 * An operator invites a user (instead of adding them directly). 404 for an unknown organization
 * or user, 409 when the user is a member already.
 */
export async function inviteAsOperator(deps: MembershipDeps, audit: Actor, organizationId: string, targetUserId: string, role: Role): Promise<InvitationView> {
  return deps.db.transaction().execute(async (trx) => {
    const org = await lockOrganization(trx, organizationId);
    if (!org) throw notFound('organization');
    if (await findMembership(trx, organizationId, targetUserId)) {
      throw conflict('the user is a member of the organization already; change their role instead');
    }
    return invite(trx, deps.clock, audit, null, org, targetUserId, role);
  });
}

/** Creates (or renews) the invitation in `trx`, which holds the organization's row lock. */
async function invite(
  trx: Transaction<Database>,
  clock: Clock,
  audit: Actor,
  invitedBy: string | null,
  org: Organization,
  targetUserId: string,
  role: Role,
): Promise<InvitationView> {
  if (!(await findUserById(trx, targetUserId))) throw notFound('user');
  const now = clock.now();
  const row = await upsertInvitation(trx, {
    organizationId: org.id,
    userId: targetUserId,
    role,
    invitedBy,
    createdAt: new Date(now),
    expiresAt: new Date(now + INVITATION_TTL_MS),
  });
  await recordAudit(trx, audit, {
    action: 'invitation.create',
    targetType: 'user',
    targetId: targetUserId,
    organizationId: org.id,
    details: { invitation_id: row.id, role, expires_at: row.expires_at.toISOString() },
  });
  await publishChange(trx, { type: INVITATION_EVENT, id: row.id, user_id: targetUserId });
  return { ...row, organization_name: org.name };
}

/** The organization's pending invitations, for its owners and maintainers (members 403, others 404). */
export async function organizationInvitations(deps: MembershipDeps, userId: string, organizationId: string): Promise<InvitationView[]> {
  const own = await requireMembership(deps.db, organizationId, userId);
  if (own === 'member') throw forbidden('only owners and maintainers can manage invitations');
  return listOrganizationInvitations(deps.db, organizationId, new Date(deps.clock.now()));
}

/**
 * Cancels an invitation of the organization (owners; maintainers except invitations to become
 * owner). Non-members 404, members 403, an invitation of another organization 404.
 */
export async function cancelInvitation(
  deps: MembershipDeps,
  actor: Extract<MembershipActor, { kind: 'user' }>,
  organizationId: string,
  invitationId: string,
): Promise<void> {
  await deps.db.transaction().execute(async (trx) => {
    const org = await lockOrganization(trx, organizationId);
    if (!org) throw notFound('organization');
    const own = (await findMembership(trx, organizationId, actor.userId))?.role;
    if (!own) throw notFound('organization');
    if (own === 'member') throw forbidden('only owners and maintainers can manage invitations');
    const inv = await findInvitation(trx, invitationId);
    if (!inv || inv.organization_id !== organizationId) throw notFound('invitation');
    if (own === 'maintainer' && inv.role === 'owner') throw forbidden('only owners can cancel an invitation to become owner');
    await deleteInvitation(trx, inv.id);
    await recordAudit(trx, actor.audit, {
      action: 'invitation.cancel',
      targetType: 'user',
      targetId: inv.user_id,
      organizationId,
      details: { invitation_id: inv.id, role: inv.role },
    });
    await publishChange(trx, { type: INVITATION_EVENT, id: inv.id, user_id: inv.user_id });
  });
}

/** The user's own pending invitations. */
export async function myInvitations(deps: MembershipDeps, userId: string): Promise<InvitationView[]> {
  return listUserInvitations(deps.db, userId, new Date(deps.clock.now()));
}

/**
 * The invited user accepts (membership with the invitation's role) or declines. An invitation
 * that does not exist, is someone else's, has expired or was cancelled is 404 alike. Accepting
 * goes through the same membership path as operator adds (audit, change event that refreshes
 * every instance's cached organization ids).
 */
export async function respondToInvitation(
  deps: MembershipDeps,
  audit: Actor,
  userId: string,
  invitationId: string,
  accept: boolean,
): Promise<MembershipChange | null> {
  const usable = (inv: { user_id: string; expires_at: Date } | undefined) =>
    inv !== undefined && inv.user_id === userId && inv.expires_at.getTime() > deps.clock.now();
  const first = await findInvitation(deps.db, invitationId);
  if (!usable(first)) throw notFound('invitation');
  return deps.db.transaction().execute(async (trx) => {
    // The organization's row lock first, as every membership change takes it.
    const org = await lockOrganization(trx, first!.organization_id);
    const inv = org ? await deleteInvitation(trx, invitationId) : undefined;
    if (!usable(inv)) throw notFound('invitation');
    await recordAudit(trx, audit, {
      action: accept ? 'invitation.accept' : 'invitation.decline',
      targetType: 'user',
      targetId: userId,
      organizationId: inv!.organization_id,
      details: { invitation_id: inv!.id, role: inv!.role },
    });
    await publishChange(trx, { type: INVITATION_EVENT, id: inv!.id, user_id: userId });
    if (!accept) return null;
    const current = (await findMembership(trx, inv!.organization_id, userId))?.role ?? null;
    if (current !== null) return { organizationId: inv!.organization_id, userId, role: current, previousRole: current, sdkKeysCutOff: [] };
    return applyMembershipChange(trx, deps, { kind: 'invitation', audit }, inv!.organization_id, userId, null, inv!.role, {
      invitation_id: inv!.id,
      invited_by: inv!.invited_by,
    });
  });
}
