import type { FastifyInstance } from 'fastify';
import { requestActor } from '../auth/request-actor.js';
import { recordAudit } from '../db/audit.repository.js';
import { listMembers, listOrganizations } from '../db/organization-members.repository.js';
import { createOrganization, findOrganization, upsertMembership } from '../db/organizations.repository.js';
import { findUserById } from '../db/users.repository.js';
import type { Role } from '../db/tables/identity.js';
import { notFound } from '../errors/api-error.js';
import { changeMembership, requireMembership, type MembershipActor } from '../organizations/members.service.js';
import { dateTimeSchema, errorResponses, nextAfterSchema, pageQuerySchema, uuidSchema } from './schemas.js';

const roleSchema = { type: 'string', enum: ['owner', 'maintainer', 'member'] } as const;

const member = {
  type: 'object',
  additionalProperties: false,
  required: ['user_id', 'email', 'name', 'role', 'joined_at'],
  properties: { user_id: uuidSchema, email: { type: 'string' }, name: { type: 'string' }, role: roleSchema, joined_at: dateTimeSchema },
} as const;

const memberList = {
  type: 'object',
  additionalProperties: false,
  required: ['members'],
  properties: { members: { type: 'array', items: member } },
} as const;

const membership = {
  type: 'object',
  additionalProperties: false,
  required: ['organization_id', 'user_id', 'role', 'previous_role'],
  properties: {
    organization_id: uuidSchema,
    user_id: uuidSchema,
    role: roleSchema,
    previous_role: { type: ['string', 'null'], enum: ['owner', 'maintainer', 'member', null] },
  },
} as const;

const organization = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'name', 'created_at'],
  properties: {
    id: uuidSchema,
    name: { type: 'string' },
    created_at: dateTimeSchema,
    member_count: { type: 'integer' },
    members: { type: 'array', items: member },
  },
} as const;

const orgParams = { type: 'object', required: ['orgId'], properties: { orgId: uuidSchema } } as const;
const memberParams = { type: 'object', required: ['orgId', 'userId'], properties: { orgId: uuidSchema, userId: uuidSchema } } as const;
const roleBody = { type: 'object', additionalProperties: false, required: ['role'], properties: { role: roleSchema } } as const;

const MATRIX =
  'Owners may add members with any role, change any role and remove anyone. Maintainers may add users as member or ' +
  'maintainer, promote members to maintainer, remove members, and step down or leave themselves; they cannot grant ' +
  'owner or touch owners and other maintainers. Members may only leave. Refused changes answer 403; the last owner ' +
  'cannot be removed or demoted (409); non-members get 404.';

async function membersOf(app: FastifyInstance, orgId: string) {
  const rows = await listMembers(app.db, orgId);
  return rows.map((r) => ({ user_id: r.user_id, email: r.email, name: r.name, role: r.role, joined_at: r.created_at.toISOString() }));
}

/** Organization membership: owners and maintainers under /api, operators under /admin. */
export async function organizationRoutes(app: FastifyInstance): Promise<void> {
  const api = app.requireAuth('api');
  const admin = app.requireAuth('admin');

  // --- members managing their organization -------------------------------------------------
  app.get<{ Params: { orgId: string } }>(
    '/api/organizations/:orgId/members',
    {
      preHandler: api,
      schema: {
        tags: ['organizations'],
        operationId: 'listOrganizationMembers',
        summary: 'List the organization\'s members and their roles (members)',
        params: orgParams,
        response: { 200: memberList, ...errorResponses(400, 401, 403, 404) },
      },
    },
    async (request) => {
      await requireMembership(app.db, request.params.orgId, request.principal!.userId);
      return { members: await membersOf(app, request.params.orgId) };
    },
  );

  const asUser = (request: Parameters<typeof requestActor>[0]): MembershipActor => ({
    kind: 'user',
    userId: request.principal!.userId,
    audit: requestActor(request),
  });

  app.put<{ Params: { orgId: string; userId: string }; Body: { role: Role } }>(
    '/api/organizations/:orgId/members/:userId',
    {
      preHandler: api,
      schema: {
        tags: ['organizations'],
        operationId: 'putOrganizationMember',
        summary: 'Add a member or change a member\'s role (owners; maintainers within limits)',
        description: MATRIX,
        params: memberParams,
        body: roleBody,
        response: { 200: membership, 201: membership, ...errorResponses(400, 401, 403, 404, 409) },
      },
    },
    async (request, reply) => {
      const c = await changeMembership(app.db, asUser(request), request.params.orgId, request.params.userId, request.body.role);
      reply.code(c.previousRole === null ? 201 : 200);
      return { organization_id: c.organizationId, user_id: c.userId, role: c.role, previous_role: c.previousRole };
    },
  );

  app.delete<{ Params: { orgId: string; userId: string } }>(
    '/api/organizations/:orgId/members/:userId',
    {
      preHandler: api,
      schema: {
        tags: ['organizations'],
        operationId: 'removeOrganizationMember',
        summary: 'Remove a member, or leave (owners; maintainers within limits; anyone for themselves)',
        description: MATRIX,
        params: memberParams,
        response: { 204: { type: 'null', description: 'Removed' }, ...errorResponses(400, 401, 403, 404, 409) },
      },
    },
    async (request, reply) => {
      await changeMembership(app.db, asUser(request), request.params.orgId, request.params.userId, null);
      return reply.code(204).send();
    },
  );

  // --- operators ----------------------------------------------------------------------------
  app.post<{ Body: { name: string; owner_id?: string } }>(
    '/admin/organizations',
    {
      preHandler: admin,
      schema: {
        tags: ['admin'],
        operationId: 'adminCreateOrganization',
        summary: 'Create an organization, optionally with its first owner',
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['name'],
          properties: { name: { type: 'string', minLength: 1, maxLength: 200, pattern: '\\S' }, owner_id: uuidSchema },
        },
        response: { 201: organization, ...errorResponses(400, 401, 403, 404) },
      },
    },
    async (request, reply) => {
      const actor = requestActor(request);
      const { name, owner_id: ownerId } = request.body;
      const org = await app.db.transaction().execute(async (trx) => {
        if (ownerId && !(await findUserById(trx, ownerId))) throw notFound('user');
        const o = await createOrganization(trx, name);
        await recordAudit(trx, actor, { action: 'organization.create', targetType: 'organization', targetId: o.id, organizationId: o.id, details: { name: o.name } });
        if (ownerId) {
          await upsertMembership(trx, o.id, ownerId, 'owner');
          await recordAudit(trx, actor, {
            action: 'membership.set', targetType: 'user', targetId: ownerId, organizationId: o.id, details: { role: 'owner', previous_role: null, by: 'operator' },
          });
        }
        return o;
      });
      reply.code(201);
      return { id: org.id, name: org.name, created_at: org.created_at.toISOString(), member_count: ownerId ? 1 : 0 };
    },
  );

  app.get<{ Querystring: { limit?: number; after?: string } }>(
    '/admin/organizations',
    {
      preHandler: admin,
      schema: {
        tags: ['admin'],
        operationId: 'adminListOrganizations',
        summary: 'List organizations (by id; page with ?after=<last id>)',
        querystring: pageQuerySchema,
        response: {
          200: {
            type: 'object',
            additionalProperties: false,
            required: ['organizations', 'next_after'],
            properties: { organizations: { type: 'array', items: organization }, next_after: nextAfterSchema },
          },
          ...errorResponses(400, 401, 403),
        },
      },
    },
    async (request) => {
      const limit = request.query.limit ?? 100;
      const rows = await listOrganizations(app.db, { limit, after: request.query.after });
      return {
        organizations: rows.map((r) => ({ id: r.id, name: r.name, created_at: r.created_at.toISOString(), member_count: Number(r.member_count ?? 0) })),
        next_after: rows.length === limit ? rows[rows.length - 1]!.id : null,
      };
    },
  );

  app.get<{ Params: { orgId: string } }>(
    '/admin/organizations/:orgId',
    {
      preHandler: admin,
      schema: {
        tags: ['admin'],
        operationId: 'adminGetOrganization',
        summary: 'An organization with its members',
        params: orgParams,
        response: { 200: organization, ...errorResponses(400, 401, 403, 404) },
      },
    },
    async (request) => {
      const org = await findOrganization(app.db, request.params.orgId);
      if (!org) throw notFound('organization');
      const members = await membersOf(app, org.id);
      return { id: org.id, name: org.name, created_at: org.created_at.toISOString(), member_count: members.length, members };
    },
  );

  const asOperator = (request: Parameters<typeof requestActor>[0]): MembershipActor => ({ kind: 'operator', audit: requestActor(request) });

  app.put<{ Params: { orgId: string; userId: string }; Body: { role: Role } }>(
    '/admin/organizations/:orgId/members/:userId',
    {
      preHandler: admin,
      schema: {
        tags: ['admin'],
        operationId: 'adminPutOrganizationMember',
        summary: 'Add a member or change a role (the last owner cannot be demoted: 409)',
        params: memberParams,
        body: roleBody,
        response: { 200: membership, 201: membership, ...errorResponses(400, 401, 403, 404, 409) },
      },
    },
    async (request, reply) => {
      const c = await changeMembership(app.db, asOperator(request), request.params.orgId, request.params.userId, request.body.role);
      reply.code(c.previousRole === null ? 201 : 200);
      return { organization_id: c.organizationId, user_id: c.userId, role: c.role, previous_role: c.previousRole };
    },
  );

  app.delete<{ Params: { orgId: string; userId: string } }>(
    '/admin/organizations/:orgId/members/:userId',
    {
      preHandler: admin,
      schema: {
        tags: ['admin'],
        operationId: 'adminRemoveOrganizationMember',
        summary: 'Remove a member (the last owner cannot be removed: 409)',
        params: memberParams,
        response: { 204: { type: 'null', description: 'Removed' }, ...errorResponses(400, 401, 403, 404, 409) },
      },
    },
    async (request, reply) => {
      await changeMembership(app.db, asOperator(request), request.params.orgId, request.params.userId, null);
      return reply.code(204).send();
    },
  );
}
