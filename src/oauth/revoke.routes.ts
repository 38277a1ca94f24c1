import type { FastifyInstance } from 'fastify';
import { invalidRequest } from '../platform/errors/oauth-error.js';
import { recordAudit } from '../platform/database/audit.repository.js';
import { publishChange } from '../platform/database/notifications.js';
import { insertRevokedToken } from './revoked-tokens.repository.js';
import { looksLikeJwt } from './access-token.js';
import { REVOKED_TOKEN } from './oauth.plugin.js';
import { oauthErrorResponses } from '../platform/http/schemas.js';
import { formOnly, noStore, OAUTH_BODY_LIMIT, type FormBody, type OAuthRouteContext } from './endpoint-common.js';

const revokeBody = {
  type: 'object',
  properties: {
    token: { type: 'string', description: 'The access token to revoke' },
    token_type_hint: { type: 'string', description: 'Ignored' },
    client_id: { type: 'string' },
    client_secret: { type: 'string' },
  },
} as const;

/**
 * POST /oauth/revoke (RFC 7009). An SDK key revokes a token issued to it: the jti goes on the
 * denylist until the token expires, on every instance (NOTIFY). Unknown, invalid or expired
 * tokens get 200 (nothing to do); a valid token of another client gets 400 and stays active.
 */
export async function revokeRoute(app: FastifyInstance, ctx: OAuthRouteContext): Promise<void> {
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
      const client = (await ctx.authenticateClient(request))!;
      const body = request.body as FormBody;
      if (body.token === undefined || body.token === '') throw invalidRequest('token is required');
      noStore(reply);
      const token = body.token;
      if (token.length <= 4096 && looksLikeJwt(token)) {
        const r = await app.oauth.verifier.verify(token, { audience: null });
        if (r.ok) {
          if (r.claims.client_id !== client.clientId) throw invalidRequest('the token was not issued to this client');
          const { jti, exp } = r.claims;
          await app.db.transaction().execute(async (trx) => {
            await insertRevokedToken(trx, { jti, clientId: client.clientId, expiresAt: new Date(exp * 1000) });
            await recordAudit(
              trx,
              { userId: client.userId, credential: `client:${client.clientId}`, ip: request.ip, requestId: request.id },
              { action: 'oauth.token.revoke', targetType: 'access_token', targetId: jti, details: { client_id: client.clientId } },
            );
            await publishChange(trx, { type: REVOKED_TOKEN, id: jti, exp });
          });
          app.oauth.revoked.add(jti, exp * 1000 + app.config.clockToleranceSeconds * 1000);
        }
      }
      return reply.code(200).send();
    },
  );
}
