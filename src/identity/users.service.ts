import type { Kysely } from 'kysely';
import type { Database } from '../platform/database/database.js';
import { publishChange } from '../platform/database/notifications.js';
import { recordAudit, type Actor } from '../platform/database/audit.repository.js';
import { createUser, setUserStatus, type User } from './users.repository.js';
import type { CascadeRegistry } from '../platform/cascades.js';
import { conflict } from '../platform/errors/api-error.js';

/** Creates a user (audited). 409 `conflict` when the email is taken. */
export async function createUserAudited(db: Kysely<Database>, actor: Actor, input: { email: string; name: string }): Promise<User> {
  try {
    return await db.transaction().execute(async (trx) => {
      const u = await createUser(trx, input);
      await recordAudit(trx, actor, { action: 'user.create', targetType: 'user', targetId: u.id, details: { email: u.email } });
      return u;
    });
  } catch (err) {
    if ((err as { code?: string }).code === '23505') throw conflict(`a user with email ${input.email} exists already`);
    throw err;
  }
}

/**
 * Suspends a user, in one transaction: status `suspended`, every API token and session revoked,
 * every SDK key disabled with its `tokens_valid_after` stamped, every instance told. This cuts off
 * every token issued before it for good: activating later brings nothing back (the user needs new
 * API tokens, re-enables their keys themselves, and the keys' old access tokens stay refused).
 * Returns the user, or undefined when there is none.
 */
export async function suspendUser(
  { db, cascades }: { db: Kysely<Database>; cascades: CascadeRegistry },
  input: { userId: string; now: Date; actor: Actor },
): Promise<{ user: User; tokensRevoked: number; sessionsEnded: number; sdkKeysDisabled: string[] } | undefined> {
  return db.transaction().execute(async (trx) => {
    // A login racing this may leave a session row behind; it is never accepted, because
    // verification also requires the user active and the API token live.
    const user = await setUserStatus(trx, input.userId, 'suspended');
    if (!user) return undefined;
    const ended = await cascades.run(
      trx,
      'userSuspended',
      { userId: user.id, now: input.now, actor: input.actor },
      { apiTokensRevoked: 0, sessionsEnded: 0, sdkKeysDisabled: [] },
    );
    await publishChange(trx, { type: 'user', id: user.id });
    await recordAudit(trx, input.actor, {
      action: 'user.suspend',
      targetType: 'user',
      targetId: user.id,
      details: { api_tokens_revoked: ended.apiTokensRevoked, sessions_ended: ended.sessionsEnded, sdk_keys_disabled: ended.sdkKeysDisabled.length },
    });
    return { user, tokensRevoked: ended.apiTokensRevoked, sessionsEnded: ended.sessionsEnded, sdkKeysDisabled: ended.sdkKeysDisabled };
  });
}

/**
 * Makes a suspended user active again. Nothing suspension ended comes back: API tokens and
 * sessions stay revoked, SDK keys stay disabled, and access tokens issued before the suspension
 * stay refused even once the user enables a key again.
 */
export async function activateUser(db: Kysely<Database>, input: { userId: string; actor: Actor }): Promise<User | undefined> {
  return db.transaction().execute(async (trx) => {
    const user = await setUserStatus(trx, input.userId, 'active');
    if (!user) return undefined;
    await publishChange(trx, { type: 'user', id: user.id });
    await recordAudit(trx, input.actor, { action: 'user.activate', targetType: 'user', targetId: user.id });
    return user;
  });
}
