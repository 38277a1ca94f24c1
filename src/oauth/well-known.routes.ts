import type { FastifyInstance } from 'fastify';
import { SIGNING_ALGS } from '../platform/config.js';
import { GRANT_TYPE } from './client-credentials.grant.js';
import { SDK_KEY_SCOPES } from './scopes.js';
import { CLIENT_AUTH_METHODS } from './client-auth.js';
import { errorResponses } from '../platform/http/schemas.js';

const stringArray = { type: 'array', items: { type: 'string' } } as const;

const metadataSchema = {
  type: 'object',
  additionalProperties: false,
  description: 'RFC 8414 authorization server metadata',
  required: ['issuer', 'token_endpoint', 'jwks_uri', 'grant_types_supported', 'response_types_supported'],
  properties: {
    issuer: { type: 'string' },
    token_endpoint: { type: 'string' },
    jwks_uri: { type: 'string' },
    introspection_endpoint: { type: 'string' },
    revocation_endpoint: { type: 'string' },
    scopes_supported: stringArray,
    response_types_supported: stringArray,
    grant_types_supported: stringArray,
    token_endpoint_auth_methods_supported: stringArray,
    introspection_endpoint_auth_methods_supported: stringArray,
    revocation_endpoint_auth_methods_supported: stringArray,
    access_token_signing_alg_values_supported: stringArray,
    token_endpoint_auth_signing_alg_values_supported: stringArray,
    introspection_endpoint_auth_signing_alg_values_supported: stringArray,
    revocation_endpoint_auth_signing_alg_values_supported: stringArray,
    dpop_signing_alg_values_supported: stringArray,
    service_documentation: { type: 'string' },
  },
} as const;

const jwkSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['kty', 'kid', 'alg', 'use'],
  properties: {
    kty: { type: 'string' },
    crv: { type: 'string' },
    x: { type: 'string' },
    y: { type: 'string' },
    n: { type: 'string' },
    e: { type: 'string' },
    kid: { type: 'string' },
    alg: { type: 'string' },
    use: { type: 'string' },
  },
} as const;

/**
 * Discovery (RFC 8414) and the public keys (RFC 7517). The JWKS carries public members only
 * (the schema would drop anything else), a strong ETag, and a max-age shorter than the key
 * pre-publication window (config enforces it), so a verifier's cached set always already holds
 * the next key before it signs.
 */
export async function wellKnownRoutes(app: FastifyInstance): Promise<void> {
  const { issuer, jwksMaxAgeSeconds, signingAlg } = app.config;
  const authMethods = [...CLIENT_AUTH_METHODS];
  const assertionAlgs = [...app.config.proofOfPossession.clientAssertionAlgorithms];
  const metadata = {
    issuer,
    token_endpoint: `${issuer}/oauth/token`,
    jwks_uri: `${issuer}/.well-known/jwks.json`,
    introspection_endpoint: `${issuer}/oauth/introspect`,
    revocation_endpoint: `${issuer}/oauth/revoke`,
    scopes_supported: [...SDK_KEY_SCOPES],
    response_types_supported: [] as string[],
    grant_types_supported: [GRANT_TYPE],
    token_endpoint_auth_methods_supported: authMethods,
    introspection_endpoint_auth_methods_supported: authMethods,
    revocation_endpoint_auth_methods_supported: authMethods,
    token_endpoint_auth_signing_alg_values_supported: assertionAlgs,
    introspection_endpoint_auth_signing_alg_values_supported: assertionAlgs,
    revocation_endpoint_auth_signing_alg_values_supported: assertionAlgs,
    dpop_signing_alg_values_supported: [...app.config.proofOfPossession.dpopAlgorithms],
    service_documentation: `${issuer}/docs`,
  };

  app.get(
    '/.well-known/oauth-authorization-server',
    {
      schema: {
        tags: ['discovery'],
        operationId: 'getOAuthServerMetadata',
        summary: 'Authorization server metadata (RFC 8414)',
        response: { 200: metadataSchema, ...errorResponses(429) },
      },
    },
    async (_request, reply) => {
      // Algorithms of the keys that sign or still verify, the configured one first.
      const algs = [...new Set([signingAlg, ...app.oauth.keys.algorithms()])].filter((a) => (SIGNING_ALGS as readonly string[]).includes(a));
      reply.header('cache-control', `public, max-age=${jwksMaxAgeSeconds}`);
      return { ...metadata, access_token_signing_alg_values_supported: algs };
    },
  );

  app.get(
    '/.well-known/jwks.json',
    {
      schema: {
        tags: ['discovery'],
        operationId: 'getJwks',
        summary: 'Public signing keys (RFC 7517 JWK Set): every key that signs, will sign, or signed unexpired tokens',
        response: {
          200: {
            type: 'object',
            additionalProperties: false,
            required: ['keys'],
            properties: { keys: { type: 'array', items: jwkSchema } },
          },
          304: { type: 'null', description: 'Not modified (If-None-Match matched the ETag)' },
          ...errorResponses(429),
        },
      },
    },
    async (request, reply) => {
      const { body, etag } = app.oauth.keys.jwks();
      reply.header('cache-control', `public, max-age=${jwksMaxAgeSeconds}`).header('etag', etag);
      const inm = request.headers['if-none-match'];
      if (inm !== undefined && inm.split(',').some((t) => t.trim().replace(/^W\//, '') === etag)) {
        return reply.code(304).send();
      }
      return body;
    },
  );
}
