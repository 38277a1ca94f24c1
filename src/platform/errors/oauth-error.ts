/**
 * RFC 6749 §5.2 errors (and RFC 7009 / 7662 / 8707 additions), rendered as
 * `{ "error": code, "error_description": ... }` with `Cache-Control: no-store`.
 */
import { StatusError } from './refusal.js';

export type OAuthErrorCode =
  | 'invalid_request'
  | 'invalid_client'
  | 'invalid_grant'
  | 'unauthorized_client'
  | 'unsupported_grant_type'
  | 'invalid_scope'
  | 'invalid_target'
  | 'unsupported_token_type'
  | 'invalid_token'
  | 'invalid_dpop_proof'
  | 'use_dpop_nonce'
  | 'insufficient_scope'
  | 'access_denied'
  | 'slow_down'
  | 'temporarily_unavailable'
  | 'server_error';

export class OAuthError extends StatusError {
  override name = 'OAuthError';
  constructor(
    readonly statusCode: number,
    readonly error: OAuthErrorCode,
    readonly description: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(statusCode, description);
  }
}

export const invalidRequest = (description: string) => new OAuthError(400, 'invalid_request', description);
export const invalidScope = (description: string) => new OAuthError(400, 'invalid_scope', description);
export const invalidTarget = (description: string) => new OAuthError(400, 'invalid_target', description);
export const unauthorizedClient = (description: string) => new OAuthError(400, 'unauthorized_client', description);
export const unsupportedGrantType = (description: string) => new OAuthError(400, 'unsupported_grant_type', description);

/**
 * §5.2 invalid_client: 401 with a challenge for the scheme the client used (Basic by default).
 * One message for unknown, wrong and disabled clients, so callers learn nothing from it.
 */
export function invalidClient(scheme: 'Basic' | 'Bearer' = 'Basic', realm = 'tessera'): OAuthError {
  return new OAuthError(401, 'invalid_client', 'client authentication failed', {
    'www-authenticate': `${scheme} realm="${realm}"`,
  });
}
