import type { FastifyInstance, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import fp from 'fastify-plugin';
import type { Principal } from './principal.js';
import { markBearerGuard } from '../http/contract.js';
import { authenticate, type Authenticator } from './authenticate.js';
import { DpopVerifier } from './dpop.js';
import { pruneUsedJtis, ReplayGuard } from '../database/replay-guard.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Bearer credential kinds, tried by shape. Features add theirs at start-up. */
    authenticators: Authenticator[];
    /** preHandler: the request must carry a valid bearer credential holding every scope named. */
    requireAuth(...scopes: string[]): preHandlerAsyncHookHandler;
    /**
     * preHandler for every write that manages credentials or who may use them: as `requireAuth`,
     * and the credential must be an API token or a session (an SDK key's JWT gets 403
     * `insufficient_scope`, whatever its scopes).
     */
    requireCredentialManager(...scopes: string[]): preHandlerAsyncHookHandler;
    /** Single use of DPoP proofs and client assertions across every instance (Postgres `used_jtis`). */
    replayGuard: ReplayGuard;
    /** Resolves a raw bearer token to a principal, or null when it is not valid. */
    resolveBearer(token: string, request: FastifyRequest): Promise<Principal | null>;
  }
  interface FastifyRequest {
    principal: Principal | null;
  }
}

/** Largest token Tessera ever issues is well below this; longer input is refused before any work. */
const MAX_TOKEN_LENGTH = 4096;

export const authPlugin = fp(
  async function authPlugin(app: FastifyInstance) {
    app.decorate('authenticators', [] as Authenticator[]);
    const replayGuard = new ReplayGuard(app.db, { now: () => app.clock.now() });
    app.decorate('replayGuard', replayGuard);
    app.decorate('dpop', new DpopVerifier({ config: app.config, clock: app.clock, replay: replayGuard }));
    // Every minute, one delete of the records of proofs and assertions that have expired (any
    // instance may run it; it is idempotent). A record outlives its JWT's time window by at most
    // that minute, so the table holds a few minutes of proofs, and every instance prunes within
    // its first minute.
    let pruneTimer: NodeJS.Timeout | null = null;
    app.jobs.register({
      name: 'used-jtis-prune',
      start() {
        pruneTimer = setInterval(() => {
          pruneUsedJtis(app.db, new Date(app.clock.now())).catch((err) =>
            app.log.warn({ err: { message: (err as Error).message } }, 'could not prune used jtis'),
          );
        }, 60_000);
        pruneTimer.unref();
      },
      stop() {
        if (pruneTimer) clearInterval(pruneTimer);
      },
    });
    app.decorateRequest('principal', null);

    app.decorate('resolveBearer', async function resolveBearer(token: string, request: FastifyRequest) {
      if (token.length > MAX_TOKEN_LENGTH) return null;
      const a = app.authenticators.find((x) => x.accepts(token));
      return a ? a.authenticate(token, request) : null;
    });

    app.decorate('requireAuth', function requireAuth(...scopes: string[]): preHandlerAsyncHookHandler {
      return markBearerGuard(
        async function requireAuthGuard(request) {
          request.principal = await authenticate(request, { scopes });
        } as preHandlerAsyncHookHandler,
        scopes,
      );
    });

    app.decorate('requireCredentialManager', function requireCredentialManager(...scopes: string[]): preHandlerAsyncHookHandler {
      return markBearerGuard(
        async function requireCredentialManagerGuard(request) {
          // A short-lived token minted from an SDK key never creates, changes or removes credentials.
          request.principal = await authenticate(request, { scopes, credentialManager: true });
        } as preHandlerAsyncHookHandler,
        scopes,
      );
    });
  },
  { name: 'tessera-auth' },
);
