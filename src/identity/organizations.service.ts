import type { Db } from '../platform/database/database.js';
import { recordAudit, type Actor } from '../platform/database/audit.repository.js';
import { publishChange } from '../platform/database/notifications.js';
import { notFound } from '../platform/errors/api-error.js';
import { createOrganization, upsertMembership, type Organization } from './organizations.repository.js';
import { findUserById } from './users.repository.js';

/**
 * Creates an organization and, when `ownerId` is given, makes that user its first owner: one
 * transaction, audited in it, the new membership announced to every instance. 404 `not_found`
 * when the owner does not exist (nothing is created).
 */
export async function createOrganizationAsOperator(db: Db, actor: Actor, input: { name: string; ownerId?: string }): Promise<Organization> {
  const { name, ownerId } = input;
  return db.transaction().execute(async (trx) => {
    if (ownerId && !(await findUserById(trx, ownerId))) throw notFound('user');
    const o = await createOrganization(trx, name);
    await recordAudit(trx, actor, {
      action: 'organization.create',
      targetType: 'organization',
      targetId: o.id,
      organizationId: o.id,
      details: { name: o.name },
    });
    if (ownerId) {
      await upsertMembership(trx, o.id, ownerId, 'owner');
      await recordAudit(trx, actor, {
        action: 'membership.set',
        targetType: 'user',
        targetId: ownerId,
        organizationId: o.id,
        details: { role: 'owner', previous_role: null, by: 'operator' },
      });
      await publishChange(trx, { type: 'membership', id: o.id, user_id: ownerId });
    }
    return o;
  });
}
