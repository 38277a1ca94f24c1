import type { Transaction } from 'kysely';
import type { Database } from '../platform/database/database.js';
import { lockLiveApiToken } from './api-tokens.repository.js';
import { lockActiveUser } from '../identity/users.repository.js';
import { badRequest, invalidToken, sdkKeyTokenCannotManage } from '../platform/errors/api-error.js';
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

/** Bounds of a chosen expiry (API tokens and SDK keys): at least a minute ahead, at most ten years (seconds). */
export const MIN_EXPIRES_IN = 60;
export const MAX_EXPIRES_IN = 10 * 365 * 86400;

/** A requested `expires_at` within the bounds above, counted from `nowMs`; 400 `{error, message}` otherwise. */
export function checkRequestedExpiry(raw: string, nowMs: number): Date {
  const at = new Date(raw);
  if (Number.isNaN(at.getTime())) throw badRequest('expires_at must be an RFC 3339 date-time');
  if (at.getTime() < nowMs + MIN_EXPIRES_IN * 1000) throw badRequest('expires_at must be at least a minute in the future');
  if (at.getTime() > nowMs + MAX_EXPIRES_IN * 1000) throw badRequest('expires_at must be within ten years');
  return at;
}
