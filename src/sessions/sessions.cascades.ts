import type { CascadeRegistry } from '../platform/cascades.js';
import { revokeSessionsOfApiToken, revokeSessionsOfUser } from './sessions.repository.js';

/** Sessions end with their user's suspension and with the API token they were opened with. */
export function registerSessionCascades(registry: CascadeRegistry): void {
  registry.on('userSuspended', 'sessions', async (trx, { userId, now }) => ({
    sessionsEnded: await revokeSessionsOfUser(trx, userId, now),
  }));
  registry.on('apiTokenRevoked', 'sessions', async (trx, { apiTokenId, now }) => ({
    sessionsEnded: (await revokeSessionsOfApiToken(trx, apiTokenId, now)).length,
  }));
}
