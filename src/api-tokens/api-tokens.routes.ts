import type { FastifyInstance } from 'fastify';
import { requestActor } from '../platform/auth/request-actor.js';
import { badRequest, notFound } from '../platform/errors/api-error.js';
import { API_SCOPES } from '../platform/auth/scopes.js';
import { createChildApiToken, regenerateApiToken, revokeApiToken } from './api-tokens.service.js';
import { listLiveApiTokens, type ApiTokenRow } from './api-tokens.repository.js';
import { dateTimeSchema, errorResponses, uuidSchema } from '../platform/http/schemas.js';
import { checkRequestedExpiry, MAX_EXPIRES_IN, MIN_EXPIRES_IN } from './credential-parent.js';

const tokenProperties = {
  id: uuidSchema,
  name: { type: 'string' },
  display_prefix: { type: 'string', description: 'The first characters of the token, to recognise it' },
  scopes: { type: 'array', items: { type: 'string', enum: [...API_SCOPES] } },
  created_at: dateTimeSchema,
  expires_at: { anyOf: [dateTimeSchema, { type: 'null' }] },
  last_used_at: { anyOf: [dateTimeSchema, { type: 'null' }], description: 'Last use, to within a minute (null: never used)' },
} as const;
const TOKEN_FIELDS = Object.keys(tokenProperties);

/** The list view: never the secret (the schema has no field for it). */
const tokenSchema = { type: 'object', additionalProperties: false, required: TOKEN_FIELDS, properties: tokenProperties } as const;

function view(r: ApiTokenRow) {
  return {
    id: r.id,
    name: r.name,
    display_prefix: r.display_prefix,
    scopes: r.scopes,
    created_at: r.created_at.toISOString(),
    expires_at: r.expires_at?.toISOString() ?? null,
    last_used_at: r.last_used_at?.toISOString() ?? null,
  };
}

/** Personal access tokens of the caller. */
export async function accessTokensRoutes(app: FastifyInstance): Promise<void> {
  const security: Array<Record<string, string[]>> = [{ bearer: [] }, { accessToken: [] }];

  app.post<{ Body: { name: string; scopes: string[]; expires_in?: number; expires_at?: string } }>(
    '/api/access-tokens',
    {
      preHandler: app.requireCredentialManager('api'),
      schema: {
        tags: ['self-service'],
        operationId: 'createAccessToken',
        summary: 'Create an API token; the token is in this response only',
        description:
          'Scopes can only be those the calling credential holds (so `admin` needs a caller with `admin`). ' +
          '`expires_in` is in seconds, `expires_at` a date (one of the two, at least a minute and at most ten years ahead); ' +
          'without either the token lives until revoked. The new token is a child of the ' +
          'API token the caller acts for (its own, or the one its session came from): it never expires later than ' +
          "that token (a later or absent `expires_in` gets the parent's expiry, shown in `expires_at`) and is revoked " +
          'with it. SDK-key access tokens cannot create API tokens (403 insufficient_scope).',
        security,
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['name', 'scopes'],
          properties: {
            name: { type: 'string', minLength: 1, maxLength: 200 },
            scopes: { type: 'array', minItems: 1, maxItems: API_SCOPES.length, uniqueItems: true, items: { type: 'string', enum: [...API_SCOPES] } },
            expires_in: { type: 'integer', minimum: MIN_EXPIRES_IN, maximum: MAX_EXPIRES_IN },
            expires_at: dateTimeSchema,
          },
        },
        response: {
          201: {
            type: 'object',
            additionalProperties: false,
            required: [...TOKEN_FIELDS, 'token'],
            properties: { ...tokenProperties, token: { type: 'string', description: 'The API token, shown once' } },
          },
          ...errorResponses(400, 401, 403, 413, 415, 429, 503),
        },
      },
    },
    async (request, reply) => {
      const p = request.principal!;
      const name = request.body.name.trim();
      if (!name) throw badRequest('name must not be blank');
      const now = app.clock.now();
      const { expires_in: expiresIn, expires_at: expiresAt } = request.body;
      if (expiresIn !== undefined && expiresAt !== undefined) throw badRequest('send expires_in or expires_at, not both');
      const requested = expiresAt !== undefined ? checkRequestedExpiry(expiresAt, now) : expiresIn === undefined ? null : new Date(now + expiresIn * 1000);
      const { token, row } = await createChildApiToken(app.db, app.config.pepper, p, {
        name,
        scopes: request.body.scopes,
        expiresAt: requested,
        now: new Date(now),
        actor: requestActor(request),
      });
      reply.code(201).header('cache-control', 'no-store');
      return { ...view(row), token };
    },
  );

  app.get(
    '/api/access-tokens',
    {
      preHandler: app.requireAuth('api'),
      schema: {
        tags: ['self-service'],
        operationId: 'listAccessTokens',
        summary: "The caller's live API tokens (never the secret)",
        security,
        response: {
          200: {
            type: 'object',
            additionalProperties: false,
            required: ['access_tokens'],
            properties: { access_tokens: { type: 'array', items: tokenSchema } },
          },
          ...errorResponses(401, 403, 429, 503),
        },
      },
    },
    async (request) => {
      const rows = await listLiveApiTokens(app.db, request.principal!.userId);
      return { access_tokens: rows.map(view) };
    },
  );

  app.delete<{ Params: { id: string } }>(
    '/api/access-tokens/:id',
    {
      preHandler: app.requireCredentialManager('api'),
      schema: {
        tags: ['self-service'],
        operationId: 'revokeAccessToken',
        summary: 'Revoke one of your API tokens, every API token and SDK key created from it, and every session made from them',
        security,
        params: { type: 'object', additionalProperties: false, required: ['id'], properties: { id: uuidSchema } },
        response: {
          204: { type: 'null', description: 'Revoked' },
          ...errorResponses(400, 401, 403, 404, 429, 503),
        },
      },
    },
    async (request, reply) => {
      const p = request.principal!;
      const revoked = await revokeApiToken(app, {
        userId: p.userId,
        tokenId: request.params.id,
        now: new Date(app.clock.now()),
        actor: requestActor(request),
      });
      if (!revoked) throw notFound('API token');
      app.forgetCredentials({ apiTokenIds: revoked.apiTokenIds, sdkKeyClientIds: revoked.sdkKeyClientIds });
      return reply.code(204).send();
    },
  );

  app.post<{ Params: { id: string } }>(
    '/api/access-tokens/:id/regenerate',
    {
      preHandler: app.requireCredentialManager('api'),
      schema: {
        tags: ['self-service'],
        operationId: 'regenerateAccessToken',
        summary: 'Replace one of your API tokens with a new value (in this response only); the old value is revoked at once',
        description:
          'One transaction: the old token is revoked as DELETE revokes it (the API tokens and SDK keys created from it and ' +
          'every session made from any of them end) and a new token with the same name, scopes, expiry and parent is issued ' +
          "under a new id. The calling credential must cover the token's scopes and expiry (403 otherwise); an expired token " +
          'cannot be regenerated (409). Regenerating the token the caller authenticated with ends that credential too.',
        security,
        params: { type: 'object', additionalProperties: false, required: ['id'], properties: { id: uuidSchema } },
        response: {
          201: {
            type: 'object',
            additionalProperties: false,
            required: [...TOKEN_FIELDS, 'token'],
            properties: { ...tokenProperties, token: { type: 'string', description: 'The new API token, shown once' } },
          },
          ...errorResponses(400, 401, 403, 404, 409, 429, 503),
        },
      },
    },
    async (request, reply) => {
      const done = await regenerateApiToken({ db: app.db, cascades: app.cascades, pepper: app.config.pepper }, request.principal!, {
        tokenId: request.params.id,
        now: new Date(app.clock.now()),
        actor: requestActor(request),
      });
      if (!done) throw notFound('API token');
      app.forgetCredentials({ apiTokenIds: done.revoked.apiTokenIds, sdkKeyClientIds: done.revoked.sdkKeyClientIds });
      reply.code(201).header('cache-control', 'no-store');
      return { ...view(done.row), token: done.token };
    },
  );
}
