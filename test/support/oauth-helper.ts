// Helpers shared by the OAuth tests: SDK keys through the API, token requests as clients send them.
import type { LightMyRequestResponse } from 'fastify';
import type { Harness } from './helper.js';
import { bearer } from './helper.js';
import type { User } from '../../src/identity/users.repository.js';

export interface SdkKey {
  client_id: string;
  client_secret: string;
  scopes: string[];
}

/** Creates an SDK key for `user` through POST /api/sdk-keys with a fresh API token. */
export async function createSdkKey(
  h: Harness,
  user: User,
  body: Record<string, unknown> = { name: 'sdk' },
  tokenScopes = ['api', 'quantum_tokens'],
): Promise<SdkKey> {
  const token = await h.apiToken(user, tokenScopes);
  const res = await h.inject({ method: 'POST', url: '/api/sdk-keys', headers: bearer(token), payload: body });
  if (res.statusCode !== 201) throw new Error(`create sdk key: ${res.statusCode} ${res.body}`);
  return res.json();
}

/** `application/x-www-form-urlencoded` from pairs (a name may repeat). */
export function form(pairs: Array<[string, string]> | Record<string, string>): string {
  const p = new URLSearchParams(Array.isArray(pairs) ? pairs : Object.entries(pairs));
  return p.toString();
}

/** RFC 6749 §2.3.1 Basic: id and secret form-urlencoded, then base64. */
export function basic(id: string, secret: string): string {
  const enc = (s: string) => encodeURIComponent(s).replace(/%20/g, '+');
  return `Basic ${Buffer.from(`${enc(id)}:${enc(secret)}`).toString('base64')}`;
}

export const FORM = 'application/x-www-form-urlencoded';

/** POST to an /oauth endpoint with a form body. */
export function oauthPost(
  h: Pick<Harness, 'inject'>,
  url: string,
  body: Array<[string, string]> | Record<string, string>,
  headers: Record<string, string> = {},
): Promise<LightMyRequestResponse> {
  return h.inject({ method: 'POST', url, headers: { 'content-type': FORM, ...headers }, payload: form(body) });
}

/** A token for the key via client_secret_basic. */
export async function getToken(h: Pick<Harness, 'inject'>, key: SdkKey, extra: Record<string, string> = {}): Promise<string> {
  const res = await oauthPost(h, '/oauth/token', { grant_type: 'client_credentials', ...extra }, { authorization: basic(key.client_id, key.client_secret) });
  if (res.statusCode !== 200) throw new Error(`token: ${res.statusCode} ${res.body}`);
  return res.json().access_token;
}

/** The claims of a JWT, unverified (tests inspect what was issued). */
export function claimsOf(jwt: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString('utf8'));
}

export function headerOf(jwt: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(jwt.split('.')[0]!, 'base64url').toString('utf8'));
}
