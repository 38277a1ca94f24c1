/** Scopes an SDK key may hold (`admin` stays with operators' API tokens). */
export const SDK_KEY_SCOPES = ['api', 'quantum_tokens', 'introspect', 'events:read'] as const;

export function isSdkKeyScope(s: string): boolean {
  return (SDK_KEY_SCOPES as readonly string[]).includes(s);
}
