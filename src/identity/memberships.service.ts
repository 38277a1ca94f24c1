import type { Transaction } from 'kysely';
import type { Clock } from '../platform/clock.js';
import type { Database, Db } from '../platform/database/database.js';
import { recordAudit, type Actor } from '../platform/database/audit.repository.js';
import { publishChange } from '../platform/database/notifications.js';
import { findMembership, upsertMembership } from './organizations.repository.js';
import { countOwners, deleteMembership, lockOrganization } from './memberships.repository.js';
import { deleteInvitationOf } from './invitations.repository.js';
import { findUserById } from './users.repository.js';
import type { CascadeRegistry } from '../platform/cascades.js';
import type { Role } from './identity.table.js';
import type { EndedCredentials } from '../platform/auth/forget.js';
import { ApiError, conflict, forbidden, notFound } from '../platform/errors/api-error.js';

/**
 * Who changes membership: an operator (scope `admin`, any change) or a user acting through their
 * own role in the organization (see {@link membershipChangeDenied}).
 */
export type MembershipActor = { kind: 'operator'; audit: Actor } | { kind: 'user'; userId: string; audit: Actor };

/**
 * The role matrix for users managing their own organization. `next` is the new role, or `null`
 * for removal; `current` the target's role now (`null`: not a member). Returns why the change is
 * refused, or `null` when it is allowed. The last-owner rule is checked separately (it binds
 * operators too). For users, "add" means invite: the same rule decides which invitations they may
 * send, and the user becomes a member only by accepting.
 *
 * | actor      | add/change to member or maintainer | grant owner | change/remove an owner | change/remove a maintainer | remove a member | self: step down / leave |
 * |------------|------------------------------------|-------------|------------------------|----------------------------|-----------------|--------------------------|
 * | owner      | yes                                | yes         | yes                    | yes                        | yes             | yes                      |
 * | maintainer | new users and `member`s only       | no          | no                     | only themselves            | yes             | yes                      |
 * | member     | no                                 | no          | no                     | no                         | no              | leave only               |
 */
export function membershipChangeDenied(actorRole: Role, isSelf: boolean, current: Role | null, next: Role | null): string | null {
  if (actorRole === 'owner') return null;
  if (next === 'owner') return 'only owners can make someone an owner';
  if (current === 'owner') return 'only owners can change or remove an owner';
  if (actorRole === 'maintainer') {
    if (isSelf) return null; // stepping down to member, or leaving
    if (current === 'maintainer') return 'only owners can change or remove another maintainer';
    return null; // a new user or a member: add, promote to maintainer, remove
  }
  // member
  if (isSelf && next === null) return null;
  return isSelf ? 'members cannot change their own role' : 'members cannot manage other members';
}

export interface MembershipChange {
  organizationId: string;
  userId: string;
  role: Role | null;
  previousRole: Role | null;
  /** SDK keys whose tokens were cut off because the membership ended (empty otherwise). */
  sdkKeysCutOff: readonly string[];
}

const lastOwner = () => conflict('the last owner of an organization cannot be removed or demoted; make another member owner first');

/** What membership changes need: the database, the clock (key cut-offs are stamped with it) and the cascades a membership's end runs. */
export interface MembershipDeps {
  db: Db;
  clock: Clock;
  cascades: CascadeRegistry;
  /**
   * Drops this instance's cached verifications of keys a removal cut off, once the change has
   * committed, so the instance that answered refuses their next token request at once. Other
   * instances (and every instance, for the CLI, which has no cache) forget on the notification.
   */
  forget?: (ended: EndedCredentials) => void;
}

/**
 * Adds a member, changes a role (`role`), or removes a member (`role: null`), in one
 * transaction holding the organization's row lock, audited in it. Non-members acting as users
 * get 404 (no existence leak), refused changes 403, the last-owner rule 409. Adding a user
 * directly is for operators; users acting through their role invite instead (see
 * `putMember` in invitations.service.ts).
 */
export async function changeMembership(
  deps: MembershipDeps,
  actor: MembershipActor,
  organizationId: string,
  targetUserId: string,
  role: Role | null,
): Promise<MembershipChange> {
  const change = await deps.db.transaction().execute(async (trx) => {
    const org = await lockOrganization(trx, organizationId);
    if (!org) throw notFound('organization');
    const current = (await findMembership(trx, organizationId, targetUserId))?.role ?? null;
    if (actor.kind === 'user') {
      const own = await actorRole(trx, actor, organizationId, targetUserId, current);
      const denied = membershipChangeDenied(own, actor.userId === targetUserId, current, role);
      if (denied) throw forbidden(denied);
    }
    return applyMembershipChange(trx, deps, actor, organizationId, targetUserId, current, role, {});
  });
  if (change.sdkKeysCutOff.length > 0) deps.forget?.({ sdkKeyClientIds: change.sdkKeysCutOff });
  return change;
}

/** The acting user's role in the organization (the organization's row is locked); 404 for non-members. */
export async function actorRole(
  trx: Transaction<Database>,
  actor: { userId: string },
  organizationId: string,
  targetUserId: string,
  targetRole: Role | null,
): Promise<Role> {
  const own = actor.userId === targetUserId ? targetRole : ((await findMembership(trx, organizationId, actor.userId))?.role ?? null);
  if (!own) throw notFound('organization');
  return own;
}

/**
 * Makes the change in `trx` (which holds the organization's row lock and has checked the
 * actor's rights). A new membership supersedes the user's pending invitation to the organization.
 * A membership that ends cuts off the user's SDK keys whose tokens may carry the organization
 * (`tokens_valid_after` stamped, each key announced), so tokens issued before fail everywhere.
 * Announces the membership change, which drops the user's keys from every instance's client cache.
 */
export async function applyMembershipChange(
  trx: Transaction<Database>,
  { clock, cascades }: Pick<MembershipDeps, 'clock' | 'cascades'>,
  actor: { kind: 'operator' | 'user' | 'invitation'; audit: Actor },
  organizationId: string,
  targetUserId: string,
  current: Role | null,
  role: Role | null,
  extra: Record<string, unknown>,
): Promise<MembershipChange> {
  if (role === null) {
    if (current === null) throw notFound('membership');
  } else if (current === null && !(await findUserById(trx, targetUserId))) {
    throw notFound('user');
  }
  if (current === role) return { organizationId, userId: targetUserId, role, previousRole: current, sdkKeysCutOff: [] };
  if (current === 'owner' && role !== 'owner' && (await countOwners(trx, organizationId)) <= 1) throw lastOwner();

  if (role === null) await deleteMembership(trx, organizationId, targetUserId);
  else await upsertMembership(trx, organizationId, targetUserId, role);
  const superseded = current === null && role !== null ? await deleteInvitationOf(trx, organizationId, targetUserId) : undefined;
  await recordAudit(trx, actor.audit, {
    action: role === null ? 'membership.remove' : 'membership.set',
    targetType: 'user',
    targetId: targetUserId,
    organizationId,
    details: { role, previous_role: current, by: actor.kind, ...(superseded ? { superseded_invitation: superseded.id } : {}), ...extra },
  });
  const ended =
    role === null
      ? await cascades.run(
          trx,
          'membershipEnded',
          { organizationId, userId: targetUserId, now: new Date(clock.now()), actor: actor.audit },
          { sdkKeysCutOff: [] },
        )
      : { sdkKeysCutOff: [] };
  await publishChange(trx, { type: 'membership', id: organizationId, user_id: targetUserId });
  return { organizationId, userId: targetUserId, role, previousRole: current, sdkKeysCutOff: ended.sdkKeysCutOff };
}

/** The caller's role in the organization, or 404 when they are not a member (or it does not exist). */
export async function requireMembership(db: Db, organizationId: string, userId: string): Promise<Role> {
  const m = await findMembership(db, organizationId, userId);
  if (!m) throw notFound('organization');
  return m.role;
}

/** 403 unless the role may write the organization's provider credentials. */
export function requireWriter(role: Role): void {
  if (role !== 'owner' && role !== 'maintainer') {
    throw new ApiError(403, 'forbidden', "only owners and maintainers can change the organization's provider credentials");
  }
}
