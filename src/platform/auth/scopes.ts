/**
 * Scopes of API tokens and sessions. `admin` is for operators only; `introspect` lets a
 * resource server call /oauth/introspect with a bearer credential.
 */
export const API_SCOPES = ['api', 'quantum_tokens', 'admin', 'introspect', 'events:read'] as const;
export type ApiScope = (typeof API_SCOPES)[number];

export function isApiScope(s: string): s is ApiScope {
  return (API_SCOPES as readonly string[]).includes(s);
}

/** Parses an RFC 6749 §3.3 scope string (space-delimited, %x21 / %x23-5B / %x5D-7E). */
export function parseScopeString(scope: string): string[] | null {
  if (scope === '') return [];
  const parts = scope.split(' ');
  for (const p of parts) if (!/^[\x21\x23-\x5B\x5D-\x7E]+$/.test(p)) return null;
  return [...new Set(parts)];
}
