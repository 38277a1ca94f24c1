import type { FastifyInstance, FastifyRequest } from 'fastify';
import { requestActor } from '../platform/auth/request-actor.js';
import { findProviderToken, listProviderTokens, type ProviderTokenOwner } from './provider-tokens.repository.js';
import { notFound } from '../platform/errors/api-error.js';
import { requireMembership, requireWriter } from '../identity/memberships.service.js';
import { ProviderRegistry } from './registry.js';
import { metadata, putProviderToken, removeProviderToken, requireProvider, resolveProviderToken, type ProviderTokenDeps } from './provider-tokens.service.js';
import { dateTimeSchema, errorResponses, uuidSchema } from '../platform/http/schemas.js';

const providerParam = {
  type: 'string',
  pattern: '^[a-z][a-z0-9_]{1,62}$',
  description: 'Provider name, one of the configured providers (GET /api/provider-tokens lists them)',
} as const;

const nullable = (s: Record<string, unknown>) => ({ ...s, type: [s.type as string, 'null'] });

/** What listings show of a stored credential: never the secret. */
const tokenMetadata = {
  type: 'object',
  additionalProperties: false,
  required: ['provider', 'label', 'hint', 'created_at', 'updated_at', 'last_used_at', 'updated_by'],
  properties: {
    provider: { type: 'string' },
    label: { type: ['string', 'null'] },
    hint: {
      type: ['string', 'null'],
      description: 'Last 4 characters of the identifying field (`…abcd`), only when that field is at least 16 characters long',
    },
    created_at: dateTimeSchema,
    updated_at: dateTimeSchema,
    last_used_at: { ...nullable(dateTimeSchema), description: 'Last resolution, to within a minute' },
    updated_by: { ...nullable(uuidSchema), description: 'User who last stored it' },
  },
} as const;

const tokenList = {
  type: 'object',
  additionalProperties: false,
  required: ['provider_tokens', 'providers'],
  properties: {
    provider_tokens: { type: 'array', items: tokenMetadata },
    providers: { type: 'array', items: { type: 'string' }, description: 'Configured providers' },
  },
} as const;

function credentialDescription(registry: ProviderRegistry): string {
  const lines = registry.names.map((n) => {
    const spec = registry.get(n)!;
    const props = Object.keys((spec.schema.properties ?? {}) as object);
    const req = new Set((spec.schema.required ?? []) as string[]);
    return `- \`${n}\`: ${props.map((p) => (req.has(p) ? `**${p}**` : p)).join(', ')}`;
  });
  return ["The credential, validated against the provider's schema (required fields in bold); write-only:", ...lines].join('\n');
}

function putBody(registry: ProviderRegistry) {
  return {
    type: 'object',
    additionalProperties: false,
    required: ['credential'],
    properties: {
      label: { type: ['string', 'null'], minLength: 1, maxLength: 200, description: 'A name for people' },
      credential: { type: 'object', description: credentialDescription(registry) },
    },
  } as const;
}

const resolved = {
  type: 'object',
  additionalProperties: false,
  required: ['provider', 'source', 'organization_id', 'label', 'updated_at', 'credential'],
  properties: {
    provider: { type: 'string' },
    source: { type: 'string', enum: ['user', 'organization'], description: 'Whose credential this is' },
    organization_id: { ...nullable(uuidSchema), description: 'The organization whose credential it is (source organization)' },
    label: { type: ['string', 'null'] },
    updated_at: dateTimeSchema,
    credential: { type: 'object', additionalProperties: true, description: 'The stored credential, as it was written' },
  },
} as const;

type PutBody = { label?: string | null; credential: Record<string, unknown> };

/** User and organization provider credentials ("bring your own token") and their run-time resolution. */
export async function providerTokenRoutes(app: FastifyInstance): Promise<void> {
  const registry = new ProviderRegistry(app.config.providers);
  const deps: ProviderTokenDeps = {
    db: app.db,
    config: app.config,
    registry,
    clock: app.clock,
    usage: app.usage,
    log: app.log,
  };
  const userOwner = (request: FastifyRequest): ProviderTokenOwner => ({ type: 'user', id: request.principal!.userId });

  async function readMetadata(owner: ProviderTokenOwner, provider: string) {
    requireProvider(registry, provider);
    const row = await findProviderToken(app.db, owner, provider);
    if (!row) throw notFound(`${provider} credential`);
    return metadata(row);
  }
  async function readList(owner: ProviderTokenOwner) {
    const rows = await listProviderTokens(app.db, owner);
    return { provider_tokens: rows.map(metadata), providers: registry.names };
  }

  // --- the caller's own credentials ---------------------------------------------------------
  const api = app.requireAuth('api');
  const manageApi = app.requireCredentialManager('api');

  app.get(
    '/api/provider-tokens',
    {
      preHandler: api,
      schema: {
        tags: ['provider-tokens'],
        operationId: 'listProviderTokens',
        summary: 'List your provider credentials (metadata only) and the configured providers',
        response: { 200: tokenList, ...errorResponses(401, 403) },
      },
    },
    async (request) => readList(userOwner(request)),
  );

  app.get<{ Params: { provider: string } }>(
    '/api/provider-tokens/:provider',
    {
      preHandler: api,
      schema: {
        tags: ['provider-tokens'],
        operationId: 'getProviderToken',
        summary: 'Metadata of your credential for one provider',
        params: { type: 'object', required: ['provider'], properties: { provider: providerParam } },
        response: { 200: tokenMetadata, ...errorResponses(400, 401, 403, 404) },
      },
    },
    async (request) => readMetadata(userOwner(request), request.params.provider),
  );

  app.put<{ Params: { provider: string }; Body: PutBody }>(
    '/api/provider-tokens/:provider',
    {
      preHandler: manageApi,
      schema: {
        tags: ['provider-tokens'],
        operationId: 'putProviderToken',
        summary: 'Store (create or replace) your credential for a provider; the secret is write-only',
        params: { type: 'object', required: ['provider'], properties: { provider: providerParam } },
        body: putBody(registry),
        response: {
          200: { ...tokenMetadata, description: 'Replaced' },
          201: { ...tokenMetadata, description: 'Created' },
          ...errorResponses(400, 401, 403, 404, 413, 415),
        },
      },
    },
    async (request, reply) => {
      const { row, created } = await putProviderToken(deps, userOwner(request), request.params.provider, request.body, requestActor(request));
      reply.code(created ? 201 : 200);
      return metadata(row);
    },
  );

  app.delete<{ Params: { provider: string } }>(
    '/api/provider-tokens/:provider',
    {
      preHandler: manageApi,
      schema: {
        tags: ['provider-tokens'],
        operationId: 'deleteProviderToken',
        summary: 'Delete your credential for a provider',
        params: { type: 'object', required: ['provider'], properties: { provider: providerParam } },
        response: { 204: { type: 'null', description: 'Deleted' }, ...errorResponses(400, 401, 403, 404) },
      },
    },
    async (request, reply) => {
      await removeProviderToken(deps, userOwner(request), request.params.provider, requestActor(request));
      return reply.code(204).send();
    },
  );

  app.get<{ Params: { provider: string }; Querystring: { organization_id?: string } }>(
    '/api/provider-tokens/:provider/resolve',
    {
      preHandler: app.requireAuth('quantum_tokens'),
      schema: {
        tags: ['provider-tokens'],
        operationId: 'resolveProviderToken',
        summary:
          "Run-time resolution (scope quantum_tokens): your own credential, else your organization's; returns the secret. " +
          'Audited. 409 lists the organization ids when you belong to several and name none.',
        params: { type: 'object', required: ['provider'], properties: { provider: providerParam } },
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { organization_id: { ...uuidSchema, description: 'Organization to fall back to (you must be a member)' } },
        },
        response: { 200: resolved, ...errorResponses(400, 401, 403, 404, 409) },
      },
    },
    async (request, reply) => {
      const p = request.principal!;
      const out = await resolveProviderToken(
        deps,
        { userId: p.userId, organizationId: p.organizationId },
        request.params.provider,
        request.query.organization_id,
        requestActor(request),
      );
      reply.header('cache-control', 'no-store').header('pragma', 'no-cache');
      return out;
    },
  );

  // --- an organization's credentials ---------------------------------------------------------
  const orgParams = {
    type: 'object',
    required: ['orgId'],
    properties: { orgId: uuidSchema },
  } as const;
  const orgProviderParams = {
    type: 'object',
    required: ['orgId', 'provider'],
    properties: { orgId: uuidSchema, provider: providerParam },
  } as const;
  const orgOwner = (orgId: string): ProviderTokenOwner => ({ type: 'organization', id: orgId });

  app.get<{ Params: { orgId: string } }>(
    '/api/organizations/:orgId/provider-tokens',
    {
      preHandler: api,
      schema: {
        tags: ['provider-tokens'],
        operationId: 'listOrganizationProviderTokens',
        summary: "List the organization's provider credentials (metadata only; members)",
        params: orgParams,
        response: { 200: tokenList, ...errorResponses(400, 401, 403, 404) },
      },
    },
    async (request) => {
      await requireMembership(app.db, request.params.orgId, request.principal!.userId);
      return readList(orgOwner(request.params.orgId));
    },
  );

  app.get<{ Params: { orgId: string; provider: string } }>(
    '/api/organizations/:orgId/provider-tokens/:provider',
    {
      preHandler: api,
      schema: {
        tags: ['provider-tokens'],
        operationId: 'getOrganizationProviderToken',
        summary: "Metadata of the organization's credential for one provider (members)",
        params: orgProviderParams,
        response: { 200: tokenMetadata, ...errorResponses(400, 401, 403, 404) },
      },
    },
    async (request) => {
      await requireMembership(app.db, request.params.orgId, request.principal!.userId);
      return readMetadata(orgOwner(request.params.orgId), request.params.provider);
    },
  );

  app.put<{ Params: { orgId: string; provider: string }; Body: PutBody }>(
    '/api/organizations/:orgId/provider-tokens/:provider',
    {
      preHandler: manageApi,
      schema: {
        tags: ['provider-tokens'],
        operationId: 'putOrganizationProviderToken',
        summary: "Store (create or replace) the organization's credential for a provider (owners and maintainers)",
        params: orgProviderParams,
        body: putBody(registry),
        response: {
          200: { ...tokenMetadata, description: 'Replaced' },
          201: { ...tokenMetadata, description: 'Created' },
          ...errorResponses(400, 401, 403, 404, 413, 415),
        },
      },
    },
    async (request, reply) => {
      requireWriter(await requireMembership(app.db, request.params.orgId, request.principal!.userId));
      const { row, created } = await putProviderToken(deps, orgOwner(request.params.orgId), request.params.provider, request.body, requestActor(request));
      reply.code(created ? 201 : 200);
      return metadata(row);
    },
  );

  app.delete<{ Params: { orgId: string; provider: string } }>(
    '/api/organizations/:orgId/provider-tokens/:provider',
    {
      preHandler: manageApi,
      schema: {
        tags: ['provider-tokens'],
        operationId: 'deleteOrganizationProviderToken',
        summary: "Delete the organization's credential for a provider (owners and maintainers)",
        params: orgProviderParams,
        response: { 204: { type: 'null', description: 'Deleted' }, ...errorResponses(400, 401, 403, 404) },
      },
    },
    async (request, reply) => {
      requireWriter(await requireMembership(app.db, request.params.orgId, request.principal!.userId));
      await removeProviderToken(deps, orgOwner(request.params.orgId), request.params.provider, requestActor(request));
      return reply.code(204).send();
    },
  );
}
