import type { Authenticator } from '../platform/auth/authenticate.js';
import type { Config } from '../platform/config.js';
import { epochSeconds, type Clock } from '../platform/clock.js';
import type { Db } from '../platform/database/database.js';
import { USAGE_EVERY_MS, type UsageStamps, type UsageTarget } from '../platform/database/usage-stamps.js';
import type { ChangeListener } from '../platform/database/notifications.js';
import { findLiveSessionByHash } from './sessions.repository.js';
import type { Principal } from '../platform/auth/principal.js';
import type { CachedSession, SessionCache } from './session-cache.js';
import { hashSessionToken, isWellFormedSessionToken, SESSION_TOKEN_PREFIX } from './session-token.js';
import { slidingOf } from './sessions.service.js';

export interface SessionAuthenticatorDeps {
  config: Config;
  db: Db;
  clock: Clock;
  usage: UsageStamps;
  changes: ChangeListener;
  cache: SessionCache;
}

/**
 * Session tokens from loginWithToken as bearer credentials (Authorization: Bearer or
 * x-access-token), with the scopes of the API token they came from.
 *
 * Verified sessions are answered from memory, but a cache hit is trusted only after
 * `changes.sync()`: a freshness barrier proving that every revocation committed before this
 * request began (a logout whose 204 the client has seen, on any instance) has already reached
 * this instance's cache. Without a live listener nothing is trusted from memory: every request
 * reads Postgres.
 */
export function sessionAuthenticator(deps: SessionAuthenticatorDeps): Authenticator {
  const { config, db, clock, usage, changes, cache } = deps;
  const ttlMs = config.sessionTtlSeconds * 1000;
  const sliding = slidingOf(config);
  // With sliding sessions other instances read the idle clock from last_used_at: keep it within a 60th of the TTL.
  const usageTarget: UsageTarget = { table: 'sessions', keyColumn: 'id', keyType: 'uuid', everyMs: Math.min(USAGE_EVERY_MS, ttlMs / 60) };

  const principalOf = (e: CachedSession): Principal => ({
    kind: 'session',
    userId: e.userId,
    scopes: e.scopes,
    credentialId: e.sessionId,
    clientId: null,
    organizationId: null,
    expiresAt: epochSeconds(Math.min(e.expiresAt, e.apiTokenExpiresAt ?? Infinity)),
    apiTokenId: e.apiTokenId,
  });

  return {
    name: 'session',
    accepts: (token) => token.startsWith(SESSION_TOKEN_PREFIX),
    async authenticate(token) {
      if (!isWellFormedSessionToken(token)) return null;
      const key = hashSessionToken(config.pepper, token).toString('base64');
      let entry = cache.get(key);
      if (entry) {
        // Trust memory only once every revocation committed before now has been applied to it.
        entry = (await changes.sync()) ? cache.get(key) : undefined;
      }
      const now = clock.now();
      if (!entry) {
        const since = cache.generation();
        const row = await findLiveSessionByHash(db, Buffer.from(key, 'base64'), new Date(now), sliding);
        if (!row) return null;
        entry = {
          sessionId: row.id,
          userId: row.user_id,
          apiTokenId: row.api_token_id,
          scopes: Object.freeze([...row.scopes]),
          expiresAt: new Date(row.expires_at).getTime(),
          apiTokenExpiresAt: row.api_token_expires_at ? row.api_token_expires_at.getTime() : null,
        };
        if (changes.isConnected) cache.set(key, entry, since);
      }
      if (entry.expiresAt <= now || (entry.apiTokenExpiresAt !== null && entry.apiTokenExpiresAt <= now)) {
        cache.delete(key);
        return null;
      }
      if (sliding) entry.expiresAt = Math.max(entry.expiresAt, now + ttlMs);
      usage.touch(usageTarget, entry.sessionId, new Date(now));
      return principalOf(entry);
    },
  };
}
