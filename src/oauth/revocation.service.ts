import type { Db } from '../platform/database/database.js';
import type { Actor } from '../platform/database/audit.repository.js';
import { GroupCommit } from '../platform/database/group-commit.js';
import { invalidRequest } from '../platform/errors/oauth-error.js';
import { looksLikeJwt, type AccessTokenVerifier } from './access-token.js';
import type { ClientEntry } from './client-cache.js';
import type { RevokedTokenSet } from './denylist.js';
import { revokeTokens, type RevocationInput } from './revoked-tokens.repository.js';

export interface RevocationDeps {
  db: Db;
  verifier: AccessTokenVerifier;
  revoked: RevokedTokenSet;
  clockToleranceSeconds: number;
}

/**
 * How revocations are grouped: at most this many per transaction and one transaction in flight;
 * revocations arriving meanwhile go together in the next (the fewest transactions, hence the least
 * CPU and the fewest takes of the security-event lock per revocation).
 */
const GROUP = { maxBatch: 128, maxInFlight: 1 };

/**
 * RFC 7009 revocations of one instance, committed together (group commit): concurrent
 * revocations share one transaction (their denylist rows, audit rows and change events), instead
 * of one each.
 *
 * Guarantee: a revocation is answered only after the transaction carrying it has committed with
 * `synchronous_commit` on, so an acknowledged revocation survives a Postgres crash, and its change
 * event was sent by that commit; then this instance holds the jti at once. Unknown, invalid or
 * expired tokens, and tokens already revoked, are nothing more to do (200); a valid token issued to
 * another client is `invalid_request` and stays active. A failed group is written again request by
 * request (see GroupCommit), so one request's failure stays its own.
 */
export class Revocations {
  private readonly writes: GroupCommit<RevocationInput, void>;

  constructor(private readonly deps: RevocationDeps) {
    this.writes = new GroupCommit((inputs) => revokeTokens(deps.db, inputs), GROUP);
  }

  /** `client` revokes `token`; resolves once the revocation has committed. */
  async revokeAccessToken(client: ClientEntry, token: string, request: Pick<Actor, 'ip' | 'requestId'>): Promise<void> {
    if (token.length > 4096 || !looksLikeJwt(token)) return;
    const r = await this.deps.verifier.verify(token, { audience: null });
    if (!r.ok) return;
    if (r.claims.client_id !== client.clientId) throw invalidRequest('the token was not issued to this client');
    const { jti, exp } = r.claims;
    await this.writes.submit({
      jti,
      exp,
      clientId: client.clientId,
      userId: client.userId,
      ip: request.ip ?? null,
      requestId: request.requestId ?? null,
    });
    this.deps.revoked.add(jti, exp * 1000 + this.deps.clockToleranceSeconds * 1000);
  }
}
