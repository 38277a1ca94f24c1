import type { FastifyInstance } from 'fastify';
import { requestActor } from '../platform/auth/request-actor.js';
import { listMembers, listOrganizations } from './memberships.repository.js';
import { findOrganization } from './organizations.repository.js';
import type { Role } from './identity.table.js';
import { notFound } from '../platform/errors/api-error.js';
import { createOrganizationAsOperator } from './organizations.service.js';
import { changeMembership, requireMembership, type MembershipActor } from './memberships.service.js';
import { cancelInvitation, myInvitations, organizationInvitations, putMember, respondToInvitation } from './invitations.service.js';
import type { InvitationView } from './invitations.repository.js';
import { dateTimeSchema, errorResponses, nextAfterSchema, pageQuerySchema, uuidSchema } from '../platform/http/schemas.js';

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

const invitation = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'organization_id', 'organization_name', 'user_id', 'role', 'invited_by', 'created_at', 'expires_at'],
  properties: {
    id: uuidSchema,
    organization_id: uuidSchema,
    organization_name: { type: 'string' },
    user_id: uuidSchema,
    role: roleSchema,
    invited_by: { anyOf: [uuidSchema, { type: 'null' }], description: 'The inviting user; null when an operator invited' },
    created_at: dateTimeSchema,
    expires_at: dateTimeSchema,
  },
} as const;

const invitationCreated = {
  type: 'object',
  additionalProperties: false,
  required: ['invitation'],
  properties: { invitation },
} as const;

const invitationList = {
  type: 'object',
  additionalProperties: false,
  required: ['invitations'],
  properties: { invitations: { type: 'array', items: invitation } },
} as const;

function invitationBody(i: InvitationView) {
  return {
    id: i.id,
    organization_id: i.organization_id,
    organization_name: i.organization_name,
    user_id: i.user_id,
    role: i.role,
    invited_by: i.invited_by,
    created_at: i.created_at.toISOString(),
    expires_at: i.expires_at.toISOString(),
  };
}

const orgParams = { type: 'object', required: ['orgId'], properties: { orgId: uuidSchema } } as const;
const memberParams = { type: 'object', required: ['orgId', 'userId'], properties: { orgId: uuidSchema, userId: uuidSchema } } as const;
const invitationParams = {
  type: 'object',
  required: ['orgId', 'invitationId'],
  properties: { orgId: uuidSchema, invitationId: uuidSchema },
} as const;
const myInvitationParams = { type: 'object', required: ['invitationId'], properties: { invitationId: uuidSchema } } as const;
const roleBody = { type: 'object', additionalProperties: false, required: ['role'], properties: { role: roleSchema } } as const;

const MATRIX =
  'Owners may invite users with any role, change any role and remove anyone. Maintainers may invite users as member or ' +
  'maintainer, promote members to maintainer, remove members, and step down or leave themselves; they cannot grant ' +
  'owner or touch owners and other maintainers. Members may only leave. Refused changes answer 403; the last owner ' +
  'cannot be removed or demoted (409); non-members get 404.';

const CONSENT =
  'A user who is not a member is never added here: they get an invitation (202), which becomes a membership only when ' +
  'they accept it (POST /api/users/me/invitations/{invitationId}/accept) within 7 days. Inviting again renews it.';

async function membersOf(app: FastifyInstance, orgId: string) {
  const rows = await listMembers(app.db, orgId);
  return rows.map((r) => ({ user_id: r.user_id, email: r.email, name: r.name, role: r.role, joined_at: r.created_at.toISOString() }));
}

/** Organization membership managed by owners and maintainers (under /api). */
export async function organizationRoutes(app: FastifyInstance): Promise<void> {
  const api = app.requireAuth('api');
  const manageApi = app.requireCredentialManager('api');

  // --- members managing their organization -------------------------------------------------
  app.get<{ Params: { orgId: string } }>(
    '/api/organizations/:orgId/members',
    {
      preHandler: api,
      schema: {
        tags: ['organizations'],
        operationId: 'listOrganizationMembers',
        summary: "List the organization's members and their roles (members)",
        params: orgParams,
        response: { 200: memberList, ...errorResponses(400, 401, 403, 404) },
      },
    },
    async (request) => {
      await requireMembership(app.db, request.params.orgId, request.principal!.userId);
      return { members: await membersOf(app, request.params.orgId) };
    },
  );

  const deps = { db: app.db, clock: app.clock, cascades: app.cascades, forget: app.forgetCredentials };
  const asUserActor = (request: Parameters<typeof requestActor>[0]) => ({
    kind: 'user' as const,
    userId: request.principal!.userId,
    audit: requestActor(request),
  });

  app.put<{ Params: { orgId: string; userId: string }; Body: { role: Role } }>(
    '/api/organizations/:orgId/members/:userId',
    {
      preHandler: manageApi,
      schema: {
        tags: ['organizations'],
        operationId: 'putOrganizationMember',
        summary: "Change a member's role, or invite a user (owners; maintainers within limits)",
        description: `${CONSENT} ${MATRIX}`,
        params: memberParams,
        body: roleBody,
        response: {
          200: membership,
          202: { ...invitationCreated, description: 'Not a member: invited (a membership once the user accepts)' },
          ...errorResponses(400, 401, 403, 404, 409),
        },
      },
    },
    async (request, reply) => {
      const r = await putMember(deps, asUserActor(request), request.params.orgId, request.params.userId, request.body.role);
      if (r.kind === 'invited') return reply.code(202).send({ invitation: invitationBody(r.invitation) });
      const c = r.change;
      return { organization_id: c.organizationId, user_id: c.userId, role: c.role, previous_role: c.previousRole };
    },
  );

  app.delete<{ Params: { orgId: string; userId: string } }>(
    '/api/organizations/:orgId/members/:userId',
    {
      preHandler: manageApi,
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
      await changeMembership(deps, asUserActor(request), request.params.orgId, request.params.userId, null);
      return reply.code(204).send();
    },
  );

  // --- invitations -------------------------------------------------------------------------
  app.get<{ Params: { orgId: string } }>(
    '/api/organizations/:orgId/invitations',
    {
      preHandler: api,
      schema: {
        tags: ['organizations'],
        operationId: 'listOrganizationInvitations',
        summary: "The organization's pending invitations (owners and maintainers)",
        description: 'Invitations not yet accepted, declined, cancelled or expired. Members get 403, non-members 404.',
        params: orgParams,
        response: { 200: invitationList, ...errorResponses(400, 401, 403, 404) },
      },
    },
    async (request) => {
      const rows = await organizationInvitations(deps, request.principal!.userId, request.params.orgId);
      return { invitations: rows.map(invitationBody) };
    },
  );

  app.delete<{ Params: { orgId: string; invitationId: string } }>(
    '/api/organizations/:orgId/invitations/:invitationId',
    {
      preHandler: manageApi,
      schema: {
        tags: ['organizations'],
        operationId: 'cancelOrganizationInvitation',
        summary: 'Cancel an invitation (owners; maintainers except invitations to become owner)',
        params: invitationParams,
        response: { 204: { type: 'null', description: 'Cancelled' }, ...errorResponses(400, 401, 403, 404) },
      },
    },
    async (request, reply) => {
      await cancelInvitation(deps, asUserActor(request), request.params.orgId, request.params.invitationId);
      return reply.code(204).send();
    },
  );

  app.get(
    '/api/users/me/invitations',
    {
      preHandler: api,
      schema: {
        tags: ['organizations'],
        operationId: 'listMyInvitations',
        summary: 'My pending invitations to organizations',
        description: 'An invitation is not a membership: it grants nothing until accepted.',
        response: { 200: invitationList, ...errorResponses(401, 403) },
      },
    },
    async (request) => ({ invitations: (await myInvitations(deps, request.principal!.userId)).map(invitationBody) }),
  );

  app.post<{ Params: { invitationId: string } }>(
    '/api/users/me/invitations/:invitationId/accept',
    {
      preHandler: manageApi,
      schema: {
        tags: ['organizations'],
        operationId: 'acceptInvitation',
        summary: 'Accept an invitation: become a member with its role',
        description: 'An invitation that is not yours, has expired, or was declined or cancelled answers 404.',
        params: myInvitationParams,
        response: { 200: membership, ...errorResponses(400, 401, 403, 404) },
      },
    },
    async (request) => {
      const c = (await respondToInvitation(deps, requestActor(request), request.principal!.userId, request.params.invitationId, true))!;
      return { organization_id: c.organizationId, user_id: c.userId, role: c.role, previous_role: c.previousRole };
    },
  );

  app.post<{ Params: { invitationId: string } }>(
    '/api/users/me/invitations/:invitationId/decline',
    {
      preHandler: manageApi,
      schema: {
        tags: ['organizations'],
        operationId: 'declineInvitation',
        summary: 'Decline an invitation',
        description: 'An invitation that is not yours, has expired, or was accepted or cancelled answers 404.',
        params: myInvitationParams,
        response: { 204: { type: 'null', description: 'Declined' }, ...errorResponses(400, 401, 403, 404) },
      },
    },
    async (request, reply) => {
      await respondToInvitation(deps, requestActor(request), request.principal!.userId, request.params.invitationId, false);
      return reply.code(204).send();
    },
  );
}

/** Operators managing organizations and their members (paths under /admin, guarded by the admin surface). */
export async function adminOrganizationRoutes(app: FastifyInstance): Promise<void> {
  const deps = { db: app.db, clock: app.clock, cascades: app.cascades, forget: app.forgetCredentials };
  app.post<{ Body: { name: string; owner_id?: string } }>(
    '/organizations',
    {
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
      const { name, owner_id: ownerId } = request.body;
      const org = await createOrganizationAsOperator(app.db, requestActor(request), { name, ...(ownerId ? { ownerId } : {}) });
      reply.code(201);
      return { id: org.id, name: org.name, created_at: org.created_at.toISOString(), member_count: ownerId ? 1 : 0 };
    },
  );

  app.get<{ Querystring: { limit?: number; after?: string } }>(
    '/organizations',
    {
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
    '/organizations/:orgId',
    {
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
    '/organizations/:orgId/members/:userId',
    {
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
      const c = await changeMembership(deps, asOperator(request), request.params.orgId, request.params.userId, request.body.role);
      reply.code(c.previousRole === null ? 201 : 200);
      return { organization_id: c.organizationId, user_id: c.userId, role: c.role, previous_role: c.previousRole };
    },
  );

  app.delete<{ Params: { orgId: string; userId: string } }>(
    '/organizations/:orgId/members/:userId',
    {
      schema: {
        tags: ['admin'],
        operationId: 'adminRemoveOrganizationMember',
        summary: 'Remove a member (the last owner cannot be removed: 409)',
        params: memberParams,
        response: { 204: { type: 'null', description: 'Removed' }, ...errorResponses(400, 401, 403, 404, 409) },
      },
    },
    async (request, reply) => {
      await changeMembership(deps, asOperator(request), request.params.orgId, request.params.userId, null);
      return reply.code(204).send();
    },
  );
}
