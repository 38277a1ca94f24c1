import { parseScopeString } from '../platform/auth/scopes.js';
import { invalidScope, invalidTarget, unauthorizedClient } from '../platform/errors/oauth-error.js';
import type { SigningKeyStore } from '../signing-keys/key-store.js';
import { mintAccessToken } from './access-token.js';
import type { ClientEntry } from './client-cache.js';

export const GRANT_TYPE = 'client_credentials';

/** Parameters this grant reads (RFC 6749 §4.4.2, RFC 8707 `resource`, and `audience`). */
export interface ClientCredentialsParams {
  scope?: string;
  audience?: string;
  resource?: string;
  /** Thumbprint of the DPoP key the token is bound to (RFC 9449), or null for a bearer token. */
  jkt?: string | null;
}

export interface TokenResponse {
  access_token: string;
  token_type: 'Bearer' | 'DPoP';
  expires_in: number;
  scope: string;
}

/**
 * RFC 6749 §3.3: the scope of the token. Absent -> every scope of the key; present -> a subset of
 * the key's scopes, else `invalid_scope`. Returns scopes in the key's order.
 */
export function grantedScopes(requested: string | undefined, allowed: readonly string[]): string[] {
  if (requested === undefined) return [...allowed];
  const parsed = parseScopeString(requested);
  if (parsed === null) throw invalidScope('scope is malformed: space-separated scope tokens expected');
  if (parsed.length === 0) return [...allowed];
  const unknown = parsed.filter((s) => !allowed.includes(s));
  if (unknown.length > 0) throw invalidScope(`this client may not request: ${unknown.join(' ')}`);
  return allowed.filter((s) => parsed.includes(s));
}

/** RFC 8707 §2: an absolute URI without a fragment. */
function isResourceIndicator(v: string): boolean {
  try {
    const u = new URL(v);
    return !u.hash && v.length <= 2048 && /^[a-z][a-z0-9+.-]*:/i.test(v) && !v.includes('#');
  } catch {
    return false;
  }
}

/**
 * The audience of the token: `resource` (RFC 8707) or `audience`, else Tessera itself (the
 * issuer). Both at once must agree. Anything but the issuer must be in `allowed`
 * (TESSERA_AUDIENCES; null allows any).
 */
export function resolveAudience(params: ClientCredentialsParams, issuer: string, allowed: ReadonlySet<string> | null): string {
  const { resource, audience } = params;
  if (resource !== undefined && !isResourceIndicator(resource)) {
    throw invalidTarget('resource must be an absolute URI without a fragment');
  }
  if (audience !== undefined && (audience === '' || audience.length > 2048)) {
    throw invalidTarget('audience must be a non-empty string');
  }
  if (resource !== undefined && audience !== undefined && resource !== audience) {
    throw invalidTarget('resource and audience name different targets; send one');
  }
  const target = resource ?? audience ?? issuer;
  if (target !== issuer && allowed !== null && !allowed.has(target)) {
    throw invalidTarget('this server does not issue tokens for that audience (see TESSERA_AUDIENCES)');
  }
  return target;
}

/**
 * A key bound to an organization acts for it only while its owner is a member: otherwise the
 * client authenticated but may not use this grant (RFC 6749 §5.2 `unauthorized_client`).
 */
export function requireValidOrganizationBinding(client: ClientEntry): void {
  if (!client.organizationBindingValid) {
    throw unauthorizedClient("this SDK key's organization binding is no longer valid: its owner is not a member of that organization");
  }
}

/** RFC 6749 §4.4: a client that authenticated gets a token for itself. */
export async function clientCredentialsGrant(
  params: ClientCredentialsParams,
  client: ClientEntry,
  deps: { keys: SigningKeyStore; issuer: string; allowedAudiences: ReadonlySet<string> | null; ttlSeconds: number; nowMs: number },
): Promise<TokenResponse> {
  requireValidOrganizationBinding(client);
  const scopes = grantedScopes(params.scope, client.scopes);
  const audience = resolveAudience(params, deps.issuer, deps.allowedAudiences);
  if (audience !== deps.issuer && client.audiences && !client.audiences.includes(audience)) {
    throw invalidTarget("this SDK key may not request tokens for that audience (see the key's audiences)");
  }
  const { token, claims } = await mintAccessToken(deps.keys, {
    issuer: deps.issuer,
    audience,
    client,
    scopes,
    nowMs: deps.nowMs,
    ttlSeconds: deps.ttlSeconds,
    jkt: params.jkt ?? null,
  });
  return { access_token: token, token_type: params.jkt ? 'DPoP' : 'Bearer', expires_in: claims.exp - claims.iat, scope: scopes.join(' ') };
}
