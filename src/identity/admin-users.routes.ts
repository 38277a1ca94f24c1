import type { FastifyInstance } from 'fastify';
import { notFound } from '../platform/errors/api-error.js';
import { requestActor } from '../platform/auth/request-actor.js';
import { findUserById, listUsers } from './users.repository.js';
import { activateUser, createUserAudited, suspendUser } from './users.service.js';
import { errorResponses, nextAfterSchema, pageQuerySchema, uuidSchema } from '../platform/http/schemas.js';
import { userSchema, userView } from './users.routes.js';

const idParams = { type: 'object', additionalProperties: false, required: ['id'], properties: { id: uuidSchema } } as const;

/** Operators managing users (scope admin). */
export async function adminUsersRoutes(app: FastifyInstance): Promise<void> {
  const security: Array<Record<string, string[]>> = [{ bearer: [] }, { accessToken: [] }];

  app.get<{ Querystring: { limit?: number; after?: string } }>(
    '/users',
    {
      schema: {
        tags: ['admin'],
        operationId: 'adminListUsers',
        summary: 'List users, by id (page with `after` = the last id seen)',
        security,
        querystring: pageQuerySchema,
        response: {
          200: {
            type: 'object',
            additionalProperties: false,
            required: ['users', 'next_after'],
            properties: { users: { type: 'array', items: userSchema }, next_after: nextAfterSchema },
          },
          ...errorResponses(400, 401, 403, 429, 503),
        },
      },
    },
    async (request) => {
      const limit = request.query.limit ?? 100;
      const users = await listUsers(app.db, { limit, after: request.query.after });
      return { users: users.map(userView), next_after: users.length === limit ? users[users.length - 1]!.id : null };
    },
  );

  app.post<{ Body: { email: string; name: string } }>(
    '/users',
    {
      schema: {
        tags: ['admin'],
        operationId: 'adminCreateUser',
        summary: 'Create a user',
        security,
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['email', 'name'],
          properties: {
            email: { type: 'string', minLength: 3, maxLength: 320, pattern: '^[^\\s@]+@[^\\s@]+$' },
            name: { type: 'string', minLength: 1, maxLength: 200, pattern: '\\S' },
          },
        },
        response: { 201: userSchema, ...errorResponses(400, 401, 403, 409, 413, 415, 429, 503) },
      },
    },
    async (request, reply) => {
      const user = await createUserAudited(app.db, requestActor(request), request.body);
      reply.code(201);
      return userView(user);
    },
  );

  app.get<{ Params: { id: string } }>(
    '/users/:id',
    {
      schema: {
        tags: ['admin'],
        operationId: 'adminGetUser',
        summary: 'One user',
        security,
        params: idParams,
        response: { 200: userSchema, ...errorResponses(400, 401, 403, 404, 429, 503) },
      },
    },
    async (request) => {
      const user = await findUserById(app.db, request.params.id);
      if (!user) throw notFound('user');
      return userView(user);
    },
  );

  app.post<{ Params: { id: string } }>(
    '/users/:id/suspend',
    {
      schema: {
        tags: ['admin'],
        operationId: 'adminSuspendUser',
        summary:
          'Suspend a user: every API token and session of theirs ends and every SDK key is disabled, at once, on every ' +
          'instance; every token issued before stays refused for good, even after activation',
        security,
        params: idParams,
        response: { 200: userSchema, ...errorResponses(400, 401, 403, 404, 429, 503) },
      },
    },
    async (request) => {
      const done = await suspendUser(app, { userId: request.params.id, now: new Date(app.clock.now()), actor: requestActor(request) });
      if (!done) throw notFound('user');
      app.forgetCredentials({ userIds: [done.user.id] });
      return userView(done.user);
    },
  );

  app.post<{ Params: { id: string } }>(
    '/users/:id/activate',
    {
      schema: {
        tags: ['admin'],
        operationId: 'adminActivateUser',
        summary: 'Make a suspended user active again (nothing comes back: tokens stay revoked, SDK keys disabled)',
        security,
        params: idParams,
        response: { 200: userSchema, ...errorResponses(400, 401, 403, 404, 429, 503) },
      },
    },
    async (request) => {
      const user = await activateUser(app.db, { userId: request.params.id, actor: requestActor(request) });
      if (!user) throw notFound('user');
      return userView(user);
    },
  );
}
