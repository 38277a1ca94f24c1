import type { FastifyInstance, FastifyRequest } from 'fastify';
import { badRequest } from '../platform/errors/api-error.js';
import { authenticate, type ProofTarget } from '../platform/auth/authenticate.js';
import { parseScopeString } from '../platform/auth/scopes.js';
import { errorResponses } from '../platform/http/schemas.js';

const identityHeaders = {
  'X-Tessera-Subject': { type: 'string', description: 'The user the credential acts for (uuid)' },
  'X-Tessera-Client-Id': { type: 'string', description: 'The SDK key client_id, for JWT access tokens; empty otherwise' },
  'X-Tessera-Scopes': { type: 'string', description: 'Granted scopes, space-separated' },
  'X-Tessera-Org-Id': { type: 'string', description: 'The organization the token is bound to; empty when none' },
} as const;

const METHOD = /^[A-Z]{1,16}$/;
const MAX_FORWARDED_URI = 8192;

/**
 * The request a gateway asks about, when a trusted proxy names it (`X-Forwarded-Method` and
 * `X-Forwarded-Uri`, with `X-Forwarded-Proto` and `X-Forwarded-Host` read through Fastify's
 * trust-proxy rules): a DPoP proof is then checked against that request's method and URL, which is
 * what the client signed (and the request is logged at debug level with that method and URL, never
 * its query). Null when no proxy is trusted or it names nothing: the proof must then
 * name this route. Naming a target grants nothing: the token, the proof and its single use are
 * checked as on any route; only the URL the proof must carry changes.
 */
function forwardedTarget(request: FastifyRequest, trustProxy: unknown): ProofTarget | null {
  if (trustProxy === false) return null;
  const method = request.headers['x-forwarded-method'];
  const uri = request.headers['x-forwarded-uri'];
  if (method === undefined && uri === undefined) return null;
  if (typeof method !== 'string' || typeof uri !== 'string' || !METHOD.test(method)) {
    throw badRequest('X-Forwarded-Method and X-Forwarded-Uri must come together, once each, the method in capitals');
  }
  // Origin form (RFC 9112 §3.2.1): a path, never another host ("//evil/...") or an absolute URL.
  if (!uri.startsWith('/') || uri.startsWith('//') || uri.length > MAX_FORWARDED_URI) {
    throw badRequest('X-Forwarded-Uri must be the forwarded request target in origin form (/path?query)');
  }
  const end = uri.search(/[?#]/);
  const target = { method, url: `${request.protocol}://${request.host}${end < 0 ? uri : uri.slice(0, end)}` };
  request.log.debug({ forwardedMethod: target.method, forwardedUrl: target.url }, 'gateway verify of a forwarded DPoP request');
  return target;
}

/**
 * Forward-auth for gateways (nginx auth_request, Traefik forwardAuth, Envoy ext_authz over HTTP):
 * 200 with identity headers, 401 with a Bearer challenge, 403 when `?scope=` is not held.
 * Verified session tokens are answered from memory (see the session authenticator).
 */
export async function gatewayRoutes(app: FastifyInstance): Promise<void> {
  app.get<{ Querystring: { scope?: string } }>(
    '/gateway/verify',
    {
      schema: {
        tags: ['gateway'],
        operationId: 'verifyGatewayRequest',
        summary: 'Verify the bearer credential of a proxied request (Authorization or x-access-token)',
        description:
          'Reads `Authorization: Bearer` or `x-access-token`, or `Authorization: DPoP` with a `DPoP` proof. With ' +
          '`TESSERA_TRUST_PROXY` set, `X-Forwarded-For` gives the client address used in logs and rate limits, and ' +
          '`X-Forwarded-Method` with `X-Forwarded-Uri` (and `X-Forwarded-Proto`, `X-Forwarded-Host`) name the request the ' +
          'gateway holds: a DPoP proof must then be for that method and URL, as the client made it (400 when they are ' +
          'malformed); without them, or without a trusted proxy, the proof is for `GET <issuer>/gateway/verify`. ' +
          '`scope` names scopes (space-separated) the credential must hold, else 403. The body is empty on success.',
        security: [{ bearer: [] }, { accessToken: [] }],
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { scope: { type: 'string', maxLength: 512 } },
        },
        response: {
          200: { type: 'null', description: 'Valid: identity in the X-Tessera-* headers', headers: identityHeaders },
          ...errorResponses(400, 401, 403, 429, 503),
        },
      },
    },
    async (request, reply) => {
      const required = request.query.scope === undefined ? [] : parseScopeString(request.query.scope.trim());
      if (required === null) throw badRequest('scope must be space-separated scope names');
      // Read only for a DPoP request: a bearer check never depends on the forwarded headers.
      const principal = await authenticate(request, { scopes: required }, undefined, () => forwardedTarget(request, app.config.trustProxy));
      return reply
        .code(200)
        .headers({
          'cache-control': 'no-store',
          'x-tessera-subject': principal.userId,
          'x-tessera-client-id': principal.clientId ?? '',
          'x-tessera-scopes': principal.scopes.join(' '),
          'x-tessera-org-id': principal.organizationId ?? '',
        })
        .send();
    },
  );
}
