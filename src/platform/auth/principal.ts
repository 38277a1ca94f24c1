/** Who a request acts as, whichever bearer credential it carried. */
export interface Principal {
  /** What authenticated it: an API token, a loginWithToken session, an SDK key's JWT, or a console (browser) session. */
  kind: 'api_token' | 'session' | 'client' | 'console_session';
  userId: string;
  scopes: readonly string[];
  /** Id of the credential: API token id, session id, or the JWT's jti. */
  credentialId: string;
  /** The SDK key's client_id, for `client` principals. */
  clientId: string | null;
  organizationId: string | null;
  /** Epoch seconds at which the credential stops working, if it does. */
  expiresAt: number | null;
  /**
   * The API token this principal acts for: itself, or the one a session came from. Credentials
   * it creates get this token as their parent. Null for SDK-key JWTs, which never manage credentials.
   */
  apiTokenId: string | null;
  /** JWK SHA-256 thumbprint the credential is bound to (RFC 9449 `cnf.jkt`): usable only with DPoP proofs of that key. */
  jkt?: string;
}

/** How audit rows name the credential behind a principal. */
export function credentialLabel(p: Principal): string {
  return p.kind === 'client' ? `client:${p.clientId}` : `${p.kind}:${p.credentialId}`;
}

export function hasScopes(p: Principal, required: readonly string[]): boolean {
  return required.every((s) => p.scopes.includes(s));
}
