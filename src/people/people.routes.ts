import type { FastifyInstance } from 'fastify';
import { notFound } from '../platform/errors/api-error.js';
import { requestActor } from '../platform/auth/request-actor.js';
import { API_SCOPES } from '../platform/auth/scopes.js';
import { dateTimeSchema, errorResponses, uuidSchema } from '../platform/http/schemas.js';
import { DEFAULT_INVITATION_SCOPES, inviteUser } from './invitations.js';

/** Operators inviting people to the console; mounted in the admin surface (paths relative to /admin). */
export async function adminPeopleRoutes(app: FastifyInstance): Promise<void> {
  app.post<{ Params: { id: string }; Body: { scopes?: string[]; expires_in?: number } }>(
    '/users/:id/invitations',
    {
      schema: {
        tags: ['admin'],
        operationId: 'adminInviteUser',
        summary: 'Invite a user to the console: a one-time link where they set a passkey or password',
        description:
          'The link is in this response only (its code is stored as a keyed hash) and works once, until `expires_at` ' +
          "(`expires_in` seconds, default 72 hours). A new invitation cancels the user's unused ones. The code is in the " +
          "link's fragment, so browsers never send it to a server. Using it gives the user a console sign-in grant with " +
          '`scopes` (default `api quantum_tokens`), unless they already hold a live one.',
        params: { type: 'object', additionalProperties: false, required: ['id'], properties: { id: uuidSchema } },
        body: {
          type: 'object',
          additionalProperties: false,
          properties: {
            scopes: { type: 'array', minItems: 1, maxItems: API_SCOPES.length, uniqueItems: true, items: { type: 'string', enum: [...API_SCOPES] } },
            expires_in: { type: 'integer', minimum: 300, maximum: 30 * 86400 },
          },
        },
        response: {
          201: {
            type: 'object',
            additionalProperties: false,
            required: ['id', 'user_id', 'url', 'scopes', 'expires_at'],
            properties: {
              id: uuidSchema,
              user_id: uuidSchema,
              url: { type: 'string', description: 'The one-time link, shown once' },
              scopes: { type: 'array', items: { type: 'string', enum: [...API_SCOPES] } },
              expires_at: dateTimeSchema,
            },
          },
          ...errorResponses(400, 401, 403, 404, 413, 415, 429, 503),
        },
      },
    },
    async (request, reply) => {
      const inv = await inviteUser(app.db, app.config.pepper, requestActor(request), {
        userId: request.params.id,
        scopes: request.body?.scopes ?? DEFAULT_INVITATION_SCOPES,
        ttlSeconds: request.body?.expires_in ?? app.config.console.invitationTtlSeconds,
        now: new Date(app.clock.now()),
        issuer: app.config.issuer,
      });
      if (!inv) throw notFound('user');
      reply.code(201).header('cache-control', 'no-store');
      return { id: inv.id, user_id: inv.userId, url: inv.url, scopes: inv.scopes, expires_at: inv.expiresAt.toISOString() };
    },
  );
}
