import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { findSdkKeysForAuth, recentSdkKeysForAuth } from './sdk-keys.repository.js';
import { listLiveRevokedTokens, pruneRevokedTokens } from './revoked-tokens.repository.js';
import { SIGNING_KEYS_CHANGED, SigningKeyStore } from '../signing-keys/key-store.js';
import { AccessTokenVerifier, looksLikeJwt } from './access-token.js';
import { ClientAuthenticator } from './client-auth.js';
import { ClientCache } from './client-cache.js';
import { RevokedTokenSet } from './denylist.js';
import type { Authenticator } from '../platform/auth/authenticate.js';

/** OAuth services held by an app instance. */
export interface OAuthServices {
  keys: SigningKeyStore;
  clients: ClientCache;
  revoked: RevokedTokenSet;
  verifier: AccessTokenVerifier;
  /** Client authentication on the OAuth endpoints (one HMAC; no Postgres once the client is cached). */
  clientAuth: ClientAuthenticator;
  /** Reloads the jti denylist from the database (union with what is held). */
  reloadRevoked(): Promise<void>;
}

declare module 'fastify' {
  interface FastifyInstance {
    oauth: OAuthServices;
  }
}

/**
 * Signing keys, the SDK-key cache, the jti denylist and the access-token verifier; the JWT
 * authenticator (any bearer with two dots). Caches follow change events and start over on
 * every listener reset.
 */
export const oauthPlugin = fp(
  async function oauthPlugin(app: FastifyInstance) {
    const { config, db, clock } = app;
    const keys = new SigningKeyStore({ db, config, clock, log: app.log });
    const clients = new ClientCache({ byClientIds: (ids) => findSdkKeysForAuth(db, ids), recent: (limit) => recentSdkKeysForAuth(db, limit) }, clock, {
      maxEntries: config.clientCacheMaxEntries,
    });
    // Fills the SDK-key cache in the background, so a (re)started instance does not send every
    // client's first request to Postgres; requests meanwhile load their own keys as before.
    const warmClients = () => clients.warm().catch((err) => app.log.warn({ err: { message: (err as Error).message } }, 'could not preload SDK keys'));
    const revoked = new RevokedTokenSet();
    const verifier = new AccessTokenVerifier({ config, clock, keys, clients, revoked });
    const toleranceMs = config.clockToleranceSeconds * 1000;

    const reloadRevoked = async () => {
      for (const r of await listLiveRevokedTokens(db, new Date(clock.now() - toleranceMs))) {
        revoked.add(r.jti, r.expires_at.getTime() + toleranceMs);
      }
    };

    const services: OAuthServices = {
      keys,
      clients,
      revoked,
      verifier,
      clientAuth: new ClientAuthenticator({ clients, config, clock, replay: app.replayGuard, sharedFailures: app.counters.shared('failed-client-auth') }),
      reloadRevoked,
    };
    app.decorate('oauth', services);

    const jwtAuthenticator: Authenticator = {
      name: 'access_token_jwt',
      accepts: looksLikeJwt,
      async authenticate(token) {
        const r = await verifier.verify(token, { audience: config.issuer });
        if (!r.ok) return null;
        return {
          kind: 'client',
          userId: r.client.userId,
          scopes: r.claims.scope.split(' ').filter(Boolean),
          credentialId: r.claims.jti,
          clientId: r.claims.client_id,
          organizationId: r.claims.org_id,
          expiresAt: r.claims.exp,
          apiTokenId: null,
          ...(r.claims.cnf ? { jkt: r.claims.cnf.jkt } : {}),
        };
      },
    };
    app.authenticators.push(jwtAuthenticator);

    app.changes.on('sdk_key', (e) => {
      if (typeof e.id === 'string') clients.invalidate(e.id);
      else clients.clear();
    });
    app.changes.on('user', (e) => {
      if (typeof e.id === 'string') clients.invalidateUser(e.id);
      else clients.clear();
    });
    // A membership change can change the org_id a key's tokens carry.
    app.changes.on('membership', (e) => {
      if (typeof e.user_id === 'string') clients.invalidateUser(e.user_id);
      else clients.clear();
    });
    app.changes.on('revoked_token', (e) => {
      if (typeof e.id === 'string' && typeof e.exp === 'number') revoked.add(e.id, e.exp * 1000 + toleranceMs);
    });
    app.changes.on(SIGNING_KEYS_CHANGED, () => {
      keys.reload().catch((err) => app.log.error({ err }, 'could not reload signing keys'));
    });
    app.changes.onReset(() => {
      clients.clear();
      void warmClients(); // detached: the warm-up only fills a cache, and logs its own failure
      keys.reload().catch((err) => app.log.error({ err }, 'could not reload signing keys'));
      reloadRevoked().catch((err) => app.log.warn({ err: { message: (err as Error).message } }, 'could not reload revoked tokens'));
    });

    app.readinessChecks.set('signing_key', async () => (keys.hasActiveKey() ? null : 'no active signing key is loaded'));

    let pruneTimer: NodeJS.Timeout | null = null;
    app.jobs.register({
      name: 'signing-keys-and-denylist',
      async start() {
        await keys.ensureActiveKey();
        await keys.reload();
        await reloadRevoked();
        let ticks = 0;
        pruneTimer = setInterval(() => {
          revoked.prune(clock.now());
          // Every hour, one delete of expired denylist rows (any instance may do it; it is idempotent).
          if (++ticks % 60 === 0) {
            pruneRevokedTokens(db, new Date(clock.now() - toleranceMs)).catch(() => undefined);
          }
        }, 60_000);
        pruneTimer.unref();
      },
      stop() {
        if (pruneTimer) clearInterval(pruneTimer);
      },
    });
  },
  { name: 'tessera-oauth', dependencies: ['tessera-auth'] },
);
