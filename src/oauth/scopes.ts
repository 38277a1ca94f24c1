import { parseScopeString } from '../platform/auth/scopes.js';
import { invalidScope } from '../platform/errors/oauth-error.js';

/** Scopes an SDK key may hold (`admin` stays with operators' API tokens). */
export const SDK_KEY_SCOPES = ['api', 'quantum_tokens', 'introspect'] as const;

export function isSdkKeyScope(s: string): boolean {
  return (SDK_KEY_SCOPES as readonly string[]).includes(s);
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
