import { invalidClient, invalidRequest } from '../platform/errors/oauth-error.js';
import type { ClientEntry } from './client-cache.js';

export type ClientAuthMethod = 'client_secret_basic' | 'client_secret_post';

export interface ClientCredentials {
  method: ClientAuthMethod;
  clientId: string;
  secret: string;
}

/** `s_<uuid>`: anything else is not one of our client ids (and skips the look-up, not the HMAC). */
export const CLIENT_ID_RE = /^s_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Longest secret worth hashing; ours are 43 characters. */
const MAX_SECRET_LENGTH = 512;

/** application/x-www-form-urlencoded decoding of one Basic credential half (RFC 6749 §2.3.1). */
function formDecode(s: string): string | null {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return null;
  }
}

/**
 * The client's credentials from `Authorization: Basic` or the body (RFC 6749 §2.3.1), or null
 * when it sent none. Two methods at once is `invalid_request`; a malformed Basic header is
 * `invalid_client`. A `client_id` in the body beside Basic must name the same client.
 */
export function extractClientCredentials(authorization: string | undefined, body: Record<string, string | undefined>): ClientCredentials | null {
  const postId = body.client_id;
  const postSecret = body.client_secret;
  if (authorization !== undefined) {
    // A malformed Basic header, a bearer token or another scheme: not client authentication here.
    const m = /^Basic +([A-Za-z0-9+/]+=*) *$/i.exec(authorization);
    if (!m) throw invalidClient();
    if (postSecret !== undefined) {
      throw invalidRequest('use one client authentication method: client_secret_basic or client_secret_post, not both');
    }
    const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) throw invalidClient();
    const clientId = formDecode(decoded.slice(0, colon));
    const secret = formDecode(decoded.slice(colon + 1));
    if (clientId === null || secret === null || clientId === '') throw invalidClient();
    if (postId !== undefined && postId !== clientId) {
      throw invalidRequest('client_id in the body differs from the client authenticated by the Authorization header');
    }
    return { method: 'client_secret_basic', clientId, secret };
  }
  if (postSecret !== undefined || postId !== undefined) {
    if (!postId || postSecret === undefined) throw invalidClient();
    return { method: 'client_secret_post', clientId: postId, secret: postSecret };
  }
  return null;
}

/** The pieces client authentication is made of, injected so tests can count what runs. */
export interface ClientAuthDeps {
  lookup(clientId: string): Promise<ClientEntry | null> | ClientEntry | null;
  /** HMAC-SHA256(pepper, secret) as stored. */
  hash(secret: string): Buffer;
  /** Constant-time comparison. */
  compare(a: Buffer, b: Buffer): boolean;
}

/** Stands in for the stored hash when the client does not exist, so both paths do the same work. */
const DUMMY_HASH = Buffer.alloc(32, 0x5a);

/**
 * Authenticates a client by its secret. Unknown, wrong, disabled and suspended-owner clients all
 * end in the same `invalid_client`, after the same work: one HMAC and one constant-time compare
 * (against a dummy hash when there is no client).
 */
export async function authenticateClient(creds: ClientCredentials, deps: ClientAuthDeps): Promise<ClientEntry> {
  const entry = CLIENT_ID_RE.test(creds.clientId) ? await deps.lookup(creds.clientId) : null;
  const secret = creds.secret.length <= MAX_SECRET_LENGTH ? creds.secret : '';
  const presented = deps.hash(secret);
  const matches = deps.compare(presented, entry ? entry.secretHash : DUMMY_HASH);
  if (!entry || !matches || secret === '' || entry.status !== 'enabled' || entry.userStatus !== 'active') {
    throw invalidClient();
  }
  return entry;
}
