import type { CascadeRegistry } from '../platform/cascades.js';
import { revokeApiTokensOfUser } from './api-tokens.repository.js';

/** API tokens end with their user's suspension. */
export function registerApiTokenCascades(registry: CascadeRegistry): void {
  registry.on('userSuspended', 'api-tokens', async (trx, { userId, now }) => ({
    apiTokensRevoked: (await revokeApiTokensOfUser(trx, userId, now)).length,
  }));
}
