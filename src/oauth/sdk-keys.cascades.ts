import type { CascadeRegistry } from '../platform/cascades.js';
import { cutOffOrganizationKeys, deleteSdkKeysOfParents, disableSdkKeysOfUser } from './sdk-keys.repository.js';
import { recordKeyChange } from './sdk-keys.service.js';

/**
 * SDK keys follow the credentials they depend on, each change audited and announced in the
 * cascade's transaction: a suspended user's keys are disabled, a membership's end cuts off the
 * keys whose tokens may carry the organization, and a revoked API token's keys are deleted.
 */
export function registerSdkKeyCascades(registry: CascadeRegistry): void {
  registry.on('userSuspended', 'sdk-keys', async (trx, { userId, now, actor }) => {
    const keys = await disableSdkKeysOfUser(trx, userId, now);
    for (const k of keys) {
      await recordKeyChange(trx, actor, { clientId: k.client_id, organizationId: k.organization_id }, 'sdk_key.disable', { reason: 'user_suspended' });
    }
    return { sdkKeysDisabled: keys.map((k) => k.client_id) };
  });
  registry.on('membershipEnded', 'sdk-keys', async (trx, { organizationId, userId, now, actor }) => {
    const clientIds = await cutOffOrganizationKeys(trx, userId, organizationId, now);
    for (const clientId of clientIds) {
      await recordKeyChange(trx, actor, { clientId, organizationId }, 'sdk_key.tokens_revoked', { reason: 'membership_ended', user_id: userId });
    }
    return { sdkKeysCutOff: clientIds };
  });
  registry.on('apiTokenFamilyRevoked', 'sdk-keys', async (trx, { apiTokenIds, actor }) => {
    const keys = await deleteSdkKeysOfParents(trx, apiTokenIds);
    for (const k of keys) {
      await recordKeyChange(trx, actor, { clientId: k.client_id, organizationId: k.organization_id }, 'sdk_key.delete', {
        name: k.name,
        reason: 'parent_revoked',
        parent_api_token_id: k.parent_api_token_id,
      });
    }
    return { sdkKeysDeleted: keys.map((k) => k.client_id) };
  });
}
