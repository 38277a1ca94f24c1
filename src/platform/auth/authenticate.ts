import type { FastifyRequest } from 'fastify';
import { ApiError, insufficientScope, invalidToken, missingToken, sdkKeyTokenCannotManage } from '../errors/api-error.js';
import { hasScopes, type Principal } from './principal.js';
import { proofHeader, requestUrl, type DpopErrorCode, type DpopVerifier } from './dpop.js';

/**
 * One kind of bearer credential. The first authenticator whose `accepts` matches the token's
 * shape decides; `null` from it means "not valid" (401), never "try the next one".
 */
export interface Authenticator {
  name: string;
  accepts(token: string): boolean;
  authenticate(token: string, request: FastifyRequest): Promise<Principal | null>;
}

/** RFC 6750 §2.1 b64token */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

/** The token of an `Authorization: Bearer <token>` header value, or null when the value is not that. */
export function parseBearerHeader(authorization: string | undefined): string | null {
  const m = /^Bearer +(\S+) *$/i.exec(authorization ?? '');
  return m ? m[1]! : null;
}

/** The token of an `Authorization: DPoP <token>` header value (RFC 9449 §7.1), or null when the value is not that. */
export function parseDpopHeader(authorization: string | undefined): string | null {
  if (authorization === undefined || (authorization.charCodeAt(0) | 0x20) !== 0x64) return null;
  const m = /^DPoP +(\S+) *$/i.exec(authorization);
  return m ? m[1]! : null;
}

/**
 * The bearer token of a request: `Authorization: Bearer <t>` or `x-access-token: <t>` (the IBM
 * Quantum header). `null` when neither is sent; an ApiError when what is sent is malformed or
 * when both carry different tokens (RFC 6750 §2: one method per request).
 */
export function extractBearer(request: FastifyRequest): string | null {
  const auth = request.headers.authorization;
  const xat = request.headers['x-access-token'];
  let fromAuth: string | null = null;
  if (auth !== undefined) {
    fromAuth = parseBearerHeader(auth);
    if (fromAuth === null) {
      if (/^Bearer\b/i.test(auth)) throw invalidToken('malformed Authorization header');
      throw new ApiError(401, 'invalid_token', 'use the Bearer or DPoP authentication scheme', {
        'www-authenticate': 'Bearer realm="tessera"',
      });
    }
    if (!B64TOKEN.test(fromAuth)) throw invalidToken('malformed bearer token');
  }
  let fromHeader: string | null = null;
  if (xat !== undefined) {
    if (Array.isArray(xat)) throw new ApiError(400, 'invalid_request', 'send one x-access-token header');
    fromHeader = xat.trim();
    if (!fromHeader || !B64TOKEN.test(fromHeader)) throw invalidToken('malformed x-access-token header');
  }
  if (fromAuth && fromHeader && fromAuth !== fromHeader) {
    throw new ApiError(400, 'invalid_request', 'send the access token in one place: Authorization or x-access-token, not both');
  }
  return fromAuth ?? fromHeader;
}

/** What the bearer credential must hold: every scope named, or at least one of them. */
export type BearerRequirement =
  | {
      scopes: readonly string[];
      /** The credential must be an API token or a session: an SDK key's JWT never manages credentials. */
      credentialManager?: boolean;
    }
  | { anyOf: readonly string[] };

/** The errors a failed bearer check answers with (API routes and OAuth routes word them differently). */
export interface BearerAnswers {
  /** No bearer credential was sent. */
  missing(): Error;
  /** What was sent is not a well-formed bearer credential (`err`: what extraction threw). */
  malformed(err: unknown): Error;
  /** The credential is not valid (unknown, expired, revoked, ...). */
  invalid(): Error;
  /** An SDK key's JWT on a route that manages credentials. */
  cannotManage(): Error;
  /** The credential lacks the scopes `required` names. */
  insufficient(required: readonly string[]): Error;
  /**
   * A DPoP-bound token presented as a bearer token, a bearer token under the DPoP scheme, or a
   * refused proof (RFC 9449 §7.1); default: the API's answer with a `DPoP` challenge.
   */
  dpop?(code: 'invalid_token' | DpopErrorCode, description: string): Error;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** DPoP proof verification (RFC 9449), shared by the token endpoint and every resource route. */
    dpop: DpopVerifier;
  }
}

/** The API's answer to a DPoP failure: 401 with a `DPoP` challenge (and the nonce to use, for `use_dpop_nonce`). */
export function dpopApiError(dpop: DpopVerifier, code: 'invalid_token' | DpopErrorCode, description: string): ApiError {
  const headers: Record<string, string> = { 'www-authenticate': dpop.challenge(code, description) };
  if (code === 'use_dpop_nonce') headers['dpop-nonce'] = dpop.currentNonce();
  return new ApiError(401, code, description, headers);
}

/** The API's answers: `{error, message}` bodies with a `Bearer realm="tessera"` challenge. */
export const API_BEARER_ANSWERS: BearerAnswers = {
  missing: () => missingToken(),
  malformed: (err) => err as Error,
  invalid: () => invalidToken(),
  cannotManage: () => sdkKeyTokenCannotManage(),
  insufficient: (required) => insufficientScope(required),
};

/** The request's bearer token; `answers.missing()` when it sent none, `answers.malformed()` when it is malformed. */
export function bearerToken(request: FastifyRequest, answers: BearerAnswers = API_BEARER_ANSWERS): string {
  let token: string | null;
  try {
    token = extractBearer(request);
  } catch (err) {
    throw answers.malformed(err);
  }
  if (!token) throw answers.missing();
  return token;
}

/**
 * The one bearer check: the request's credential (Authorization or x-access-token), resolved by
 * the app's authenticators, holding what `requirement` asks. Checked in this order: malformed,
 * missing, invalid, an SDK key's JWT where credentials are managed, scopes.
 */
export async function authenticate(
  request: FastifyRequest,
  requirement: BearerRequirement,
  answers: BearerAnswers = API_BEARER_ANSWERS,
  /** Where a DPoP proof must point when not at this request (read only for a DPoP request). */
  proofTarget: () => ProofTarget | null = () => null,
): Promise<Principal> {
  const dpopToken = parseDpopHeader(request.headers.authorization);
  const principal = dpopToken === null ? await bearerPrincipal(request, answers) : await dpopPrincipal(request, dpopToken, answers, proofTarget);
  if ('anyOf' in requirement) {
    if (!requirement.anyOf.some((s) => principal.scopes.includes(s))) throw answers.insufficient(requirement.anyOf);
  } else {
    if (requirement.credentialManager && principal.kind === 'client') throw answers.cannotManage();
    if (!hasScopes(principal, requirement.scopes)) throw answers.insufficient(requirement.scopes);
  }
  return principal;
}

function dpopAnswer(request: FastifyRequest, answers: BearerAnswers, code: 'invalid_token' | DpopErrorCode, description: string): Error {
  return answers.dpop ? answers.dpop(code, description) : dpopApiError(request.server.dpop, code, description);
}

/** A bearer credential: valid, and not bound to a DPoP key (such a token is usable only with proofs). */
async function bearerPrincipal(request: FastifyRequest, answers: BearerAnswers): Promise<Principal> {
  const token = bearerToken(request, answers);
  const principal = await request.server.resolveBearer(token, request);
  if (!principal) throw answers.invalid();
  if (principal.jkt !== undefined)
    throw dpopAnswer(request, answers, 'invalid_token', 'this access token is DPoP-bound: send it with the DPoP scheme and a proof');
  return principal;
}

/**
 * The request a DPoP proof must name when it is not the one that carries it: a gateway's
 * forward-auth subrequest checks the proof the client made for the request the gateway holds.
 */
export interface ProofTarget {
  method: string;
  /** Absolute URL without query and fragment, as `htu` names it. */
  url: string;
}

/**
 * `Authorization: DPoP <token>` with a `DPoP` proof (RFC 9449 §7): the token is valid and bound to
 * the proof's key, and the proof is for this request's method and URL (or `proofTarget`'s) and carries
 * the token's `ath`.
 */
async function dpopPrincipal(request: FastifyRequest, token: string, answers: BearerAnswers, proofTarget: () => ProofTarget | null): Promise<Principal> {
  const fail = (code: 'invalid_token' | DpopErrorCode, description: string) => dpopAnswer(request, answers, code, description);
  if (!B64TOKEN.test(token)) throw fail('invalid_token', 'malformed DPoP access token');
  if (request.headers['x-access-token'] !== undefined) throw fail('invalid_token', 'send the access token in one place: Authorization');
  const proof = proofHeader(request, fail);
  if (proof === null) throw fail('invalid_dpop_proof', 'a DPoP proof (the DPoP header) is required with the DPoP scheme');
  const principal = await request.server.resolveBearer(token, request);
  if (!principal) throw fail('invalid_token', 'the access token is invalid, expired or revoked');
  if (principal.jkt === undefined) throw fail('invalid_token', 'this access token is not DPoP-bound: send it with the Bearer scheme');
  const { dpop, config } = request.server;
  const { method, url } = proofTarget() ?? { method: request.method, url: requestUrl(config.issuer, request) };
  const { jkt } = await dpop.verify(proof, { method, url, accessToken: token }, fail);
  if (jkt !== principal.jkt) throw fail('invalid_dpop_proof', 'the DPoP proof is signed by another key than the one the token is bound to');
  return principal;
}
