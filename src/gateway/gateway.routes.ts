import type { FastifyInstance } from 'fastify';
import { badRequest } from '../platform/errors/api-error.js';
import { authenticate } from '../platform/auth/authenticate.js';
import { parseScopeString } from '../platform/auth/scopes.js';
import { errorResponses } from '../platform/http/schemas.js';

const identityHeaders = {
  'X-Tessera-Subject': { type: 'string', description: 'The user the credential acts for (uuid)' },
  'X-Tessera-Client-Id': { type: 'string', description: 'The SDK key client_id, for JWT access tokens; empty otherwise' },
  'X-Tessera-Scopes': { type: 'string', description: 'Granted scopes, space-separated' },
  'X-Tessera-Org-Id': { type: 'string', description: 'The organization the token is bound to; empty when none' },
} as const;

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
          'Reads `Authorization: Bearer` or `x-access-token`. With `TESSERA_TRUST_PROXY` set, `X-Forwarded-For` gives the client ' +
          'address used in logs and rate limits, and `X-Forwarded-Method`/`X-Forwarded-Uri` are logged; otherwise they are ignored. ' +
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
      const principal = await authenticate(request, { scopes: required });
      if (app.config.trustProxy !== false) {
        const fm = request.headers['x-forwarded-method'];
        const fu = request.headers['x-forwarded-uri'];
        if (fm || fu) request.log.debug({ forwardedMethod: fm, forwardedUri: fu, credential: principal.kind }, 'gateway verify');
      }
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
