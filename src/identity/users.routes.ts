import type { FastifyInstance } from 'fastify';
import { notFound } from '../platform/errors/api-error.js';
import { findUserById, type User } from './users.repository.js';
import { organizationsOfUser } from './organizations.repository.js';
import { dateTimeSchema, errorResponses, uuidSchema } from '../platform/http/schemas.js';

export const userSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'email', 'name', 'status', 'created_at'],
  properties: {
    id: uuidSchema,
    email: { type: 'string' },
    name: { type: 'string' },
    status: { type: 'string', enum: ['active', 'suspended'] },
    created_at: dateTimeSchema,
  },
} as const;

export function userView(u: User) {
  return { id: u.id, email: u.email, name: u.name, status: u.status, created_at: u.created_at.toISOString() };
}

/** The caller's own account and organizations (organization discovery for SDKs). */
export async function usersRoutes(app: FastifyInstance): Promise<void> {
  const security: Array<Record<string, string[]>> = [{ bearer: [] }, { accessToken: [] }];

  app.get(
    '/api/users/me',
    {
      preHandler: app.requireAuth('api'),
      schema: {
        tags: ['self-service'],
        operationId: 'getMe',
        summary: 'The caller: user and the credential in use',
        security,
        response: {
          200: {
            type: 'object',
            additionalProperties: false,
            required: ['id', 'email', 'name', 'status', 'created_at', 'credential'],
            properties: {
              ...userSchema.properties,
              credential: {
                type: 'object',
                additionalProperties: false,
                required: ['kind', 'scopes', 'expires_at'],
                properties: {
                  kind: { type: 'string', enum: ['api_token', 'session', 'client'] },
                  scopes: { type: 'array', items: { type: 'string' } },
                  expires_at: { anyOf: [dateTimeSchema, { type: 'null' }] },
                },
              },
            },
          },
          ...errorResponses(401, 403, 404, 429, 503),
        },
      },
    },
    async (request) => {
      const p = request.principal!;
      const user = await findUserById(app.db, p.userId);
      if (!user) throw notFound('user');
      return {
        ...userView(user),
        credential: {
          kind: p.kind,
          scopes: [...p.scopes],
          expires_at: p.expiresAt === null ? null : new Date(p.expiresAt * 1000).toISOString(),
        },
      };
    },
  );

  app.get(
    '/api/users/me/organizations',
    {
      preHandler: app.requireAuth('api'),
      schema: {
        tags: ['self-service'],
        operationId: 'listMyOrganizations',
        summary: "The caller's organizations with the caller's role in each",
        security,
        response: {
          200: {
            type: 'object',
            additionalProperties: false,
            required: ['organizations'],
            properties: {
              organizations: {
                type: 'array',
                items: {
                  type: 'object',
                  additionalProperties: false,
                  required: ['id', 'name', 'role'],
                  properties: {
                    id: uuidSchema,
                    name: { type: 'string' },
                    role: { type: 'string', enum: ['owner', 'maintainer', 'member'] },
                  },
                },
              },
            },
          },
          ...errorResponses(401, 403, 429, 503),
        },
      },
    },
    async (request) => {
      const orgs = await organizationsOfUser(app.db, request.principal!.userId);
      return { organizations: orgs.map((o) => ({ id: o.id, name: o.name, role: o.role })) };
    },
  );
}
