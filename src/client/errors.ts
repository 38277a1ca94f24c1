/** Base class of every error the Tessera client throws. */
export class TesseraError extends Error {
  override name = 'TesseraError';
}

/** Missing or unusable client configuration (no credentials, unreadable key file, bad issuer). */
export class TesseraConfigError extends TesseraError {
  override name = 'TesseraConfigError';
}

/** OAuth error codes that a retry cannot fix: surfaced at once. */
export const PERMANENT_OAUTH_ERRORS = [
  'invalid_client',
  'invalid_grant',
  'unauthorized_client',
  'invalid_scope',
  'invalid_request',
  'unsupported_grant_type',
  'invalid_target',
] as const;

/**
 * An error answer from Tessera: an RFC 6749 §5.2 body (`error`, `error_description`) on the OAuth
 * endpoints, or `{error, message}` on the API. `code` is the `error` member (`server_error` when the
 * body has none), `status` the HTTP status.
 */
export class TesseraOAuthError extends TesseraError {
  override name = 'TesseraOAuthError';
  constructor(
    readonly code: string,
    readonly status: number,
    readonly description: string | undefined,
    /** True when the request was (or could have been) retried: 5xx, 429, temporarily_unavailable. */
    readonly retryable: boolean,
  ) {
    super(description ? `${code}: ${description}` : `${code} (HTTP ${status})`);
  }
}

/** Tessera could not be reached (connection refused, reset, DNS, timeout), after the retries. */
export class TesseraNetworkError extends TesseraError {
  override name = 'TesseraNetworkError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** Why a verifier refused a token (for logs; the answer to the caller is the same for all). */
export type VerifyFailureReason =
  | 'missing'
  | 'malformed'
  | 'algorithm'
  | 'unknown_kid'
  | 'signature'
  | 'expired'
  | 'issuer'
  | 'audience'
  | 'claims'
  | 'type'
  | 'revoked'
  | 'scope'
  | 'dpop'
  | 'unavailable';

/**
 * A token the verifier refused. `code` is the RFC 6750 error: `invalid_token` (401),
 * `insufficient_scope` (403), or `temporarily_unavailable` (503: a required remote check could not
 * be made).
 */
export class TesseraVerifyError extends TesseraError {
  override name = 'TesseraVerifyError';
  readonly status: 401 | 403 | 503;
  constructor(
    readonly code: 'invalid_token' | 'insufficient_scope' | 'temporarily_unavailable',
    readonly reason: VerifyFailureReason,
    message: string,
    /** For insufficient_scope: the scopes the request needs. */
    readonly scopes: readonly string[] = [],
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.status = code === 'invalid_token' ? 401 : code === 'insufficient_scope' ? 403 : 503;
  }
}
