import type { Config } from '../platform/config.js';
import type { Db } from '../platform/database/database.js';
import {
  createSessionsFromApiTokens,
  revokeSessionsByHash,
  type EndedSession,
  type LoginInput,
  type LogoutInput,
  type NewSession,
} from './sessions.repository.js';
import { hashApiToken, isWellFormedApiToken } from '../api-tokens/api-token.js';
import { generateSessionToken, hashSessionToken } from './session-token.js';
import { GroupCommit } from '../platform/database/group-commit.js';

/** The sliding-window setting as the repository wants it. */
export function slidingOf(config: Config): { ttlSeconds: number } | null {
  return config.sessionSliding ? { ttlSeconds: config.sessionTtlSeconds } : null;
}

/**
 * How session writes are grouped: at most this many requests per statement, and this many
 * statements of each kind (logins, logouts) in flight; requests arriving meanwhile wait for the
 * next statement. One in flight makes the largest groups, hence the least CPU per request on a
 * CPU-bound machine; a statement is bounded by the pool's statement timeout, so a group never
 * waits on another for longer than that.
 */
const GROUP = { maxBatch: 128, maxInFlight: 1 };

/**
 * Login and logout writes of one instance, committed together (group commit): the requests of
 * the same moment share one statement, so one transaction and one WAL flush, instead of one each.
 *
 * Guarantee: a login or logout is answered only after the statement carrying it has committed
 * with `synchronous_commit` on, so an acknowledged session, and an acknowledged logout, survive a
 * Postgres crash (`pg_ctl restart -m immediate`) and a `kill -9` of the instance; the logout's
 * change notification is sent by that same commit, before the 204. A request that does not
 * qualify (a bad API token, a session already ended) gets its own answer and does not affect the
 * others of its batch (see GroupCommit for failed statements).
 */
export class SessionWrites {
  private readonly logins: GroupCommit<LoginInput, NewSession | undefined>;
  private readonly logouts: GroupCommit<LogoutInput, EndedSession | undefined>;

  constructor(
    db: Db,
    private readonly config: Config,
  ) {
    this.logins = new GroupCommit((inputs) => createSessionsFromApiTokens(db, inputs), GROUP);
    const sliding = slidingOf(config);
    this.logouts = new GroupCommit((inputs) => revokeSessionsByHash(db, inputs, sliding), GROUP);
  }

  /**
   * loginWithToken: exchanges a live API token of an active user for a session token with the
   * token's scopes. `null` when the API token is malformed, unknown, revoked, expired, or its user
   * suspended (one answer for all, so callers learn nothing).
   */
  async login(input: { apiToken: string; now: Date; ip: string | null; requestId: string | null }): Promise<{
    token: string;
    session: NewSession;
  } | null> {
    if (!isWellFormedApiToken(input.apiToken)) return null;
    const token = generateSessionToken();
    const session = await this.logins.submit({
      apiTokenHash: hashApiToken(this.config.pepper, input.apiToken),
      tokenHash: hashSessionToken(this.config.pepper, token),
      now: input.now,
      expiresAt: new Date(input.now.getTime() + this.config.sessionTtlSeconds * 1000),
      ip: input.ip,
      requestId: input.requestId,
    });
    return session ? { token, session } : null;
  }

  /**
   * Logout: revokes the session durably (committed before this resolves), audits it and announces
   * it to every instance. `null` when the token is not a live session.
   */
  async logout(input: { token: string; now: Date; ip: string | null; requestId: string | null }): Promise<{
    id: string;
    userId: string;
    apiTokenId: string;
  } | null> {
    const row = await this.logouts.submit({
      tokenHash: hashSessionToken(this.config.pepper, input.token),
      now: input.now,
      ip: input.ip,
      requestId: input.requestId,
    });
    return row ? { id: row.id, userId: row.user_id, apiTokenId: row.api_token_id } : null;
  }
}
