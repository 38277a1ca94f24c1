import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ApiError } from '../platform/errors/api-error.js';
import { requestActor } from '../platform/auth/request-actor.js';
import { API_SCOPES } from '../platform/auth/scopes.js';
import { findUserByEmail, findUserById, listUsers, type User } from '../identity/users.repository.js';
import { activateUser, createUserAudited, suspendUser } from '../identity/users.service.js';
import { listAuditEvents } from '../platform/database/audit.repository.js';
import { findOrganization, ROLES } from '../identity/organizations.repository.js';
import { listMembers, listOrganizations } from '../identity/memberships.repository.js';
import { changeMembership, type MembershipActor } from '../identity/memberships.service.js';
import { createOrganizationAsOperator } from '../identity/organizations.service.js';
import type { Role } from '../identity/identity.table.js';
import { DEFAULT_INVITATION_SCOPES, inviteUser } from '../people/invitations.js';
import { HIDDEN, field, list, when, UUID, ADMIN_PAGE } from './forms.js';
import type { ConsoleContext } from './context.js';

/** Operator pages (scope admin): users, organizations, signing keys and the audit log. */
export function adminPages(app: FastifyInstance, ctx: ConsoleContext): void {
  const { config, now, page, operator, membershipDeps } = ctx;

  // --- Operators: users ----------------------------------------------------------------------

  async function usersPage(request: FastifyRequest<{ Querystring: { q?: string; after?: string } }>, reply: FastifyReply, data: Record<string, unknown> = {}) {
    const q = typeof request.query?.q === 'string' ? request.query.q.trim().slice(0, 320) : '';
    const after = typeof request.query?.after === 'string' && /^[0-9a-f-]{36}$/i.test(request.query.after) ? request.query.after : undefined;
    let users: User[];
    if (q) {
      const found = /^[0-9a-f-]{36}$/i.test(q) ? await findUserById(app.db, q) : await findUserByEmail(app.db, q);
      users = found ? [found] : [];
    } else users = await listUsers(app.db, { limit: ADMIN_PAGE, after });
    return page(reply, 'admin-users', {
      title: 'Users',
      nav: 'admin-users',
      q,
      users,
      next: !q && users.length === ADMIN_PAGE ? users[users.length - 1]!.id : null,
      scopeChoices: API_SCOPES,
      values: { email: '', name: '', scopes: [...DEFAULT_INVITATION_SCOPES] },
      ...data,
    });
  }

  app.get<{ Querystring: { q?: string; after?: string } }>('/admin/users', { ...HIDDEN, preHandler: operator }, async (request, reply) =>
    usersPage(request, reply),
  );

  app.post('/admin/users/invite', { ...HIDDEN, preHandler: operator }, async (request, reply) => {
    const email = field(request.body, 'email', 400).trim();
    const name = field(request.body, 'name', 300).trim();
    const scopes = [...new Set(list(request.body, 'scopes'))];
    const values = { email, name, scopes };
    const errors: Record<string, string> = {};
    if (!/^[^\s@]+@[^\s@]+$/.test(email) || email.length > 320) errors.email = 'Enter an email address.';
    if (name.length > 200) errors.name = 'Use at most 200 characters.';
    if (scopes.length === 0) errors.scopes = 'Choose at least one scope.';
    else if (scopes.some((x) => !(API_SCOPES as readonly string[]).includes(x))) errors.scopes = 'Choose among the scopes listed.';
    if (Object.keys(errors).length) return usersPage(request as never, reply.code(400), { errors, values });
    const actor = requestActor(request);
    const user = (await findUserByEmail(app.db, email)) ?? (await createUserAudited(app.db, actor, { email, name: name || email.split('@')[0]! }));
    const inv = await inviteUser(app.db, config.pepper, actor, {
      userId: user.id,
      scopes,
      ttlSeconds: config.console.invitationTtlSeconds,
      now: now(),
      issuer: config.issuer,
    });
    return usersPage(request as never, reply.code(201), { invited: { email: user.email, url: inv!.url, expires: when(inv!.expiresAt) } });
  });

  app.post<{ Params: { id: string; action: string } }>('/admin/users/:id/:action', { ...HIDDEN, preHandler: operator }, async (request, reply) => {
    const { id, action } = request.params;
    if (!/^[0-9a-f-]{36}$/i.test(id) || (action !== 'suspend' && action !== 'activate'))
      return usersPage(request as never, reply.code(404), { formError: 'No such user or action.' });
    if (id === request.consoleUser!.id && action === 'suspend')
      return usersPage(request as never, reply.code(400), { formError: 'You cannot suspend yourself here.' });
    const done =
      action === 'suspend'
        ? (await suspendUser(app, { userId: id, now: now(), actor: requestActor(request) }))?.user
        : await activateUser(app.db, { userId: id, actor: requestActor(request) });
    if (done && action === 'suspend') app.forgetCredentials({ userIds: [done.id] });
    if (!done) return usersPage(request as never, reply.code(404), { formError: 'No such user.' });
    return usersPage(request as never, reply, { notice: `${done.email} is ${done.status}.` });
  });

  // --- Operators: organizations --------------------------------------------------------------

  const asOperator = (request: FastifyRequest): MembershipActor => ({ kind: 'operator', audit: requestActor(request) });
  type OrgListQuery = { Querystring: { q?: string; after?: string } };

  async function orgsAdminPage(request: FastifyRequest<OrgListQuery>, reply: FastifyReply, data: Record<string, unknown> = {}) {
    const q = typeof request.query?.q === 'string' ? request.query.q.trim().slice(0, 200) : '';
    const after = typeof request.query?.after === 'string' && UUID.test(request.query.after) ? request.query.after : undefined;
    const rows = await listOrganizations(app.db, { limit: ADMIN_PAGE, after, nameContains: q || undefined });
    const last = rows[rows.length - 1];
    return page(reply, 'admin-organizations', {
      title: 'Organizations',
      nav: 'admin-organizations',
      q,
      organizations: rows.map((r) => ({ id: r.id, name: r.name, created: when(r.created_at), members: Number(r.member_count ?? 0) })),
      next:
        rows.length === ADMIN_PAGE && last ? `/console/admin/organizations?${new URLSearchParams({ ...(q ? { q } : {}), after: last.id }).toString()}` : null,
      values: { name: '', owner_email: '' },
      ...data,
    });
  }

  /** One organization as an operator sees it: every member, each role changeable and removable. */
  async function orgAdminPage(reply: FastifyReply, orgId: string, data: Record<string, unknown> = {}) {
    const org = UUID.test(orgId) ? await findOrganization(app.db, orgId) : undefined;
    if (!org) {
      reply.code(404);
      return page(reply, 'message', { title: 'Not found', message: 'No such organization.' });
    }
    return page(reply, 'admin-organization', {
      title: org.name,
      nav: 'admin-organizations',
      org: { id: org.id, name: org.name, created: when(org.created_at) },
      roles: ROLES,
      members: await listMembers(app.db, org.id),
      values: { email: '', role: 'member' },
      ...data,
    });
  }

  /** Runs an operator's membership change, showing a refusal (404/409) on the organization page. */
  async function orgAdminAction(reply: FastifyReply, orgId: string, fn: () => Promise<string>) {
    try {
      return orgAdminPage(reply, orgId, { notice: await fn() });
    } catch (err) {
      if (err instanceof ApiError && err.statusCode < 500) return orgAdminPage(reply.code(err.statusCode), orgId, { formError: err.message });
      throw err;
    }
  }

  app.get<OrgListQuery>('/admin/organizations', { ...HIDDEN, preHandler: operator }, async (request, reply) => orgsAdminPage(request, reply));

  app.post('/admin/organizations', { ...HIDDEN, preHandler: operator }, async (request, reply) => {
    const name = field(request.body, 'name', 300).trim();
    const ownerEmail = field(request.body, 'owner_email', 400).trim();
    const values = { name, owner_email: ownerEmail };
    const errors: Record<string, string> = {};
    if (!name) errors.name = 'Enter a name.';
    else if (name.length > 200) errors.name = 'Use at most 200 characters.';
    const owner = ownerEmail ? await findUserByEmail(app.db, ownerEmail) : undefined;
    if (ownerEmail && !owner) errors.owner_email = 'No user has this email address. Invite them on the Users page first, or leave this empty.';
    if (Object.keys(errors).length) return orgsAdminPage(request as never, reply.code(400), { errors, values });
    try {
      const org = await createOrganizationAsOperator(app.db, requestActor(request), { name, ...(owner ? { ownerId: owner.id } : {}) });
      return orgsAdminPage(request as never, reply.code(201), {
        notice: owner ? `${org.name} is created, with ${owner.email} as its owner.` : `${org.name} is created, without members yet.`,
        created: { id: org.id, name: org.name },
      });
    } catch (err) {
      // The owner can disappear between the look-up and the transaction: the service then refuses.
      if (err instanceof ApiError && err.statusCode === 404) {
        return orgsAdminPage(request as never, reply.code(400), { errors: { owner_email: 'No user has this email address.' }, values });
      }
      throw err;
    }
  });

  app.get<{ Params: { orgId: string } }>('/admin/organizations/:orgId', { ...HIDDEN, preHandler: operator }, async (request, reply) =>
    orgAdminPage(reply, request.params.orgId),
  );

  app.post<{ Params: { orgId: string } }>('/admin/organizations/:orgId/members', { ...HIDDEN, preHandler: operator }, async (request, reply) => {
    const { orgId } = request.params;
    const email = field(request.body, 'email', 400).trim();
    const role = field(request.body, 'role', 20) as Role;
    const values = { email, role };
    if (!UUID.test(orgId)) return orgAdminPage(reply.code(404), orgId);
    const errors: Record<string, string> = {};
    const target = email ? await findUserByEmail(app.db, email) : undefined;
    if (!email) errors.email = 'Enter the email address of an existing user.';
    else if (!target) errors.email = 'No user has this email address.';
    if (!ROLES.includes(role)) errors.role = 'Choose a role.';
    if (Object.keys(errors).length) return orgAdminPage(reply.code(400), orgId, { errors, values });
    try {
      const c = await changeMembership(membershipDeps, asOperator(request), orgId, target!.id, role);
      return orgAdminPage(reply, orgId, {
        notice: c.previousRole === null ? `${target!.email} is now ${role}.` : `${target!.email} was ${c.previousRole} and is now ${role}.`,
      });
    } catch (err) {
      if (err instanceof ApiError && err.statusCode < 500) return orgAdminPage(reply.code(err.statusCode), orgId, { formError: err.message, values });
      throw err;
    }
  });

  app.post<{ Params: { orgId: string; userId: string } }>(
    '/admin/organizations/:orgId/members/:userId',
    { ...HIDDEN, preHandler: operator },
    async (request, reply) => {
      const { orgId, userId } = request.params;
      const role = field(request.body, 'role', 20) as Role;
      if (!UUID.test(orgId) || !UUID.test(userId)) return orgAdminPage(reply.code(404), orgId);
      if (!ROLES.includes(role)) return orgAdminPage(reply.code(400), orgId, { formError: 'Choose a role.' });
      return orgAdminAction(reply, orgId, async () => {
        await changeMembership(membershipDeps, asOperator(request), orgId, userId, role);
        return 'The role is changed.';
      });
    },
  );

  app.post<{ Params: { orgId: string; userId: string } }>(
    '/admin/organizations/:orgId/members/:userId/remove',
    { ...HIDDEN, preHandler: operator },
    async (request, reply) => {
      const { orgId, userId } = request.params;
      if (!UUID.test(orgId) || !UUID.test(userId)) return orgAdminPage(reply.code(404), orgId);
      return orgAdminAction(reply, orgId, async () => {
        await changeMembership(membershipDeps, asOperator(request), orgId, userId, null);
        return 'The member is removed.';
      });
    },
  );

  // --- Operators: signing keys ---------------------------------------------------------------

  const span = (s: number) => (s % 86400 === 0 ? `${s / 86400} days` : s % 3600 === 0 ? `${s / 3600} hours` : `${s} seconds`);
  const isoWhen = (s: string | null) => (s ? when(new Date(s)) : '—');
  async function keysAdminPage(reply: FastifyReply, data: Record<string, unknown> = {}) {
    const { lifecycle } = app.keyRotation;
    const keys = await lifecycle.list();
    const next = await lifecycle.nextRotationAt();
    return page(reply, 'admin-keys', {
      title: 'Signing keys',
      nav: 'admin-keys',
      alg: config.signingAlg,
      period: span(config.keyRotationPeriodSeconds),
      prepublish: span(config.keyPrepublishSeconds),
      nextRotation: isoWhen(next),
      keys: keys.map((k) => ({
        kid: k.kid,
        state: k.state,
        created: isoWhen(k.created_at),
        activated: isoWhen(k.activated_at),
        retired: isoWhen(k.retired_at),
        revoked: isoWhen(k.revoked_at),
      })),
      ...data,
    });
  }

  app.get('/admin/keys', { ...HIDDEN, preHandler: operator }, async (_request, reply) => keysAdminPage(reply));

  app.post('/admin/keys/rotate', { ...HIDDEN, preHandler: operator }, async (request, reply) => {
    const immediate = field(request.body, 'immediate', 5) === '1';
    const r = await app.keyRotation.lifecycle.rotate(requestActor(request), { immediate });
    const what = {
      scheduled: 'is published and starts signing after the pre-publication window',
      already_scheduled: 'was already waiting',
      activated: 'signs from now on',
      concurrent: 'was made by a concurrent rotation',
    }[r.outcome];
    return keysAdminPage(reply, { notice: `Key ${r.key.kid} ${what}.` });
  });

  app.post('/admin/keys/revoke', { ...HIDDEN, preHandler: operator }, async (request, reply) => {
    const kid = field(request.body, 'kid', 200).trim();
    const confirm = field(request.body, 'confirm_kid', 200).trim();
    if (!kid) return keysAdminPage(reply.code(400), { errors: { kid: 'Enter the key ID.' }, values: { kid } });
    if (confirm !== kid) return keysAdminPage(reply.code(400), { errors: { confirm_kid: 'Type the same key ID to confirm.' }, values: { kid } });
    try {
      await app.keyRotation.lifecycle.revoke(requestActor(request), kid);
      return keysAdminPage(reply, { notice: `Key ${kid} is revoked: every token it signed is refused.` });
    } catch (err) {
      if (err instanceof ApiError && (err.statusCode === 404 || err.statusCode === 409)) {
        const message = err.statusCode === 404 ? `No signing key ${kid}.` : err.message;
        return keysAdminPage(reply.code(err.statusCode), { errors: { kid: message }, values: { kid } });
      }
      throw err;
    }
  });

  // --- Operators: audit log ------------------------------------------------------------------

  app.get<{ Querystring: { action?: string; actor?: string; target?: string; before?: string } }>(
    '/admin/audit',
    { ...HIDDEN, preHandler: operator },
    async (request, reply) => {
      const str = (v: unknown, max: number) => (typeof v === 'string' ? v.trim().slice(0, max) : '');
      const filters = { action: str(request.query.action, 100), actor: str(request.query.actor, 36), target: str(request.query.target, 200) };
      const beforeRaw = str(request.query.before, 20);
      const before = /^\d{1,15}$/.test(beforeRaw) ? Number(beforeRaw) : undefined;
      if (filters.actor && !/^[0-9a-f-]{36}$/i.test(filters.actor)) {
        return page(reply.code(400), 'admin-audit', {
          title: 'Audit log',
          nav: 'admin-audit',
          filters,
          events: [],
          next: null,
          formError: 'The actor is a user ID.',
        });
      }
      const events = await listAuditEvents(app.db, {
        limit: ADMIN_PAGE,
        before,
        action: filters.action || undefined,
        actorUserId: filters.actor || undefined,
        targetId: filters.target || undefined,
      });
      const last = events[events.length - 1];
      const next =
        events.length === ADMIN_PAGE && last ? `/console/admin/audit?${new URLSearchParams({ ...filters, before: String(last.id) }).toString()}` : null;
      return page(reply, 'admin-audit', {
        title: 'Audit log',
        nav: 'admin-audit',
        filters,
        next,
        events: events.map((e) => ({
          when: when(e.occurred_at),
          action: e.action,
          actor: [e.actor_user_id, e.actor_credential].filter(Boolean).join(' · '),
          target: [e.target_type, e.target_id].filter(Boolean).join(' '),
          details: JSON.stringify(e.details),
        })),
      });
    },
  );
}
