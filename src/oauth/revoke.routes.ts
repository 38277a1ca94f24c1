import type { FastifyInstance } from 'fastify';
import { invalidRequest } from '../platform/errors/oauth-error.js';
import { formOnly, noStore, OAUTH_BODY_LIMIT, type FormBody } from '../platform/http/form.js';
import { oauthErrorResponses } from '../platform/http/schemas.js';
import { Revocations } from './revocation.service.js';

const revokeBody = {
  type: 'object',
  properties: {
    token: { type: 'string', description: 'The access token to revoke' },
    token_type_hint: { type: 'string', description: 'Ignored' },
    client_id: { type: 'string' },
    client_secret: { type: 'string' },
    client_assertion_type: { type: 'string' },
    client_assertion: { type: 'string' },
  },
} as const;

/**
 * POST /oauth/revoke (RFC 7009). An SDK key revokes a token issued to it: the jti goes on the
 * denylist until the token expires, on every instance (NOTIFY). Unknown, invalid or expired
 * tokens get 200 (nothing to do); a valid token of another client gets 400 and stays active.
 */
export async function revokeRoute(app: FastifyInstance): Promise<void> {
  const { verifier, revoked } = app.oauth;
  const revocations = new Revocations({ db: app.db, verifier, revoked, clockToleranceSeconds: app.config.clockToleranceSeconds });
  app.post(
    '/oauth/revoke',
    {
      bodyLimit: OAUTH_BODY_LIMIT,
      config: { errorFormat: 'oauth' },
      schema: {
        tags: ['oauth'],
        operationId: 'revokeToken',
        summary: 'Token revocation (RFC 7009): an SDK key revokes one of its access tokens',
        consumes: ['application/x-www-form-urlencoded'],
        security: [{ clientBasic: [] }, {}],
        body: revokeBody,
        response: {
          200: { type: 'null', description: 'Revoked, or nothing to revoke (unknown or expired token)' },
          ...oauthErrorResponses(400, 401, 413, 415, 429, 503),
        },
      },
      preValidation: formOnly,
    },
    async (request, reply) => {
      const client = await app.oauth.clientAuth.authenticateClient(request);
      const body = request.body as FormBody;
      if (body.token === undefined || body.token === '') throw invalidRequest('token is required');
      noStore(reply);
      await revocations.revokeAccessToken(client, body.token, { ip: request.ip, requestId: request.id });
      return reply.code(200).send();
    },
  );
}
