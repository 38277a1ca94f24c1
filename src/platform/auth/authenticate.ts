import type { FastifyRequest } from 'fastify';
import { ApiError, insufficientScope, invalidToken, missingToken, sdkKeyTokenCannotManage } from '../errors/api-error.js';
import { hasScopes, type Principal } from './principal.js';

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
      throw new ApiError(401, 'invalid_token', 'use the Bearer authentication scheme', {
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
export async function authenticate(request: FastifyRequest, requirement: BearerRequirement, answers: BearerAnswers = API_BEARER_ANSWERS): Promise<Principal> {
  const token = bearerToken(request, answers);
  const principal = await request.server.resolveBearer(token, request);
  if (!principal) throw answers.invalid();
  if ('anyOf' in requirement) {
    if (!requirement.anyOf.some((s) => principal.scopes.includes(s))) throw answers.insufficient(requirement.anyOf);
  } else {
    if (requirement.credentialManager && principal.kind === 'client') throw answers.cannotManage();
    if (!hasScopes(principal, requirement.scopes)) throw answers.insufficient(requirement.scopes);
  }
  return principal;
}
