import type { Transaction } from 'kysely';
import type { Database } from '../platform/database/database.js';
import { lockLiveApiToken } from './api-tokens.repository.js';
import { lockActiveUser } from '../identity/users.repository.js';
import { invalidToken, sdkKeyTokenCannotManage } from '../platform/errors/api-error.js';
import type { Principal } from '../platform/auth/principal.js';

/** What a credential created through the API inherits from the API token behind its creator. */
export interface ParentGrant {
  /** The API token the new credential hangs from: the caller's, or the one its session came from. */
  apiTokenId: string;
  /** The most the new credential may hold. */
  scopes: readonly string[];
  /** The latest the new credential may live to (null: the parent does not expire). */
  expiresAt: Date | null;
}

/**
 * Locks, for the rest of the transaction, what a credential created by `principal` depends on:
 * its owner (must be active) and the API token the principal acts for (must be live and
 * unexpired). Suspension and revocation update those rows, so they either wait for this
 * transaction and then see (and end) the new credential, or committed first and this answers
 * 401. SDK-key JWTs have no API token and are refused (403).
 */
export async function lockParent(trx: Transaction<Database>, principal: Principal, now: Date): Promise<ParentGrant> {
  if (principal.kind === 'client' || principal.apiTokenId === null) throw sdkKeyTokenCannotManage();
  if (!(await lockActiveUser(trx, principal.userId))) throw invalidToken();
  const parent = await lockLiveApiToken(trx, principal.userId, principal.apiTokenId, now);
  if (!parent) throw invalidToken();
  return { apiTokenId: parent.id, scopes: parent.scopes, expiresAt: parent.expires_at };
}

/** The earlier of a requested expiry and the parent's (null: never). */
export function capExpiry(requested: Date | null, parent: Date | null): Date | null {
  if (parent === null) return requested;
  if (requested === null) return parent;
  return requested.getTime() <= parent.getTime() ? requested : parent;
}
