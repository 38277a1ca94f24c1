import type { FastifyInstance } from 'fastify';
import { requestActor } from '../platform/auth/request-actor.js';
import { dateTimeSchema, errorResponses } from '../platform/http/schemas.js';

const nullableTime = { anyOf: [dateTimeSchema, { type: 'null' }] } as const;

const keySchema = {
  type: 'object',
  additionalProperties: false,
  description: 'A signing key (public facts only; the private key never leaves the database, sealed)',
  required: ['kid', 'alg', 'state', 'published', 'created_at', 'activate_after', 'activated_at', 'retired_at', 'revoked_at', 'remove_after'],
  properties: {
    kid: { type: 'string' },
    alg: { type: 'string', enum: ['EdDSA', 'ES256', 'RS256'] },
    state: { type: 'string', enum: ['next', 'active', 'retired', 'revoked'] },
    published: { type: 'boolean', description: 'In the JWKS now' },
    created_at: { ...dateTimeSchema, description: 'Made and published (revoked keys: no longer published)' },
    activate_after: { ...nullableTime, description: 'When a next key may start signing (end of pre-publication)' },
    activated_at: nullableTime,
    retired_at: nullableTime,
    revoked_at: nullableTime,
    remove_after: { ...nullableTime, description: 'Retired/revoked keys: removed after this (every token it signed has expired)' },
  },
} as const;

const kidParams = {
  type: 'object',
  additionalProperties: false,
  required: ['kid'],
  properties: { kid: { type: 'string', minLength: 1, maxLength: 200 } },
} as const;

/** Operators' signing-key controls (scope admin); every change audited in its transaction. */
export async function adminKeysRoutes(app: FastifyInstance): Promise<void> {
  const security: Array<Record<string, string[]>> = [{ bearer: [] }, { accessToken: [] }];

  app.get(
    '/keys',
    {
      schema: {
        tags: ['admin'],
        operationId: 'listSigningKeys',
        summary: 'Signing keys in every state, oldest first, with the rotation schedule',
        security,
        response: {
          200: {
            type: 'object',
            additionalProperties: false,
            required: ['keys', 'rotation'],
            properties: {
              keys: { type: 'array', items: keySchema },
              rotation: {
                type: 'object',
                additionalProperties: false,
                required: ['signing_alg', 'period_seconds', 'prepublish_seconds', 'jwks_max_age_seconds', 'next_rotation_at'],
                properties: {
                  signing_alg: { type: 'string', description: 'Algorithm of keys made from now on' },
                  period_seconds: { type: 'integer' },
                  prepublish_seconds: { type: 'integer' },
                  jwks_max_age_seconds: { type: 'integer' },
                  next_rotation_at: { ...nullableTime, description: 'When the next key is due to start signing' },
                },
              },
            },
          },
          ...errorResponses(401, 403, 429, 503),
        },
      },
    },
    async () => {
      const { lifecycle } = app.keyRotation;
      const { signingAlg, keyRotationPeriodSeconds, keyPrepublishSeconds, jwksMaxAgeSeconds } = app.config;
      return {
        keys: await lifecycle.list(),
        rotation: {
          signing_alg: signingAlg,
          period_seconds: keyRotationPeriodSeconds,
          prepublish_seconds: keyPrepublishSeconds,
          jwks_max_age_seconds: jwksMaxAgeSeconds,
          next_rotation_at: await lifecycle.nextRotationAt(),
        },
      };
    },
  );

  app.post<{ Body: { immediate?: boolean; if_active_kid?: string } | undefined }>(
    '/keys/rotate',
    {
      // The body is optional: none means `{}`.
      preValidation: async (request) => {
        if (request.body === undefined || request.body === null) request.body = {};
      },
      schema: {
        tags: ['admin'],
        operationId: 'rotateSigningKey',
        summary: 'Rotate the signing key: pre-publish a new key (default) or switch at once (`immediate`)',
        description:
          'Without `immediate` a new `next` key is published now and starts signing after the pre-publication window ' +
          '(an already waiting `next` key is returned instead). With `immediate: true` the new key signs at once and the ' +
          'answer carries a `warning`: verifiers holding an older cached JWKS may reject its tokens until their cache expires. ' +
          'Concurrent rotations make one new key (`outcome: concurrent` for the ones that lost). Send `if_active_kid` ' +
          '(the active kid you saw) to rotate only if that key still signs: retries and racing requests then rotate once.',
        security,
        body: {
          type: 'object',
          additionalProperties: false,
          properties: {
            immediate: { type: 'boolean', default: false },
            if_active_kid: { type: 'string', minLength: 1, maxLength: 200 },
          },
        },
        response: {
          200: {
            type: 'object',
            additionalProperties: false,
            required: ['outcome', 'key', 'retired_kid'],
            properties: {
              outcome: { type: 'string', enum: ['scheduled', 'already_scheduled', 'activated', 'concurrent'] },
              key: keySchema,
              retired_kid: { type: ['string', 'null'] },
              warning: { type: 'string' },
            },
          },
          ...errorResponses(400, 401, 403, 413, 415, 429, 503),
        },
      },
    },
    async (request) =>
      app.keyRotation.lifecycle.rotate(requestActor(request), {
        immediate: request.body?.immediate === true,
        ...(request.body?.if_active_kid !== undefined && { ifActiveKid: request.body.if_active_kid }),
      }),
  );

  app.post<{ Params: { kid: string } }>(
    '/keys/:kid/revoke',
    {
      schema: {
        tags: ['admin'],
        operationId: 'revokeSigningKey',
        summary: 'Revoke a signing key (emergency): unpublished at once, every token it signed rejected',
        description:
          'When the key was the active one, a waiting `next` key (else a new key) signs from the same transaction on, ' +
          'so issuance never stops. Revoking a revoked key is a 409.',
        security,
        params: kidParams,
        response: {
          200: {
            type: 'object',
            additionalProperties: false,
            required: ['key', 'replacement'],
            properties: { key: keySchema, replacement: { anyOf: [keySchema, { type: 'null' }] } },
          },
          ...errorResponses(400, 401, 403, 404, 409, 429, 503),
        },
      },
    },
    async (request) => {
      return app.keyRotation.lifecycle.revoke(requestActor(request), request.params.kid);
    },
  );
}
