import type { Db } from '../platform/database/database.js';
import { recordAudit, type Actor } from '../platform/database/audit.repository.js';
import { publishChange } from '../platform/database/notifications.js';
import { invalidRequest } from '../platform/errors/oauth-error.js';
import { looksLikeJwt, type AccessTokenVerifier } from './access-token.js';
import type { ClientEntry } from './client-cache.js';
import type { RevokedTokenSet } from './denylist.js';
import { insertRevokedToken } from './revoked-tokens.repository.js';

export interface RevocationDeps {
  db: Db;
  verifier: AccessTokenVerifier;
  revoked: RevokedTokenSet;
  clockToleranceSeconds: number;
}

/**
 * RFC 7009: `client` revokes one of its access tokens. The jti goes on the denylist until the token
 * expires: the row, its audit entry and the change event that tells every instance commit together,
 * then this instance holds the jti at once. Unknown, invalid or expired tokens are nothing to do; a
 * valid token issued to another client is `invalid_request` and stays active.
 */
export async function revokeAccessToken(deps: RevocationDeps, client: ClientEntry, token: string, request: Pick<Actor, 'ip' | 'requestId'>): Promise<void> {
  if (token.length > 4096 || !looksLikeJwt(token)) return;
  const r = await deps.verifier.verify(token, { audience: null });
  if (!r.ok) return;
  if (r.claims.client_id !== client.clientId) throw invalidRequest('the token was not issued to this client');
  const { jti, exp } = r.claims;
  await deps.db.transaction().execute(async (trx) => {
    await insertRevokedToken(trx, { jti, clientId: client.clientId, expiresAt: new Date(exp * 1000) });
    await recordAudit(
      trx,
      { userId: client.userId, credential: `client:${client.clientId}`, ip: request.ip, requestId: request.requestId },
      { action: 'oauth.token.revoke', targetType: 'access_token', targetId: jti, details: { client_id: client.clientId } },
    );
    await publishChange(trx, { type: 'revoked_token', id: jti, exp });
  });
  deps.revoked.add(jti, exp * 1000 + deps.clockToleranceSeconds * 1000);
}
