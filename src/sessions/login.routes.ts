import type { FastifyInstance } from 'fastify';
import { badRequest, invalidToken } from '../platform/errors/api-error.js';
import { bearerToken } from '../platform/auth/authenticate.js';
import { isWellFormedSessionToken, SESSION_TOKEN_PREFIX } from './session-token.js';
import { dateTimeSchema, errorResponses, uuidSchema } from '../platform/http/schemas.js';

/** Token login and logout, compatible with the IBM Quantum flow. */
export async function loginRoutes(app: FastifyInstance): Promise<void> {
  app.post<{ Body: { apiToken: string } }>(
    '/api/users/loginWithToken',
    {
      schema: {
        tags: ['login'],
        operationId: 'loginWithToken',
        summary: 'Exchange an API token for a temporary access token (a session)',
        description:
          'The returned `id` is accepted as `x-access-token` or `Authorization: Bearer` with the scopes of the API token, ' +
          'until `ttl` seconds pass (sliding when configured) or the session is logged out.',
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['apiToken'],
          properties: { apiToken: { type: 'string', minLength: 1, maxLength: 512 } },
        },
        response: {
          200: {
            type: 'object',
            additionalProperties: false,
            required: ['id', 'ttl', 'created', 'userId'],
            properties: {
              id: { type: 'string', description: 'The temporary access token' },
              ttl: { type: 'integer', description: "Seconds it lives (from creation, or from last use when sliding), never past the API token's expiry" },
              created: dateTimeSchema,
              userId: uuidSchema,
            },
          },
          ...errorResponses(400, 401, 413, 415, 429, 503),
        },
      },
    },
    async (request, reply) => {
      const issued = await app.sessionWrites.login({
        apiToken: request.body.apiToken,
        now: new Date(app.clock.now()),
        ip: request.ip,
        requestId: request.id,
      });
      if (!issued) throw invalidToken('the API token is invalid, expired or revoked');
      reply.header('cache-control', 'no-store');
      return {
        id: issued.token,
        // Never past the API token's expiry: the session ends with it.
        ttl: Math.min(app.config.sessionTtlSeconds, Math.floor((issued.session.expires_at.getTime() - issued.session.created_at.getTime()) / 1000)),
        created: issued.session.created_at.toISOString(),
        userId: issued.session.user_id,
      };
    },
  );

  app.post(
    '/api/users/logout',
    {
      schema: {
        tags: ['login'],
        operationId: 'logout',
        summary: 'End the session whose token is sent (x-access-token or Bearer)',
        description: 'Durable before the 204: from then on the token gets 401 on every endpoint of every instance. A second logout gets 401.',
        security: [{ accessToken: [] }, { bearer: [] }],
        response: {
          204: { type: 'null', description: 'Logged out' },
          ...errorResponses(400, 401, 429, 503),
        },
      },
    },
    async (request, reply) => {
      // The session is ended, not resolved: its token is read as every bearer is, then looked up by logout.
      const token = bearerToken(request);
      if (!token.startsWith(SESSION_TOKEN_PREFIX)) {
        throw badRequest('logout ends a session: send the token loginWithToken returned');
      }
      if (!isWellFormedSessionToken(token)) throw invalidToken();
      const ended = await app.sessionWrites.logout({
        token,
        now: new Date(app.clock.now()),
        ip: request.ip,
        requestId: request.id,
      });
      if (!ended) throw invalidToken();
      // This instance forgets it at once; the others through the notification (and their barrier).
      app.forgetCredentials({ sessionIds: [ended.id] });
      return reply.code(204).header('cache-control', 'no-store').send();
    },
  );
}
