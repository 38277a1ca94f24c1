import { hash, verify } from '@node-rs/argon2';
import { isCommonPassword } from './common-passwords.js';

/** Passwords shorter than this are refused (NIST SP 800-63B allows 8; people with passkeys rarely need one). */
export const PASSWORD_MIN_LENGTH = 12;
export const PASSWORD_MAX_LENGTH = 128;

/** argon2id with the OWASP-recommended memory and time costs (19 MiB, 2 passes). */
const ARGON2 = { algorithm: 2 as const, memoryCost: 19456, timeCost: 2, parallelism: 1 };

/** Why a new password is refused, in words for the person typing it; null when it is acceptable. */
export function passwordProblem(password: string, context: { email: string; name: string }): string | null {
  const length = [...password].length;
  if (length < PASSWORD_MIN_LENGTH) return `Use at least ${PASSWORD_MIN_LENGTH} characters.`;
  if (length > PASSWORD_MAX_LENGTH) return `Use at most ${PASSWORD_MAX_LENGTH} characters.`;
  if (isCommonPassword(password)) return 'This password is among the most common ones; choose another.';
  const lower = password.toLowerCase();
  const local = context.email.split('@')[0]!.toLowerCase();
  if ((local.length >= 4 && lower.includes(local)) || lower === context.email.toLowerCase() || lower === context.name.toLowerCase()) {
    return 'Do not use your email address or name as the password.';
  }
  return null;
}

export function hashPassword(password: string): Promise<string> {
  return hash(password, ARGON2);
}

/**
 * A hash of a random password made once, verified against when the account is unknown or has no
 * password, so every failed sign-in costs one argon2 verification whatever the cause.
 */
let dummy: Promise<string> | null = null;
function dummyHash(): Promise<string> {
  dummy ??= hash(`dummy-${Math.random()}-${Date.now()}`, ARGON2);
  return dummy;
}

/** Verifies a password against a stored hash, or against the dummy hash when there is none (then always false). */
export async function verifyPassword(stored: string | null, password: string): Promise<boolean> {
  if (password.length > PASSWORD_MAX_LENGTH * 4) password = password.slice(0, PASSWORD_MAX_LENGTH * 4);
  if (stored === null) {
    await verify(await dummyHash(), password).catch(() => false);
    return false;
  }
  try {
    return await verify(stored, password);
  } catch {
    return false;
  }
}
