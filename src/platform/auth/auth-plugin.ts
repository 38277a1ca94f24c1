import type { FastifyInstance, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import fp from 'fastify-plugin';
import { ApiError, insufficientScope, invalidToken, missingToken, sdkKeyTokenCannotManage } from '../errors/api-error.js';
import { hasScopes, type Principal } from './principal.js';
import { markBearerGuard } from '../http/contract.js';

/**
 * One kind of bearer credential. The first authenticator whose `accepts` matches the token's
 * shape decides; `null` from it means "not valid" (401), never "try the next one".
 */
export interface Authenticator {
  name: string;
  accepts(token: string): boolean;
  authenticate(token: string, request: FastifyRequest): Promise<Principal | null>;
}

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
    /** Resolves a raw bearer token to a principal, or null when it is not valid. */
    resolveBearer(token: string, request: FastifyRequest): Promise<Principal | null>;
  }
  interface FastifyRequest {
    principal: Principal | null;
  }
}

/** RFC 6750 §2.1 b64token */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

/**
 * The bearer token of a request: `Authorization: Bearer <t>` or `x-access-token: <t>` (the IBM
 * Quantum header). `null` when neither is sent; an ApiError when what is sent is malformed or
 * when both carry different tokens (RFC 6750 §2: one method per request).
 */
export function extractBearer(request: FastifyRequest): string | null {
  const auth = request.headers.authorization;
  const xat = request.headers['x-access-token'];
  let fromAuth: string | null = null;
  if (auth !== undefined) {
    const m = /^Bearer +(\S+) *$/i.exec(auth);
    if (!m) {
      if (/^Bearer\b/i.test(auth)) throw invalidToken('malformed Authorization header');
      throw new ApiError(401, 'invalid_token', 'use the Bearer authentication scheme', {
        'www-authenticate': 'Bearer realm="tessera"',
      });
    }
    fromAuth = m[1]!;
    if (!B64TOKEN.test(fromAuth)) throw invalidToken('malformed bearer token');
  }
  let fromHeader: string | null = null;
  if (xat !== undefined) {
    if (Array.isArray(xat)) throw new ApiError(400, 'invalid_request', 'send one x-access-token header');
    fromHeader = xat.trim();
    if (!fromHeader || !B64TOKEN.test(fromHeader)) throw invalidToken('malformed x-access-token header');
  }
  if (fromAuth && fromHeader && fromAuth !== fromHeader) {
    throw new ApiError(400, 'invalid_request', 'send the access token in one place: Authorization or x-access-token, not both');
  }
  return fromAuth ?? fromHeader;
}

/** Largest token Tessera ever issues is well below this; longer input is refused before any work. */
const MAX_TOKEN_LENGTH = 4096;

export const authPlugin = fp(
  async function authPlugin(app: FastifyInstance) {
    app.decorate('authenticators', [] as Authenticator[]);
    app.decorateRequest('principal', null);

    app.decorate('resolveBearer', async function resolveBearer(token: string, request: FastifyRequest) {
      if (token.length > MAX_TOKEN_LENGTH) return null;
      const a = app.authenticators.find((x) => x.accepts(token));
      return a ? a.authenticate(token, request) : null;
    });

    const authenticateBearer = async (request: FastifyRequest, scopes: readonly string[], manage: boolean) => {
      const token = extractBearer(request);
      if (!token) throw missingToken();
      const principal = await app.resolveBearer(token, request);
      if (!principal) throw invalidToken();
      // A short-lived token minted from an SDK key never creates, changes or removes credentials.
      if (manage && principal.kind === 'client') throw sdkKeyTokenCannotManage();
      if (!hasScopes(principal, scopes)) throw insufficientScope(scopes);
      request.principal = principal;
    };

    app.decorate('requireAuth', function requireAuth(...scopes: string[]): preHandlerAsyncHookHandler {
      return markBearerGuard(
        async function authenticate(request) {
          await authenticateBearer(request, scopes, false);
        } as preHandlerAsyncHookHandler,
        scopes,
      );
    });

    app.decorate('requireCredentialManager', function requireCredentialManager(...scopes: string[]): preHandlerAsyncHookHandler {
      return markBearerGuard(
        async function authenticateCredentialManager(request) {
          await authenticateBearer(request, scopes, true);
        } as preHandlerAsyncHookHandler,
        scopes,
      );
    });
  },
  { name: 'tessera-auth' },
);
