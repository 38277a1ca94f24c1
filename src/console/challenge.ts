import { createHmac } from 'node:crypto';
import { safeEqual } from '../platform/crypto/secrets.js';

/**
 * A WebAuthn challenge this server issued, carried by the browser in an HttpOnly cookie and
 * authenticated with an HMAC keyed by the pepper, so any instance can check it without shared
 * state. Bound to its purpose, an expiry and (for registrations) the user.
 */
export interface Challenge {
  purpose: 'sign-in' | 'register' | 'invite';
  challenge: string;
  userId: string;
  expiresAt: number;
}

const mac = (pepper: Buffer, body: string) => createHmac('sha256', pepper).update('console_challenge\0').update(body).digest('base64url');

export function sealChallenge(pepper: Buffer, c: Challenge): string {
  const body = [c.purpose, c.challenge, c.userId, String(c.expiresAt)].join('.');
  return `${body}.${mac(pepper, body)}`;
}

/** The challenge in a cookie value, when its MAC is right, its purpose the one expected and it has not expired. */
export function openChallenge(pepper: Buffer, value: string | undefined, purpose: Challenge['purpose'], now: number): Challenge | null {
  if (!value || value.length > 512) return null;
  const parts = value.split('.');
  if (parts.length !== 5) return null;
  const [p, challenge, userId, exp, tag] = parts as [string, string, string, string, string];
  const expected = mac(pepper, [p, challenge, userId, exp].join('.'));
  if (!safeEqual(Buffer.from(tag), Buffer.from(expected))) return null;
  if (p !== purpose || !/^\d+$/.test(exp) || Number(exp) <= now) return null;
  return { purpose, challenge, userId, expiresAt: Number(exp) };
}
