import type { FastifyInstance } from 'fastify';
import type { Principal } from '../platform/auth/principal.js';
import { requestActor } from '../platform/auth/request-actor.js';
import { checkRequestedExpiry } from '../api-tokens/credential-parent.js';
import { listSdkKeys, findSdkKey, type SdkKeyRow } from './sdk-keys.repository.js';
import { forbidden, notFound } from '../platform/errors/api-error.js';
import { isSdkKeyScope, SDK_KEY_SCOPES } from './scopes.js';
import {
  checkKeyAudiences,
  createSdkKey,
  DEFAULT_SECRET_OVERLAP_SECONDS,
  deleteSdkKeyFor,
  MAX_KEY_AUDIENCES,
  MAX_SECRET_OVERLAP_SECONDS,
  registrationKey,
  rotateSdkKeySecret,
  type AuthMethodInput,
  updateSdkKeyFor,
} from './sdk-keys.service.js';
import { dateTimeSchema, errorResponses, uuidSchema } from '../platform/http/schemas.js';

const publicJwkSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['kty', 'alg'],
  properties: {
    kty: { type: 'string' },
    alg: { type: 'string' },
    crv: { type: 'string' },
    x: { type: 'string' },
    y: { type: 'string' },
    n: { type: 'string' },
    e: { type: 'string' },
    kid: { type: 'string' },
  },
} as const;

const CLIENT_ID_PATTERN = '^s_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$';

const keyProperties = {
  client_id: { type: 'string', pattern: CLIENT_ID_PATTERN },
  name: { type: 'string' },
  scopes: { type: 'array', items: { type: 'string' } },
  status: { type: 'string', enum: ['enabled', 'disabled'] },
  organization_id: { anyOf: [uuidSchema, { type: 'null' }] },
  created_at: dateTimeSchema,
  updated_at: dateTimeSchema,
  last_used_at: { anyOf: [dateTimeSchema, { type: 'null' }], description: 'Last token issued with this key, to within a minute (null: never used)' },
  expires_at: {
    anyOf: [dateTimeSchema, { type: 'null' }],
    description: 'The key and its tokens stop working then (null: never): the chosen expiry, never later than the API token that created the key',
  },
  audiences: {
    anyOf: [{ type: 'array', items: { type: 'string' } }, { type: 'null' }],
    description: 'Audiences its tokens may name besides the issuer (null: any the operator allows)',
  },
  previous_secret_expires_at: {
    anyOf: [dateTimeSchema, { type: 'null' }],
    description: 'Until then the secret before the last rotation also authenticates (null: no previous secret works)',
  },
  token_endpoint_auth_method: {
    type: 'string',
    enum: ['client_secret_basic', 'private_key_jwt'],
    description: 'client_secret_basic: a secret (Basic or client_secret_post); private_key_jwt: assertions signed by the key of `jwk` (RFC 7523)',
  },
  jwk: { anyOf: [publicJwkSchema, { type: 'null' }], description: 'The registered public key (private_key_jwt keys; null otherwise)' },
  dpop_bound_access_tokens: { type: 'boolean', description: 'RFC 9449 §5.2: tokens are issued only with a DPoP proof, never as bearer tokens' },
} as const;
const keyRequired = [
  'client_id',
  'name',
  'scopes',
  'status',
  'organization_id',
  'created_at',
  'updated_at',
  'last_used_at',
  'expires_at',
  'audiences',
  'previous_secret_expires_at',
  'token_endpoint_auth_method',
  'jwk',
  'dpop_bound_access_tokens',
];

/** An SDK key as the API shows it: never the secret nor its hash. */
const sdkKeySchema = { type: 'object', additionalProperties: false, required: keyRequired, properties: keyProperties } as const;

/** The create and rotate responses: the only places a secret ever appears. */
const createdSchema = {
  type: 'object',
  additionalProperties: false,
  required: keyRequired,
  properties: {
    ...keyProperties,
    client_secret: { type: 'string', description: 'Shown once: store it now; Tessera keeps only a keyed hash. Absent for private_key_jwt keys' },
  },
} as const;

const params = {
  type: 'object',
  additionalProperties: false,
  required: ['clientId'],
  properties: { clientId: { type: 'string', pattern: CLIENT_ID_PATTERN } },
} as const;

const nameSchema = { type: 'string', minLength: 1, maxLength: 200, pattern: '\\S' } as const;

const audiencesSchema = {
  type: 'array',
  items: { type: 'string', minLength: 1, maxLength: 2048 },
  maxItems: MAX_KEY_AUDIENCES,
  uniqueItems: true,
  description: 'Audiences (resource servers) its tokens may name besides the issuer, each the issuer or in TESSERA_AUDIENCES',
} as const;

function view(row: SdkKeyRow, nowMs: number) {
  const previous = row.previous_secret_expires_at;
  return {
    client_id: row.client_id,
    name: row.name,
    scopes: row.scopes,
    status: row.status,
    organization_id: row.organization_id,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
    last_used_at: row.last_used_at ? row.last_used_at.toISOString() : null,
    expires_at: row.expires_at ? row.expires_at.toISOString() : null,
    audiences: row.audiences,
    previous_secret_expires_at: previous && previous.getTime() > nowMs ? previous.toISOString() : null,
    token_endpoint_auth_method: row.token_endpoint_auth_method,
    jwk: row.public_jwk,
    dpop_bound_access_tokens: row.dpop_bound_access_tokens,
  };
}

/** /api/sdk-keys: a user's SDK keys (bearer with scope `api`). */
export async function sdkKeyRoutes(app: FastifyInstance): Promise<void> {
  const deps = { db: app.db, pepper: app.config.pepper, clock: app.clock };
  const auth = app.requireAuth('api');
  const manage = app.requireCredentialManager('api');
  const security: Array<Record<string, string[]>> = [{ bearer: [] }, { accessToken: [] }];
  const audiencesOf = (list: string[]) => checkKeyAudiences(list, app.config.issuer, app.config.allowedAudiences);

  app.post<{
    Body: {
      name: string;
      scopes?: string[];
      organization_id?: string;
      audiences?: string[];
      expires_at?: string;
      token_endpoint_auth_method?: AuthMethodInput;
      jwk?: Record<string, unknown>;
      dpop_bound_access_tokens?: boolean;
    };
  }>(
    '/api/sdk-keys',
    {
      preHandler: manage,
      schema: {
        tags: ['self-service'],
        operationId: 'createSdkKey',
        summary: 'Create an SDK key (at most 2 per user); the client_secret is returned this once (none for private_key_jwt keys)',
        description:
          'The key is a child of the API token the caller acts for (its own, or the one its session came from): its scopes ' +
          "are within that token's, it expires at the chosen `expires_at` or with that token, whichever is first (its access " +
          'tokens never outlive it), and it is deleted ' +
          'when that token is revoked. SDK-key access tokens cannot create, change or delete SDK keys (403 insufficient_scope). ' +
          'With `token_endpoint_auth_method: private_key_jwt` and a public `jwk` the key authenticates with signed assertions ' +
          '(RFC 7523) and has no secret; Tessera never fetches keys from a URL. A JWK with private members is refused.',
        security,
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['name'],
          properties: {
            name: nameSchema,
            scopes: {
              type: 'array',
              items: { type: 'string', enum: [...SDK_KEY_SCOPES] },
              uniqueItems: true,
              minItems: 1,
              description: 'Default: the scopes of the calling credential that an SDK key may hold',
            },
            organization_id: { ...uuidSchema, description: 'Organization for the org_id claim (default: your only one)' },
            audiences: audiencesSchema,
            expires_at: {
              ...dateTimeSchema,
              description: 'When the key stops working: at least a minute and at most ten years ahead (default: with its parent token)',
            },
            token_endpoint_auth_method: {
              type: 'string',
              enum: ['client_secret_basic', 'client_secret_post', 'private_key_jwt'],
              description: 'Default: client_secret_basic (a secret, usable with Basic or client_secret_post); private_key_jwt with jwk',
            },
            jwk: { type: 'object', maxProperties: 20, description: 'private_key_jwt: the public JWK (EC P-256/P-384, Ed25519 or RSA >= 2048 bits)' },
            dpop_bound_access_tokens: { type: 'boolean', description: 'Issue DPoP-bound tokens only (default false)' },
          },
        },
        response: { 201: createdSchema, ...errorResponses(400, 401, 403, 409, 429, 503) },
      },
    },
    async (request, reply) => {
      const p = request.principal as Principal;
      const held = p.scopes.filter(isSdkKeyScope);
      const scopes = request.body.scopes ?? held;
      const missing = scopes.filter((s) => !p.scopes.includes(s));
      if (missing.length) throw forbidden(`an SDK key cannot hold scopes your credential lacks: ${missing.join(' ')}`);
      if (scopes.length === 0) throw forbidden('your credential holds no scope an SDK key could carry');
      const audiences = request.body.audiences === undefined ? null : audiencesOf(request.body.audiences);
      const expiresAt = request.body.expires_at === undefined ? null : checkRequestedExpiry(request.body.expires_at, app.clock.now());
      const publicJwk = await registrationKey(
        request.body.token_endpoint_auth_method,
        request.body.jwk,
        app.config.proofOfPossession.clientAssertionAlgorithms,
      );
      const { row, secret } = await createSdkKey(deps, requestActor(request), p, {
        name: request.body.name.trim(),
        scopes,
        organizationId: request.body.organization_id ?? null,
        audiences,
        expiresAt,
        publicJwk,
        dpopBound: request.body.dpop_bound_access_tokens ?? false,
      });
      app.forgetCredentials({ sdkKeyClientIds: [row.client_id] });
      return reply
        .code(201)
        .header('cache-control', 'no-store')
        .send({ ...view(row, app.clock.now()), ...(secret !== null ? { client_secret: secret } : {}) });
    },
  );

  app.get(
    '/api/sdk-keys',
    {
      preHandler: auth,
      schema: {
        tags: ['self-service'],
        operationId: 'listSdkKeys',
        summary: 'List your SDK keys (never their secrets)',
        security,
        response: {
          200: { type: 'object', additionalProperties: false, required: ['sdk_keys'], properties: { sdk_keys: { type: 'array', items: sdkKeySchema } } },
          ...errorResponses(401, 403, 429, 503),
        },
      },
    },
    async (request) => ({ sdk_keys: (await listSdkKeys(app.db, (request.principal as Principal).userId)).map((r) => view(r, app.clock.now())) }),
  );

  app.get<{ Params: { clientId: string } }>(
    '/api/sdk-keys/:clientId',
    {
      preHandler: auth,
      schema: {
        tags: ['self-service'],
        operationId: 'getSdkKey',
        summary: 'One of your SDK keys',
        security,
        params,
        response: { 200: sdkKeySchema, ...errorResponses(400, 401, 403, 404, 429, 503) },
      },
    },
    async (request) => {
      const row = await findSdkKey(app.db, (request.principal as Principal).userId, request.params.clientId);
      if (!row) throw notFound('SDK key');
      return view(row, app.clock.now());
    },
  );

  app.patch<{
    Params: { clientId: string };
    Body: { name?: string; status?: 'enabled' | 'disabled'; audiences?: string[] | null; dpop_bound_access_tokens?: boolean };
  }>(
    '/api/sdk-keys/:clientId',
    {
      preHandler: manage,
      schema: {
        tags: ['self-service'],
        operationId: 'updateSdkKey',
        summary: 'Rename, enable or disable an SDK key (disabling revokes every token it issued), set its audiences, or require DPoP',
        description:
          '`audiences` replaces the list (each the issuer or in TESSERA_AUDIENCES, else 400); `null` lifts the restriction. ' +
          'Tokens already issued keep their audience until they expire.',
        security,
        params,
        body: {
          type: 'object',
          additionalProperties: false,
          minProperties: 1,
          properties: {
            name: nameSchema,
            status: { type: 'string', enum: ['enabled', 'disabled'] },
            audiences: { anyOf: [audiencesSchema, { type: 'null' }] },
            dpop_bound_access_tokens: { type: 'boolean', description: 'RFC 9449 §5.2: refuse bearer token requests from this key' },
          },
        },
        response: { 200: sdkKeySchema, ...errorResponses(400, 401, 403, 404, 429, 503) },
      },
    },
    async (request) => {
      const { clientId } = request.params;
      const row = await updateSdkKeyFor(deps, requestActor(request), (request.principal as Principal).userId, clientId, {
        name: request.body.name?.trim(),
        status: request.body.status,
        audiences: request.body.audiences === undefined || request.body.audiences === null ? request.body.audiences : audiencesOf(request.body.audiences),
        dpopBound: request.body.dpop_bound_access_tokens,
      });
      app.forgetCredentials({ sdkKeyClientIds: [clientId] });
      return view(row, app.clock.now());
    },
  );

  app.post<{ Params: { clientId: string }; Body: { previous_secret_expires_in?: number; revoke_issued_tokens?: boolean } | undefined }>(
    '/api/sdk-keys/:clientId/secret',
    {
      // The body is optional: none means `{}`.
      preValidation: async (request) => {
        if (request.body === undefined) request.body = {};
      },
      preHandler: manage,
      schema: {
        tags: ['self-service'],
        operationId: 'rotateSdkKeySecret',
        summary: 'Give an SDK key a new client_secret (returned this once); the previous one keeps working for a chosen time',
        description:
          'The secret it replaces authenticates until `previous_secret_expires_at` (`previous_secret_expires_in` seconds from now: ' +
          `default ${DEFAULT_SECRET_OVERLAP_SECONDS}, at most ${MAX_SECRET_OVERLAP_SECONDS}, 0 stops it at once); a secret still in an ` +
          "earlier rotation's overlap stops at once. Tokens the key already issued stay valid until they expire, unless " +
          '`revoke_issued_tokens` is true. SDK-key access tokens cannot rotate secrets (403 insufficient_scope).',
        security,
        params,
        body: {
          type: 'object',
          additionalProperties: false,
          properties: {
            previous_secret_expires_in: {
              type: 'integer',
              minimum: 0,
              maximum: MAX_SECRET_OVERLAP_SECONDS,
              description: `Seconds the previous secret keeps working (default ${DEFAULT_SECRET_OVERLAP_SECONDS}; 0: not at all)`,
            },
            revoke_issued_tokens: { type: 'boolean', description: 'Also revoke every access token the key issued so far (default false)' },
          },
        },
        response: { 200: createdSchema, ...errorResponses(400, 401, 403, 404, 409, 413, 415, 429, 503) },
      },
    },
    async (request, reply) => {
      const { clientId } = request.params;
      const { row, secret } = await rotateSdkKeySecret(deps, requestActor(request), (request.principal as Principal).userId, clientId, {
        overlapSeconds: request.body?.previous_secret_expires_in ?? DEFAULT_SECRET_OVERLAP_SECONDS,
        revokeIssuedTokens: request.body?.revoke_issued_tokens ?? false,
      });
      app.forgetCredentials({ sdkKeyClientIds: [clientId] });
      return reply
        .code(200)
        .header('cache-control', 'no-store')
        .send({ ...view(row, app.clock.now()), client_secret: secret });
    },
  );

  app.delete<{ Params: { clientId: string } }>(
    '/api/sdk-keys/:clientId',
    {
      preHandler: manage,
      schema: {
        tags: ['self-service'],
        operationId: 'deleteSdkKey',
        summary: 'Delete an SDK key (every token it issued stops working)',
        security,
        params,
        response: { 204: { type: 'null', description: 'Deleted' }, ...errorResponses(400, 401, 403, 404, 429, 503) },
      },
    },
    async (request, reply) => {
      const { clientId } = request.params;
      await deleteSdkKeyFor(deps, requestActor(request), (request.principal as Principal).userId, clientId);
      app.forgetCredentials({ sdkKeyClientIds: [clientId] });
      return reply.code(204).send();
    },
  );
}
