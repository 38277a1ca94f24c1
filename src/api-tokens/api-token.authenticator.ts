import type { Authenticator } from '../platform/auth/authenticate.js';
import type { Config } from '../platform/config.js';
import { epochSeconds, type Clock } from '../platform/clock.js';
import type { Db } from '../platform/database/database.js';
import { USAGE_EVERY_MS, type UsageStamps, type UsageTarget } from '../platform/database/usage-stamps.js';
import { findApiTokenByHash } from './api-tokens.repository.js';
import { API_TOKEN_PREFIX, hashApiToken, isWellFormedApiToken } from './api-token.js';

const API_TOKEN_USAGE: UsageTarget = { table: 'api_tokens', keyColumn: 'id', keyType: 'uuid', everyMs: USAGE_EVERY_MS };

/** Personal access tokens as bearer credentials, with the scopes they were created with. */
export function apiTokenAuthenticator(deps: { config: Config; db: Db; clock: Clock; usage: UsageStamps }): Authenticator {
  return {
    name: 'api_token',
    accepts: (token) => token.startsWith(API_TOKEN_PREFIX),
    async authenticate(token) {
      if (!isWellFormedApiToken(token)) return null;
      const row = await findApiTokenByHash(deps.db, hashApiToken(deps.config.pepper, token));
      const now = deps.clock.now();
      if (!row || row.user_status !== 'active') return null;
      if (row.expires_at && row.expires_at.getTime() <= now) return null;
      deps.usage.touch(API_TOKEN_USAGE, row.id, new Date(now));
      return {
        kind: 'api_token',
        userId: row.user_id,
        scopes: row.scopes,
        credentialId: row.id,
        clientId: null,
        organizationId: null,
        expiresAt: row.expires_at ? epochSeconds(row.expires_at.getTime()) : null,
        apiTokenId: row.id,
      };
    },
  };
}
