import type { FastifyRequest } from 'fastify';
import type { DpopVerifier } from '../platform/auth/dpop.js';
import { proofHeader, type DpopErrorCode } from '../platform/auth/dpop.js';
import { OAuthError, invalidRequest } from '../platform/errors/oauth-error.js';

/** RFC 9449 §5 and §8 errors of the token endpoint: 400, with the nonce to use for `use_dpop_nonce`. */
function tokenEndpointFail(dpop: DpopVerifier) {
  return (code: DpopErrorCode, description: string) =>
    new OAuthError(400, code, description, code === 'use_dpop_nonce' ? { 'dpop-nonce': dpop.currentNonce() } : {});
}

/**
 * The key a token request binds its token to (RFC 9449 §5): the thumbprint of a valid `DPoP`
 * proof for `POST <issuer>/oauth/token`, or null when the request sent none. A client registered
 * with `dpop_bound_access_tokens` must send one (§5.2).
 */
export async function tokenBinding(dpop: DpopVerifier, request: FastifyRequest, issuer: string, client: { dpopBound: boolean }): Promise<string | null> {
  const fail = tokenEndpointFail(dpop);
  const proof = proofHeader(request, fail);
  if (proof === null) {
    if (client.dpopBound) throw invalidRequest('this client gets DPoP-bound access tokens only: send a DPoP proof');
    return null;
  }
  const { jkt } = await dpop.verify(proof, { method: 'POST', url: `${issuer}/oauth/token` }, fail);
  return jkt;
}
