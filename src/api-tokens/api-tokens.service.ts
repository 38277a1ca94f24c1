import type { Kysely, Transaction } from 'kysely';
import type { Database } from '../platform/database/database.js';
import { insertApiToken, revokeApiTokenOfUser, revokeLiveDescendants, type ApiTokenRow } from './api-tokens.repository.js';
import { publishChange } from '../platform/database/notifications.js';
import { recordAudit, type Actor } from '../platform/database/audit.repository.js';
import { conflict, forbidden } from '../platform/errors/api-error.js';
import type { CascadeRegistry } from '../platform/cascades.js';
import { displayPrefix, generateApiToken, hashApiToken } from './api-token.js';
import { capExpiry, lockParent } from './credential-parent.js';
import type { Principal } from '../platform/auth/principal.js';

/** Creates an API token and returns it with its row; the token exists nowhere else after this. */
export async function issueApiToken(
  db: Kysely<Database> | Transaction<Database>,
  pepper: Buffer,
  input: { userId: string; name: string; scopes: string[]; expiresAt: Date | null; parentApiTokenId?: string | null },
): Promise<{ token: string; row: ApiTokenRow }> {
  const token = generateApiToken();
  const row = await insertApiToken(db, {
    userId: input.userId,
    name: input.name,
    tokenHash: hashApiToken(pepper, token),
    displayPrefix: displayPrefix(token),
    scopes: [...new Set(input.scopes)],
    expiresAt: input.expiresAt,
    parentApiTokenId: input.parentApiTokenId ?? null,
  });
  return { token, row };
}

/**
 * Creates an API token that an operator made (the CLI's bootstrap): no parent credential, so the
 * scopes and expiry are the operator's choice. Audited in the same transaction.
 */
export async function createApiTokenAsOperator(
  db: Kysely<Database>,
  pepper: Buffer,
  actor: Actor,
  input: { userId: string; name: string; scopes: string[]; expiresAt: Date | null },
): Promise<{ token: string; row: ApiTokenRow }> {
  return db.transaction().execute(async (trx) => {
    const issued = await issueApiToken(trx, pepper, input);
    await recordAudit(trx, actor, {
      action: 'api_token.create',
      targetType: 'api_token',
      targetId: issued.row.id,
      details: { user_id: input.userId, scopes: issued.row.scopes },
    });
    return issued;
  });
}

/**
 * Creates an API token on behalf of an API-token or session principal: its parent is the API
 * token the principal acts for, its scopes a subset of the parent's (else 403 `forbidden` naming
 * the others), its expiry the requested one capped at the parent's (a request for later, or for
 * none, gets the parent's). Audited in the same transaction.
 */
export async function createChildApiToken(
  db: Kysely<Database>,
  pepper: Buffer,
  principal: Principal,
  input: { name: string; scopes: string[]; expiresAt: Date | null; now: Date; actor: Actor },
): Promise<{ token: string; row: ApiTokenRow }> {
  return db.transaction().execute(async (trx) => {
    const parent = await lockParent(trx, principal, input.now);
    const lacking = input.scopes.filter((s) => !parent.scopes.includes(s));
    if (lacking.length) throw forbidden(`a token cannot grant scopes its creator's credential lacks: ${lacking.join(', ')}`);
    const issued = await issueApiToken(trx, pepper, {
      userId: principal.userId,
      name: input.name,
      scopes: input.scopes,
      expiresAt: capExpiry(input.expiresAt, parent.expiresAt),
      parentApiTokenId: parent.apiTokenId,
    });
    await recordAudit(trx, input.actor, {
      action: 'api_token.create',
      targetType: 'api_token',
      targetId: issued.row.id,
      details: {
        name: input.name,
        scopes: issued.row.scopes,
        parent_api_token_id: parent.apiTokenId,
        expires_at: issued.row.expires_at?.toISOString() ?? null,
      },
    });
    return issued;
  });
}

/** What a revocation ended, for the caller to drop its own caches at once. */
export interface Revoked {
  /** The token and every live descendant of it. */
  apiTokenIds: string[];
  /** client_ids of the SDK keys those tokens created (deleted). */
  sdkKeyClientIds: string[];
}

/**
 * Revokes one of the user's API tokens and, transitively, every credential created from it: its
 * descendant API tokens are revoked, the SDK keys any of them created are deleted, and every
 * session made from any of them ends. One transaction, audited per credential, every instance
 * told. Null when the user has no such live token.
 */
export async function revokeApiToken(
  { db, cascades }: { db: Kysely<Database>; cascades: CascadeRegistry },
  input: { userId: string; tokenId: string; now: Date; actor: Actor },
): Promise<Revoked | null> {
  return db.transaction().execute(async (trx) => {
    const row = await revokeApiTokenOfUser(trx, input.userId, input.tokenId, input.now);
    if (!row) return null;
    return revokeFamily(trx, cascades, row, input);
  });
}

/**
 * Replaces one of the user's live API tokens with a new value, in one transaction: the old token
 * is revoked exactly as {@link revokeApiToken} revokes it (its descendants, the SDK keys they
 * created and every session made from any of them end), and a new token with the same name,
 * scopes, expiry and parent is issued. The caller's credential must cover the token (its scopes
 * and its expiry), as it would to create it: 403 otherwise. Null when the user has no such live
 * token; 409 when it has expired.
 */
export async function regenerateApiToken(
  { db, cascades, pepper }: { db: Kysely<Database>; cascades: CascadeRegistry; pepper: Buffer },
  principal: Principal,
  input: { tokenId: string; now: Date; actor: Actor },
): Promise<{ token: string; row: ApiTokenRow; revoked: Revoked } | null> {
  return db.transaction().execute(async (trx) => {
    const parent = await lockParent(trx, principal, input.now);
    const old = await revokeApiTokenOfUser(trx, principal.userId, input.tokenId, input.now);
    if (!old) return null;
    if (old.expires_at !== null && old.expires_at.getTime() <= input.now.getTime()) throw conflict('this API token has expired; create a new one');
    if (old.id !== parent.apiTokenId) {
      const lacking = old.scopes.filter((s) => !parent.scopes.includes(s));
      const outlives = capExpiry(old.expires_at, parent.expiresAt) !== old.expires_at;
      if (lacking.length || outlives) {
        throw forbidden("your credential does not cover this token's scopes and expiry; regenerate it with a credential that does");
      }
    }
    const revoked = await revokeFamily(trx, cascades, old, { userId: principal.userId, now: input.now, actor: input.actor });
    const issued = await issueApiToken(trx, pepper, {
      userId: principal.userId,
      name: old.name,
      scopes: old.scopes,
      expiresAt: old.expires_at,
      parentApiTokenId: old.parent_api_token_id,
    });
    await recordAudit(trx, input.actor, {
      action: 'api_token.regenerate',
      targetType: 'api_token',
      targetId: issued.row.id,
      details: {
        previous_api_token_id: old.id,
        name: old.name,
        scopes: issued.row.scopes,
        parent_api_token_id: old.parent_api_token_id,
        expires_at: old.expires_at?.toISOString() ?? null,
      },
    });
    return { ...issued, revoked };
  });
}

/** Ends a just-revoked token's family (descendants, their SDK keys, every session of any of them). */
async function revokeFamily(
  trx: Transaction<Database>,
  cascades: CascadeRegistry,
  row: ApiTokenRow,
  input: { userId: string; now: Date; actor: Actor },
): Promise<Revoked> {
  const ended = [row.id];
  await endSessions(trx, cascades, row.id, row.user_id, input, { via: null });
  // Until nothing is left: a creation that held a parent's lock commits before the update of
  // that parent returns, and the next round (a new snapshot) sees what it created.
  for (;;) {
    const found = await revokeLiveDescendants(trx, row.id, input.now);
    if (found.length === 0) break;
    for (const d of found) {
      ended.push(d.id);
      await endSessions(trx, cascades, d.id, row.user_id, input, { via: d.parent_api_token_id });
    }
  }
  const { sdkKeysDeleted } = await cascades.run(
    trx,
    'apiTokenFamilyRevoked',
    { apiTokenIds: ended, now: input.now, actor: input.actor },
    { sdkKeysDeleted: [] },
  );
  return { apiTokenIds: ended, sdkKeyClientIds: sdkKeysDeleted };
}

/** Ends a revoked token's sessions, tells every instance, and audits the revocation. */
async function endSessions(
  trx: Transaction<Database>,
  cascades: CascadeRegistry,
  tokenId: string,
  userId: string,
  input: { now: Date; actor: Actor },
  cause: { via: string | null },
): Promise<void> {
  const { sessionsEnded } = await cascades.run(trx, 'apiTokenRevoked', { apiTokenId: tokenId, now: input.now, actor: input.actor }, { sessionsEnded: 0 });
  await publishChange(trx, { type: 'api_token', id: tokenId });
  await recordAudit(trx, input.actor, {
    action: 'api_token.revoke',
    targetType: 'api_token',
    targetId: tokenId,
    details: {
      user_id: userId,
      sessions_ended: sessionsEnded,
      ...(cause.via === null ? {} : { reason: 'parent_revoked', parent_api_token_id: cause.via }),
    },
  });
}
