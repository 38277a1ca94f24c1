import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ApiError } from '../platform/errors/api-error.js';
import { requestActor } from '../platform/auth/request-actor.js';
import { findUserByEmail } from '../identity/users.repository.js';
import { findMembership, findOrganization, ROLES } from '../identity/organizations.repository.js';
import { listMembers } from '../identity/memberships.repository.js';
import { changeMembership, requireMembership, requireWriter } from '../identity/memberships.service.js';
import { putMember, respondToInvitation } from '../identity/invitations.service.js';
import type { Role } from '../identity/identity.table.js';
import { putProviderToken, removeProviderToken } from '../provider-tokens/provider-tokens.service.js';
import { listProviderTokens, type ProviderTokenOwner } from '../provider-tokens/provider-tokens.repository.js';
import { HIDDEN, field, when, UUID } from './forms.js';
import type { ConsoleContext } from './context.js';

/** Provider tokens (the person's and their organizations') and the organization pages their members see. */
export function organizationsPages(app: FastifyInstance, ctx: ConsoleContext): void {
  const { registry, providerDeps, page, selfService, membershipDeps, accountPage } = ctx;

  // --- Provider tokens (the user's and organizations') -----------------------------------------

  type FieldView = { name: string; required: boolean; secret: boolean; options: string[] | null; value: string; error: string | null };
  type ProviderInput = { providerValues?: Record<string, Record<string, string>>; providerErrors?: Record<string, Record<string, string>> };

  /** One form per configured provider, its fields generated from the provider's JSON Schema; secret fields are never filled in. */
  async function providerViews(owner: ProviderTokenOwner, input: ProviderInput) {
    const saved = new Map((await listProviderTokens(app.db, owner)).map((r) => [r.provider, r]));
    return registry.names.map((name) => {
      const spec = registry.get(name)!;
      const schema = spec.schema as { required?: string[]; properties?: Record<string, { enum?: string[] }> };
      const values = input.providerValues?.[name] ?? {};
      const errors = input.providerErrors?.[name] ?? {};
      const fields: FieldView[] = Object.entries(schema.properties ?? {}).map(([f, prop]) => ({
        name: f,
        required: (schema.required ?? []).includes(f),
        secret: spec.secretFields.includes(f),
        options: Array.isArray(prop.enum) ? prop.enum : null,
        value: spec.secretFields.includes(f) ? '' : (values[f] ?? ''),
        error: errors[f] ?? null,
      }));
      const row = saved.get(name);
      return {
        name,
        title: spec.title,
        fields,
        label: values.label ?? row?.label ?? '',
        saved: row ? { label: row.label, hint: row.hint, updated: when(row.updated_at), lastUsed: when(row.last_used_at) } : null,
      };
    });
  }

  /**
   * Reads a provider form and saves it through the provider-token service; what to show again
   * (never the secret fields) and the errors by field when the schema refuses it.
   */
  async function saveProvider(
    request: FastifyRequest,
    owner: ProviderTokenOwner,
    provider: string,
  ): Promise<{ ok: true; title: string } | { ok: false; status: number; input: ProviderInput; formError?: string }> {
    const spec = registry.get(provider);
    if (!spec) return { ok: false, status: 404, input: {}, formError: 'No such provider.' };
    const props = Object.keys((spec.schema as { properties?: Record<string, unknown> }).properties ?? {});
    const credential: Record<string, string> = {};
    for (const f of props) {
      const v = field(request.body, f, 4096).trim();
      if (v) credential[f] = v;
    }
    const label = field(request.body, 'label', 200).trim();
    const shown = Object.fromEntries(Object.entries(credential).filter(([f]) => !spec.secretFields.includes(f)));
    const problems = registry.validate(provider, credential);
    if (problems.length) {
      const errors: Record<string, string> = {};
      for (const p of problems) {
        const name = p.field.replace(/^\//, '').split('/')[0] || props[0]!;
        errors[name] ??= p.message === 'is required' ? 'Fill this in.' : `This ${p.message}.`;
      }
      return { ok: false, status: 400, input: { providerValues: { [provider]: { ...shown, label } }, providerErrors: { [provider]: errors } } };
    }
    await putProviderToken(providerDeps, owner, provider, { label: label || null, credential }, requestActor(request));
    return { ok: true, title: spec.title };
  }

  async function providersPage(request: FastifyRequest, reply: FastifyReply, data: ProviderInput & Record<string, unknown> = {}) {
    const providers = await providerViews({ type: 'user', id: request.consoleSession!.userId }, data);
    return page(reply, 'provider-tokens', { title: 'Provider tokens', nav: 'provider-tokens', ...data, providers });
  }

  app.get('/provider-tokens', { ...HIDDEN, preHandler: selfService }, async (request, reply) => providersPage(request, reply));

  app.post<{ Params: { provider: string } }>('/provider-tokens/:provider', { ...HIDDEN, preHandler: selfService }, async (request, reply) => {
    const r = await saveProvider(request, { type: 'user', id: request.consoleUser!.id }, request.params.provider);
    if (!r.ok) return providersPage(request, reply.code(r.status), { ...r.input, formError: r.formError ?? null });
    return providersPage(request, reply, { notice: `Your ${r.title} credential is saved.` });
  });

  app.post<{ Params: { provider: string } }>('/provider-tokens/:provider/delete', { ...HIDDEN, preHandler: selfService }, async (request, reply) => {
    try {
      await removeProviderToken(providerDeps, { type: 'user', id: request.consoleUser!.id }, request.params.provider, requestActor(request));
      return providersPage(request, reply, { notice: 'The credential is deleted.' });
    } catch (err) {
      if (err instanceof ApiError && err.statusCode < 500) return providersPage(request, reply.code(err.statusCode), { formError: err.message });
      throw err;
    }
  });

  // --- Organizations -------------------------------------------------------------------------

  const userActor = (request: FastifyRequest) => ({ kind: 'user' as const, userId: request.consoleUser!.id, audit: requestActor(request) });

  /** The organization page as its member sees it (members and roles; provider tokens writable by owners and maintainers). */
  async function orgPage(request: FastifyRequest, reply: FastifyReply, orgId: string, data: ProviderInput & Record<string, unknown> = {}) {
    const me = request.consoleUser!.id;
    const org = UUID.test(orgId) ? await findOrganization(app.db, orgId) : undefined;
    const role = org ? (await findMembership(app.db, org.id, me))?.role : undefined;
    if (!org || !role) {
      reply.code(404);
      return page(reply, 'message', { title: 'Not found', message: 'No such organization, or you are not a member of it.' });
    }
    const [members, providers] = await Promise.all([listMembers(app.db, org.id), providerViews({ type: 'organization', id: org.id }, data)]);
    return page(reply, 'organization', {
      title: org.name,
      nav: 'account',
      org,
      role,
      isOwner: role === 'owner',
      canWrite: role === 'owner' || role === 'maintainer',
      roles: ROLES,
      members,
      providers,
      ...data,
    });
  }

  /** Runs a service call for the organization page, showing a refusal (403/404/409) on the page. */
  async function orgAction(request: FastifyRequest, reply: FastifyReply, orgId: string, fn: () => Promise<string>) {
    try {
      return orgPage(request, reply, orgId, { notice: await fn() });
    } catch (err) {
      if (err instanceof ApiError && err.statusCode < 500) return orgPage(request, reply.code(err.statusCode), orgId, { formError: err.message });
      throw err;
    }
  }

  app.get<{ Params: { orgId: string } }>('/organizations/:orgId', { ...HIDDEN, preHandler: selfService }, async (request, reply) =>
    orgPage(request, reply, request.params.orgId),
  );

  app.post<{ Params: { orgId: string } }>('/organizations/:orgId/members', { ...HIDDEN, preHandler: selfService }, async (request, reply) => {
    const { orgId } = request.params;
    const email = field(request.body, 'email', 320).trim();
    const role = field(request.body, 'role', 20) as Role;
    if (!UUID.test(orgId)) return orgPage(request, reply.code(404), orgId);
    const target = email ? await findUserByEmail(app.db, email) : undefined;
    if (!target || !ROLES.includes(role)) {
      return orgPage(request, reply.code(400), orgId, { errors: { email: 'No user has this email address.' }, values: { email, role } });
    }
    return orgAction(request, reply, orgId, async () => {
      const r = await putMember(membershipDeps, userActor(request), orgId, target.id, role);
      return r.kind === 'invited' ? `${target.email} is invited as ${role}; they become a member when they accept.` : `${target.email} is now ${role}.`;
    });
  });

  app.post<{ Params: { orgId: string; userId: string } }>(
    '/organizations/:orgId/members/:userId',
    { ...HIDDEN, preHandler: selfService },
    async (request, reply) => {
      const { orgId, userId } = request.params;
      const role = field(request.body, 'role', 20) as Role;
      if (!UUID.test(orgId) || !UUID.test(userId) || !ROLES.includes(role)) return orgPage(request, reply.code(400), orgId, { formError: 'Choose a role.' });
      return orgAction(request, reply, orgId, async () => {
        await putMember(membershipDeps, userActor(request), orgId, userId, role);
        return 'The role is changed.';
      });
    },
  );

  app.post<{ Params: { orgId: string; userId: string } }>(
    '/organizations/:orgId/members/:userId/remove',
    { ...HIDDEN, preHandler: selfService },
    async (request, reply) => {
      const { orgId, userId } = request.params;
      if (!UUID.test(orgId) || !UUID.test(userId)) return orgPage(request, reply.code(404), orgId);
      return orgAction(request, reply, orgId, async () => {
        await changeMembership(membershipDeps, userActor(request), orgId, userId, null);
        return 'The member is removed.';
      });
    },
  );

  app.post<{ Params: { orgId: string; provider: string } }>(
    '/organizations/:orgId/provider-tokens/:provider',
    { ...HIDDEN, preHandler: selfService },
    async (request, reply) => {
      const { orgId, provider } = request.params;
      if (!UUID.test(orgId)) return orgPage(request, reply.code(404), orgId);
      try {
        requireWriter(await requireMembership(app.db, orgId, request.consoleUser!.id));
        const r = await saveProvider(request, { type: 'organization', id: orgId }, provider);
        if (!r.ok) return orgPage(request, reply.code(r.status), orgId, { ...r.input, formError: r.formError ?? null });
        return orgPage(request, reply, orgId, { notice: `The organization's ${r.title} credential is saved.` });
      } catch (err) {
        if (err instanceof ApiError && err.statusCode < 500) return orgPage(request, reply.code(err.statusCode), orgId, { formError: err.message });
        throw err;
      }
    },
  );

  app.post<{ Params: { orgId: string; provider: string } }>(
    '/organizations/:orgId/provider-tokens/:provider/delete',
    { ...HIDDEN, preHandler: selfService },
    async (request, reply) => {
      const { orgId, provider } = request.params;
      if (!UUID.test(orgId)) return orgPage(request, reply.code(404), orgId);
      return orgAction(request, reply, orgId, async () => {
        requireWriter(await requireMembership(app.db, orgId, request.consoleUser!.id));
        await removeProviderToken(providerDeps, { type: 'organization', id: orgId }, provider, requestActor(request));
        return 'The credential is deleted.';
      });
    },
  );

  app.post<{ Params: { id: string; answer: string } }>('/invitations/:id/:answer', { ...HIDDEN, preHandler: selfService }, async (request, reply) => {
    const { id, answer } = request.params;
    try {
      if (!UUID.test(id) || (answer !== 'accept' && answer !== 'decline')) throw new ApiError(404, 'not_found', 'invitation not found');
      const change = await respondToInvitation(membershipDeps, requestActor(request), request.consoleUser!.id, id, answer === 'accept');
      return accountPage(request, reply, { notice: change ? `You are now ${change.role} of the organization.` : 'The invitation is declined.' });
    } catch (err) {
      if (err instanceof ApiError && err.statusCode < 500) return accountPage(request, reply.code(err.statusCode), { formError: err.message });
      throw err;
    }
  });
}
