/** Shared JSON schemas for route declarations (and so for the OpenAPI contract). */

export const apiErrorSchema = {
  type: 'object',
  description: 'API error: `error` is a stable code, `message` is for people',
  required: ['error', 'message'],
  properties: {
    error: { type: 'string' },
    message: { type: 'string' },
  },
  additionalProperties: true,
} as const;

export const oauthErrorSchema = {
  type: 'object',
  description: 'RFC 6749 §5.2 error',
  required: ['error'],
  properties: {
    error: { type: 'string' },
    error_description: { type: 'string' },
  },
  additionalProperties: false,
} as const;

const DESCRIPTIONS: Record<number, string> = {
  400: 'Invalid request',
  401: 'Missing, invalid, expired or revoked credential',
  403: 'Credential lacks a required scope or right',
  404: 'Not found',
  409: 'Conflict with the current state',
  413: 'Body too large',
  415: 'Unsupported content type',
  429: 'Rate limit exceeded (see Retry-After)',
  500: 'Internal error (details are logged, never sent; x-request-id names the request)',
  503: 'The database is unavailable or the server is shutting down; retry',
};

/** Response schemas for the error statuses a route can answer, API-shaped. */
export function errorResponses(...statuses: number[]): Record<number, unknown> {
  return Object.fromEntries(statuses.map((s) => [s, { ...apiErrorSchema, description: DESCRIPTIONS[s] ?? 'Error' }]));
}

/** Response schemas for the error statuses an OAuth route can answer, RFC 6749-shaped. */
export function oauthErrorResponses(...statuses: number[]): Record<number, unknown> {
  return Object.fromEntries(statuses.map((s) => [s, { ...oauthErrorSchema, description: DESCRIPTIONS[s] ?? 'Error' }]));
}

export const uuidSchema = { type: 'string', format: 'uuid' } as const;
export const dateTimeSchema = { type: 'string', format: 'date-time' } as const;

/** Id-ordered paging: `?limit=` (1-500, default 100) and `?after=` the last id seen. */
export const pageQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: { limit: { type: 'integer', minimum: 1, maximum: 500, default: 100 }, after: uuidSchema },
} as const;

/** The `after` of the next page, or null on the last one. */
export const nextAfterSchema = { anyOf: [uuidSchema, { type: 'null' }] } as const;
