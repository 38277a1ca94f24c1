// Constants and small form helpers the console's pages share.
import type { SignInMethod } from '../people/sessions.js';
import { PASSWORD_MIN_LENGTH } from '../people/password.js';

/** Console routes are HTML for browsers, not API operations: kept out of openapi.yaml (their contract is test/console-browser.test.ts). */
export const HIDDEN = { schema: { hide: true } } as const;
export const PREFIX = '/console';
export const CHALLENGE_TTL_MS = 5 * 60_000;
export const FAILURE_WINDOW_MS = 15 * 60_000;
export const SIGN_IN_FAILED = 'Sign-in failed: check what you typed, or wait a few minutes and try again.';
export const TOKEN_SIGN_IN_CLOSED =
  'This account already has a passkey or a password: sign in with it. An API token signs in only accounts that have neither yet.';
export const PASSWORD_HINT = `At least ${PASSWORD_MIN_LENGTH} characters; not one of the most common passwords.`;

export const EXPIRY_CHOICES = [
  { value: '7d', label: '7 days', seconds: 7 * 86400 },
  { value: '30d', label: '30 days', seconds: 30 * 86400 },
  { value: '90d', label: '90 days', seconds: 90 * 86400 },
  { value: '365d', label: '1 year', seconds: 365 * 86400 },
  { value: 'never', label: 'Never (until revoked)', seconds: null },
] as const;

/** How long a rotated-out SDK-key secret keeps working, as the console offers it (the first is the default). */
export const OVERLAP_CHOICES = [
  { value: '24h', label: '24 hours', seconds: 24 * 3600 },
  { value: '1h', label: '1 hour', seconds: 3600 },
  { value: '7d', label: '7 days', seconds: 7 * 86400 },
  { value: 'now', label: 'Stop it at once', seconds: 0 },
] as const;

export type Form = Record<string, string | string[] | undefined>;

export function field(body: unknown, name: string, max = 1024): string {
  const v = (body as Form | undefined)?.[name];
  const s = Array.isArray(v) ? v[0] : v;
  return typeof s === 'string' ? s.slice(0, max) : '';
}

export function list(body: unknown, name: string): string[] {
  const v = (body as Form | undefined)?.[name];
  return (Array.isArray(v) ? v : typeof v === 'string' ? [v] : []).filter((s): s is string => typeof s === 'string');
}

export const when = (d: Date | null | undefined) => (d ? d.toISOString().replace('T', ' ').slice(0, 16) + ' UTC' : 'never');

export const METHOD_LABEL: Record<SignInMethod, string> = { passkey: 'a passkey', password: 'a password', api_token: 'an API token' };

/** An id as the console accepts it in a form or a path. */
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Rows per page of the operator lists. */
export const ADMIN_PAGE = 50;

export class PasskeyRefused extends Error {}

export function passkeyName(raw: unknown): string {
  const s = typeof raw === 'string' ? raw.trim().slice(0, 100) : '';
  return s || 'Passkey';
}
