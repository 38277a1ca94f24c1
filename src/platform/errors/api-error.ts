/**
 * Errors of the self-service, admin and operations API. Rendered as `{ "error": code, "message": ... }`;
 * `code` is stable and documented, `message` is for people.
 *
 * The one convention for refusals: services throw an ApiError (status, code, message) and the one
 * error handler (handler.ts) renders it; routes never translate errors. The CLI prints the message.
 */
import { StatusError } from './refusal.js';

export type ApiErrorCode =
  | 'invalid_request'
  | 'invalid_token'
  | 'invalid_dpop_proof'
  | 'use_dpop_nonce'
  | 'insufficient_scope'
  | 'forbidden'
  | 'not_found'
  | 'method_not_allowed'
  | 'conflict'
  | 'limit_exceeded'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'rate_limited'
  | 'service_unavailable'
  | 'internal_error';

export class ApiError extends StatusError {
  override name = 'ApiError';
  constructor(
    readonly statusCode: number,
    readonly code: ApiErrorCode,
    message: string,
    readonly headers: Record<string, string> = {},
    /** Extra fields for the body (kept small and never secret). */
    readonly details?: Record<string, unknown>,
  ) {
    super(statusCode, message);
  }
}

export const badRequest = (message: string, details?: Record<string, unknown>) => new ApiError(400, 'invalid_request', message, {}, details);
export const notFound = (what = 'resource') => new ApiError(404, 'not_found', `${what} not found`);
export const forbidden = (message: string) => new ApiError(403, 'forbidden', message);
export const conflict = (message: string, details?: Record<string, unknown>) => new ApiError(409, 'conflict', message, {}, details);

/** RFC 6750 §3: a missing, malformed, expired or revoked bearer credential. */
export function invalidToken(message = 'the access token is missing, invalid, expired or revoked', realm = 'tessera'): ApiError {
  return new ApiError(401, 'invalid_token', message, {
    'www-authenticate': `Bearer realm="${realm}", error="invalid_token", error_description="${message.replace(/"/g, "'")}"`,
  });
}

/** RFC 6750 §3.1: no credential at all gets a bare challenge. */
export function missingToken(realm = 'tessera'): ApiError {
  return new ApiError(401, 'invalid_token', 'authentication required: send a bearer token', {
    'www-authenticate': `Bearer realm="${realm}"`,
  });
}

/** RFC 6750 §3.1 insufficient_scope. */
export function insufficientScope(required: readonly string[], realm = 'tessera'): ApiError {
  const scope = required.join(' ');
  return new ApiError(403, 'insufficient_scope', `this request needs scope: ${scope}`, {
    'www-authenticate': `Bearer realm="${realm}", error="insufficient_scope", scope="${scope}"`,
  });
}

/** Message of the 403 an SDK key's JWT gets on any write that manages credentials. */
export const SDK_KEY_TOKEN_CANNOT_MANAGE = 'SDK-key access tokens cannot manage credentials; use an API token or a session';

/**
 * RFC 6750 §3.1 insufficient_scope for SDK-key JWTs on credential-managing writes: no scope
 * makes such a token sufficient, so the challenge names none.
 */
export function sdkKeyTokenCannotManage(realm = 'tessera'): ApiError {
  return new ApiError(403, 'insufficient_scope', SDK_KEY_TOKEN_CANNOT_MANAGE, {
    'www-authenticate': `Bearer realm="${realm}", error="insufficient_scope", error_description="${SDK_KEY_TOKEN_CANNOT_MANAGE}"`,
  });
}
