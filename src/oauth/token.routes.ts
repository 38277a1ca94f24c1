import type { FastifyInstance, FastifyRequest } from 'fastify';
import { OAuthError, invalidRequest, unsupportedGrantType } from '../platform/errors/oauth-error.js';
import { USAGE_EVERY_MS, type UsageTarget } from '../platform/database/usage-stamps.js';
import { formOnly, noStore, OAUTH_BODY_LIMIT, type FormBody } from '../platform/http/form.js';
import { oauthErrorResponses } from '../platform/http/schemas.js';
import { clientCredentialsGrant, GRANT_TYPE } from './client-credentials.grant.js';
import { tokenBinding } from './token-dpop.js';

const SDK_KEY_USAGE: UsageTarget = { table: 'sdk_keys', keyColumn: 'client_id', keyType: 'text', everyMs: USAGE_EVERY_MS };

const tokenBody = {
  type: 'object',
  properties: {
    grant_type: { type: 'string', description: 'client_credentials (the only grant supported)' },
    scope: { type: 'string', description: 'Space-separated subset of the SDK key scopes (default: all of them)' },
    audience: { type: 'string', description: 'Audience of the token (default: this issuer); others must be listed in TESSERA_AUDIENCES, else invalid_target' },
    resource: { type: 'string', description: 'RFC 8707 resource indicator (absolute URI); same effect as audience' },
    client_id: { type: 'string', description: 'client_secret_post' },
    client_secret: { type: 'string', description: 'client_secret_post' },
    client_assertion_type: { type: 'string', description: 'private_key_jwt: urn:ietf:params:oauth:client-assertion-type:jwt-bearer' },
    client_assertion: { type: 'string', description: 'private_key_jwt: a JWT signed by the key the SDK key registered (RFC 7523 §2.2)' },
  },
} as const;

const tokenResponse = {
  type: 'object',
  additionalProperties: false,
  required: ['access_token', 'token_type', 'expires_in', 'scope'],
  properties: {
    access_token: { type: 'string', description: 'JWT (RFC 9068, typ at+jwt); DPoP-bound tokens carry cnf.jkt' },
    token_type: { type: 'string', enum: ['Bearer', 'DPoP'], description: 'DPoP when the request carried a valid DPoP proof (RFC 9449)' },
    expires_in: { type: 'integer' },
    scope: { type: 'string' },
  },
} as const;

type Limiter = NonNullable<ReturnType<FastifyInstance['createRateLimit']>>;

/**
 * Token requests per client (when `config.rateLimit.enabled`): 429 with `Retry-After` past
 * `tokenPerClient` a minute. Per-IP request limits are route config, applied before the body is read.
 */
function perClientLimit(app: FastifyInstance): (request: FastifyRequest, clientId: string) => Promise<void> {
  const limits = app.config.rateLimit;
  if (!limits.enabled || typeof app.createRateLimit !== 'function') return async () => undefined;
  const clientOf = new WeakMap<FastifyRequest, string>();
  const perClient: Limiter = app.createRateLimit({
    max: limits.tokenPerClient,
    timeWindow: 60_000,
    keyGenerator: (r) => `oauth-client:${clientOf.get(r) ?? ''}`,
  });
  return async (request, clientId) => {
    clientOf.set(request, clientId);
    const r = await perClient(request);
    if (!r.isAllowed && r.isExceeded) {
      const s = String(Math.max(1, r.ttlInSeconds));
      throw new OAuthError(429, 'temporarily_unavailable', `too many token requests for this client; retry in ${s} s`, { 'retry-after': s });
    }
  };
}

/** POST /oauth/token: RFC 6749 §4.4 client_credentials with client_secret_basic or client_secret_post. */
export async function tokenRoute(app: FastifyInstance): Promise<void> {
  const limits = app.config.rateLimit;
  const limitClient = perClientLimit(app);
  app.post(
    '/oauth/token',
    {
      bodyLimit: OAUTH_BODY_LIMIT,
      config: {
        errorFormat: 'oauth',
        rateLimit: { max: limits.tokenPerIp, timeWindow: 60_000, keyGenerator: (r) => `oauth-token-ip:${r.ip}` },
      },
      schema: {
        tags: ['oauth'],
        operationId: 'requestToken',
        summary: 'Token endpoint: an SDK key (client_credentials) gets a JWT access token',
        description:
          'RFC 6749 §4.4. Authenticate with HTTP Basic (client_secret_basic, id and secret form-urlencoded) or with ' +
          'client_id and client_secret in the body (client_secret_post), never both, or with a client assertion (private_key_jwt, ' +
          'RFC 7523) for keys registered with a public key. Parameters only in the body, each once. A `DPoP` header with a valid ' +
          'proof (RFC 9449) makes the token DPoP-bound (`token_type: DPoP`, `cnf.jkt`).',
        consumes: ['application/x-www-form-urlencoded'],
        security: [{ clientBasic: [] }, {}],
        headers: {
          type: 'object',
          properties: { dpop: { type: 'string', description: 'DPoP proof JWT (RFC 9449 §4) for POST of this endpoint' } },
        },
        body: tokenBody,
        response: { 200: tokenResponse, ...oauthErrorResponses(400, 401, 413, 415, 429, 503) },
      },
      preValidation: formOnly,
    },
    async (request, reply) => {
      const client = await app.oauth.clientAuth.authenticateClient(request);
      const body = request.body as FormBody;
      if (body.grant_type === undefined || body.grant_type === '') throw invalidRequest('grant_type is required');
      if (body.grant_type !== GRANT_TYPE) {
        throw unsupportedGrantType(`grant_type ${body.grant_type} is not supported; use ${GRANT_TYPE}`);
      }
      await limitClient(request, client.clientId);
      const jkt = await tokenBinding(app.dpop, request, app.config.issuer, client);
      const now = app.clock.now();
      const response = await clientCredentialsGrant({ scope: body.scope, audience: body.audience, resource: body.resource, jkt }, client, {
        keys: app.oauth.keys,
        issuer: app.config.issuer,
        allowedAudiences: app.config.allowedAudiences,
        ttlSeconds: app.config.accessTokenTtlSeconds,
        nowMs: now,
      });
      app.usage.touch(SDK_KEY_USAGE, client.clientId, new Date(now));
      if (jkt !== null && app.dpop.nonceRequired) reply.header('dpop-nonce', app.dpop.currentNonce());
      return noStore(reply).send(response);
    },
  );
}
