import type { Config } from '../config.js';
import type { Db } from '../db/database.js';
import { publishChange } from '../db/notifications.js';
import { recordAudit, type Actor } from '../db/audit.repository.js';
import { insertSession, lockApiTokenForLogin, revokeSessionByHash, type SessionRow } from '../db/sessions.repository.js';
import { hashApiToken, isWellFormedApiToken } from './api-token.js';
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
): Promise<{ token: string; session: SessionRow } | null> {
  if (!isWellFormedApiToken(input.apiToken)) return null;
  const apiTokenHash = hashApiToken(config.pepper, input.apiToken);
  return db.transaction().execute(async (trx) => {
    const t = await lockApiTokenForLogin(trx, apiTokenHash);
    if (!t || t.user_status !== 'active') return null;
    if (t.expires_at && t.expires_at.getTime() <= input.now.getTime()) return null;
    const token = generateSessionToken();
    const session = await insertSession(trx, {
      tokenHash: hashSessionToken(config.pepper, token),
      userId: t.user_id,
      apiTokenId: t.id,
      scopes: t.scopes,
      createdAt: input.now,
      expiresAt: new Date(input.now.getTime() + config.sessionTtlSeconds * 1000),
      ip: input.ip,
    });
    await recordAudit(
      trx,
      { userId: t.user_id, credential: `api_token:${t.id}`, ip: input.ip, requestId: input.requestId },
      { action: 'session.create', targetType: 'session', targetId: session.id, details: { api_token_id: t.id, scopes: t.scopes } },
    );
    return { token, session };
  });
}

/**
 * Logout: revokes the session durably (committed before this resolves) and announces it to every
 * instance in the same transaction. `null` when the token is not a live session.
 */
export async function logoutSession(
  db: Db,
  config: Config,
  input: { token: string; now: Date; ip: string | null; requestId: string | null },
): Promise<{ id: string; userId: string; apiTokenId: string } | null> {
  const hash = hashSessionToken(config.pepper, input.token);
  return db.transaction().execute(async (trx) => {
    const row = await revokeSessionByHash(trx, hash, input.now, slidingOf(config));
    if (!row) return null;
    await publishChange(trx, { type: 'session', id: row.id });
    const actor: Actor = { userId: row.user_id, credential: `session:${row.id}`, ip: input.ip, requestId: input.requestId };
    await recordAudit(trx, actor, { action: 'session.logout', targetType: 'session', targetId: row.id });
    return { id: row.id, userId: row.user_id, apiTokenId: row.api_token_id };
  });
}
