import type { FastifyInstance, FastifyRequest } from 'fastify';
import { authenticate, type BearerAnswers } from '../platform/auth/authenticate.js';
import type { Principal } from '../platform/auth/principal.js';
import { OAuthError, invalidRequest } from '../platform/errors/oauth-error.js';
import { formOnly, noStore, OAUTH_BODY_LIMIT, type FormBody } from '../platform/http/form.js';
import { oauthErrorResponses } from '../platform/http/schemas.js';
import { looksLikeJwt } from './access-token.js';

/** Scopes that let a bearer token introspect any token. */
export const INTROSPECTION_SCOPES = ['introspect', 'admin'] as const;

const introspectBody = {
  type: 'object',
  properties: {
    token: { type: 'string', description: 'The token to examine' },
    token_type_hint: { type: 'string', description: 'Ignored (every kind of token is recognised by its shape)' },
    client_id: { type: 'string' },
    client_secret: { type: 'string' },
    client_assertion_type: { type: 'string' },
    client_assertion: { type: 'string' },
  },
} as const;

const introspectResponse = {
  type: 'object',
  additionalProperties: false,
  required: ['active'],
  description: 'RFC 7662 §2.2; an inactive token gets `{"active": false}` and nothing else',
  properties: {
    active: { type: 'boolean' },
    scope: { type: 'string' },
    client_id: { type: 'string' },
    sub: { type: 'string' },
    exp: { type: 'integer' },
    iat: { type: 'integer' },
    iss: { type: 'string' },
    aud: { type: 'string' },
    jti: { type: 'string' },
    token_type: { type: 'string', description: 'DPoP for DPoP-bound access tokens, else Bearer' },
    cnf: {
      type: 'object',
      additionalProperties: false,
      required: ['jkt'],
      description: 'RFC 9449 §6.2: the DPoP key a bound token must be presented with',
      properties: { jkt: { type: 'string' } },
    },
    org_id: { type: ['string', 'null'] },
    user_id: { type: 'string', description: 'Owner of the credential (SDK key owner for access tokens)' },
    credential_kind: { type: 'string', enum: ['client', 'api_token', 'session'] },
  },
} as const;

type Caller = { kind: 'client'; clientId: string } | { kind: 'bearer'; principal: Principal };

const bearerError = (status: 401 | 403, error: 'invalid_token' | 'insufficient_scope', description: string) =>
  new OAuthError(status, error, description, {
    'www-authenticate':
      error === 'invalid_token'
        ? 'Bearer realm="tessera", error="invalid_token"'
        : `Bearer realm="tessera", error="insufficient_scope", scope="${INTROSPECTION_SCOPES.join(' ')}"`,
  });

/** RFC 6750 answers in the RFC 6749 §5.2 body the OAuth routes use. */
const INTROSPECTION_BEARER_ANSWERS: BearerAnswers = {
  malformed: () => bearerError(401, 'invalid_token', 'the bearer credential is malformed'),
  missing: () => bearerError(401, 'invalid_token', 'the bearer credential is invalid, expired or revoked'),
  invalid: () => bearerError(401, 'invalid_token', 'the bearer credential is invalid, expired or revoked'),
  cannotManage: () => bearerError(403, 'insufficient_scope', `introspection needs scope ${INTROSPECTION_SCOPES.join(' or ')}`),
  insufficient: () => bearerError(403, 'insufficient_scope', `introspection needs scope ${INTROSPECTION_SCOPES.join(' or ')}`),
};

/**
 * POST /oauth/introspect (RFC 7662). Callers: an SDK key (sees its own tokens only) or a bearer
 * credential with scope `introspect` or `admin` (sees every token). JWTs are checked by the
 * access-token verifier with any audience; every other token kind through the authenticator
 * chain (`app.resolveBearer`), so new kinds of credential are covered as they are added.
 */
export async function introspectRoute(app: FastifyInstance): Promise<void> {
  /** A bearer caller when `Authorization` says Bearer (or DPoP, with a proof); otherwise the request must authenticate as a client. */
  async function caller(request: FastifyRequest): Promise<Caller> {
    const auth = request.headers.authorization;
    if (auth !== undefined && /^(Bearer|DPoP)\b/i.test(auth)) {
      const principal = await authenticate(request, { anyOf: INTROSPECTION_SCOPES }, INTROSPECTION_BEARER_ANSWERS);
      return { kind: 'bearer', principal };
    }
    const client = await app.oauth.clientAuth.authenticateClient(request);
    return { kind: 'client', clientId: client.clientId };
  }

  app.post(
    '/oauth/introspect',
    {
      bodyLimit: OAUTH_BODY_LIMIT,
      config: { errorFormat: 'oauth' },
      schema: {
        tags: ['oauth'],
        operationId: 'introspectToken',
        summary: 'Token introspection (RFC 7662): is this token active, and what does it carry',
        description:
          'Authenticate as an SDK key (client_secret_basic or client_secret_post: only tokens issued to that key are ' +
          'reported active) or with a bearer credential holding scope introspect or admin (every token).',
        consumes: ['application/x-www-form-urlencoded'],
        security: [{ clientBasic: [] }, { bearer: [] }, {}],
        body: introspectBody,
        response: { 200: introspectResponse, ...oauthErrorResponses(400, 401, 403, 413, 415, 429, 503) },
      },
      preValidation: formOnly,
    },
    async (request, reply) => {
      const who = await caller(request);
      const body = request.body as FormBody;
      if (body.token === undefined || body.token === '') throw invalidRequest('token is required');
      noStore(reply);
      const token = body.token;
      if (token.length > 4096) return { active: false };
      if (looksLikeJwt(token)) {
        const r = await app.oauth.verifier.verify(token, { audience: null });
        if (!r.ok) return { active: false };
        if (who.kind === 'client' && who.clientId !== r.claims.client_id) return { active: false };
        const c = r.claims;
        return {
          active: true,
          scope: c.scope,
          client_id: c.client_id,
          sub: c.sub,
          exp: c.exp,
          iat: c.iat,
          iss: c.iss,
          aud: c.aud,
          jti: c.jti,
          token_type: c.cnf ? 'DPoP' : 'Bearer',
          ...(c.cnf ? { cnf: { jkt: c.cnf.jkt } } : {}),
          org_id: c.org_id,
          user_id: r.client.userId,
          credential_kind: 'client' as const,
        };
      }
      // SDK keys see only their own tokens: no other kind of token is issued to a client.
      if (who.kind === 'client') return { active: false };
      const p = await app.resolveBearer(token, request);
      if (!p) return { active: false };
      return {
        active: true,
        scope: p.scopes.join(' '),
        sub: p.userId,
        ...(p.expiresAt !== null ? { exp: p.expiresAt } : {}),
        iss: app.config.issuer,
        token_type: 'Bearer',
        ...(p.clientId ? { client_id: p.clientId } : {}),
        org_id: p.organizationId,
        user_id: p.userId,
        credential_kind: p.kind,
      };
    },
  );
}
