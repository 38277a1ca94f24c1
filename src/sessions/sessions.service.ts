import type { Config } from '../platform/config.js';
import type { Db } from '../platform/database/database.js';
import { createSessionFromApiToken, revokeSessionByHash, type NewSession } from './sessions.repository.js';
import { hashApiToken, isWellFormedApiToken } from '../api-tokens/api-token.js';
import { generateSessionToken, hashSessionToken } from './session-token.js';

/** The sliding-window setting as the repository wants it. */
export function slidingOf(config: Config): { ttlSeconds: number } | null {
  return config.sessionSliding ? { ttlSeconds: config.sessionTtlSeconds } : null;
}

/**
 * loginWithToken: exchanges a live API token of an active user for a session token with the
 * token's scopes. `null` when the API token is malformed, unknown, revoked, expired, or its user
 * suspended (one answer for all, so callers learn nothing).
 */
export async function loginWithApiToken(
  db: Db,
  config: Config,
  input: { apiToken: string; now: Date; ip: string | null; requestId: string | null },
): Promise<{ token: string; session: NewSession } | null> {
  if (!isWellFormedApiToken(input.apiToken)) return null;
  const token = generateSessionToken();
  // One statement: check the API token, insert the session, audit it (see the repository).
  const session = await createSessionFromApiToken(db, {
    apiTokenHash: hashApiToken(config.pepper, input.apiToken),
    tokenHash: hashSessionToken(config.pepper, token),
    now: input.now,
    expiresAt: new Date(input.now.getTime() + config.sessionTtlSeconds * 1000),
    ip: input.ip,
    requestId: input.requestId,
  });
  return session ? { token, session } : null;
}

/**
 * Logout: revokes the session durably (committed before this resolves), audits it and announces
 * it to every instance, all in one statement. `null` when the token is not a live session.
 */
export async function logoutSession(
  db: Db,
  config: Config,
  input: { token: string; now: Date; ip: string | null; requestId: string | null },
): Promise<{ id: string; userId: string; apiTokenId: string } | null> {
  const row = await revokeSessionByHash(db, {
    tokenHash: hashSessionToken(config.pepper, input.token),
    now: input.now,
    sliding: slidingOf(config),
    ip: input.ip,
    requestId: input.requestId,
  });
  return row ? { id: row.id, userId: row.user_id, apiTokenId: row.api_token_id } : null;
}
