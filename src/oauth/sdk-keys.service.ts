import { randomUUID } from 'node:crypto';
import type { Clock } from '../platform/clock.js';
import type { Transaction } from 'kysely';
import type { Database, Db } from '../platform/database/database.js';
import { recordAudit, type Actor } from '../platform/database/audit.repository.js';
import { publishChange } from '../platform/database/notifications.js';
import { findMembership } from '../identity/organizations.repository.js';
import {
  countSdkKeys,
  deleteSdkKey,
  findSdkKey,
  insertSdkKey,
  lockUser,
  SDK_KEY_LIMIT_SQLSTATE,
  SDK_KEYS_PER_USER,
  updateSdkKey,
  type SdkKeyRow,
} from './sdk-keys.repository.js';
import { badRequest, conflict, forbidden, notFound } from '../platform/errors/api-error.js';
import { hashSecret, randomSecret } from '../platform/crypto/secrets.js';
import { capExpiry, lockParent } from '../api-tokens/credential-parent.js';
import type { Principal } from '../platform/auth/principal.js';
import { nextTokensValidAfter } from './access-token.js';
import { SDK_KEY_PURPOSE } from './client-auth.js';
import type { PublicJwk } from './oauth.table.js';
import { registrableJwk } from './client-assertion.js';

/**
 * Audits one change to a key and announces it to every instance, both in the caller's transaction,
 * so the audit trail and every instance's client cache follow exactly the changes that commit.
 */
export async function recordKeyChange(
  trx: Transaction<Database>,
  actor: Actor,
  key: { clientId: string; organizationId: string | null },
  action: string,
  details: Record<string, unknown>,
): Promise<void> {
  await recordAudit(trx, actor, { action, targetType: 'sdk_key', targetId: key.clientId, organizationId: key.organizationId, details });
  await publishChange(trx, { type: 'sdk_key', id: key.clientId });
}

export interface SdkKeyDeps {
  db: Db;
  pepper: Buffer;
  clock: Clock;
}

/** Most audiences one key may list. */
export const MAX_KEY_AUDIENCES = 20;

/**
 * A key's audience list checked against what the operator allows: each one the issuer or in
 * TESSERA_AUDIENCES (`*`: any). Duplicates are dropped; anything else is a 400 naming the others.
 */
export function checkKeyAudiences(audiences: readonly string[], issuer: string, allowed: ReadonlySet<string> | null): string[] {
  const unique = [...new Set(audiences)];
  if (unique.length > MAX_KEY_AUDIENCES) throw badRequest(`an SDK key may list at most ${MAX_KEY_AUDIENCES} audiences`);
  const refused = unique.filter((a) => a !== issuer && allowed !== null && !allowed.has(a));
  if (refused.length) {
    throw badRequest(`this server does not issue tokens for: ${refused.join(' ')} (the issuer and TESSERA_AUDIENCES are allowed)`, { audiences: refused });
  }
  return unique;
}

export type AuthMethodInput = 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt';

/** The public key a creation registers (private_key_jwt), or null for a secret key; 400 when the two disagree or the JWK is not acceptable. */
export async function registrationKey(method: AuthMethodInput | undefined, jwk: unknown, algorithms: readonly string[]): Promise<PublicJwk | null> {
  const wantsKey = method === 'private_key_jwt' || (method === undefined && jwk !== undefined);
  if (!wantsKey) {
    if (jwk !== undefined) throw badRequest('jwk is only for token_endpoint_auth_method private_key_jwt');
    return null;
  }
  if (jwk === undefined) throw badRequest('private_key_jwt needs the public key: send jwk');
  const r = await registrableJwk(jwk, algorithms);
  if (!r.ok) throw badRequest(r.reason);
  return r.jwk;
}

/** How long a rotated-out secret keeps working by default, and at most (seconds). */
export const DEFAULT_SECRET_OVERLAP_SECONDS = 24 * 3600;
export const MAX_SECRET_OVERLAP_SECONDS = 7 * 24 * 3600;

const limitReached = () =>
  conflict(`a user may hold at most ${SDK_KEYS_PER_USER} SDK keys; delete one before creating another`, {
    limit: SDK_KEYS_PER_USER,
  });

/**
 * Creates an SDK key for the principal's user and returns its secret (the only time it exists
 * outside the caller). The key is a child of the API token the principal acts for (its own, or
 * its session's): scopes within that token's, `expires_at` the requested expiry capped at that
 * token's (absent: that token's), deleted when
 * that token is revoked. The owner's row is locked first, so concurrent creations for one user
 * count one after the other; the `sdk_keys_limit` trigger holds the same line for any other writer.
 */
export async function createSdkKey(
  deps: SdkKeyDeps,
  actor: Actor,
  principal: Principal,
  input: {
    name: string;
    scopes: string[];
    organizationId: string | null;
    audiences?: string[] | null;
    expiresAt?: Date | null;
    publicJwk?: PublicJwk | null;
    dpopBound?: boolean;
  },
): Promise<{ row: SdkKeyRow; secret: string | null }> {
  // A key registered with a public key has no secret at all: nothing shared ever leaves the client.
  const secret = input.publicJwk ? null : randomSecret();
  const clientId = `s_${randomUUID()}`;
  const userId = principal.userId;
  try {
    return await deps.db.transaction().execute(async (trx) => {
      if (!(await lockUser(trx, userId))) throw notFound('user');
      const parent = await lockParent(trx, principal, new Date(deps.clock.now()));
      const lacking = input.scopes.filter((s) => !parent.scopes.includes(s));
      if (lacking.length) throw forbidden(`an SDK key cannot hold scopes your credential lacks: ${lacking.join(' ')}`);
      if (input.organizationId && !(await findMembership(trx, input.organizationId, userId))) {
        throw forbidden('you are not a member of that organization');
      }
      if ((await countSdkKeys(trx, userId)) >= SDK_KEYS_PER_USER) throw limitReached();
      const expiresAt = capExpiry(input.expiresAt ?? null, parent.expiresAt);
      const row = await insertSdkKey(trx, {
        clientId,
        userId,
        name: input.name,
        secretHash: secret === null ? null : hashSecret(deps.pepper, secret, SDK_KEY_PURPOSE),
        scopes: input.scopes,
        organizationId: input.organizationId,
        parentApiTokenId: parent.apiTokenId,
        expiresAt,
        audiences: input.audiences ?? null,
        publicJwk: input.publicJwk ?? null,
        dpopBound: input.dpopBound ?? false,
      });
      await recordAudit(trx, actor, {
        action: 'sdk_key.create',
        targetType: 'sdk_key',
        targetId: clientId,
        organizationId: input.organizationId,
        details: {
          name: input.name,
          scopes: input.scopes,
          parent_api_token_id: parent.apiTokenId,
          expires_at: expiresAt?.toISOString() ?? null,
          audiences: input.audiences ?? null,
          token_endpoint_auth_method: row.token_endpoint_auth_method,
          dpop_bound_access_tokens: row.dpop_bound_access_tokens,
        },
      });
      await publishChange(trx, { type: 'sdk_key', id: clientId });
      return { row, secret };
    });
  } catch (err) {
    if ((err as { code?: string }).code === SDK_KEY_LIMIT_SQLSTATE) throw limitReached();
    throw err;
  }
}

/**
 * Renames, enables or disables a key, or sets its audiences (null: any the operator allows). Disabling stamps `tokens_valid_after` (a whole second later
 * than every token issued so far: {@link nextTokensValidAfter}), so every token the key issued so
 * far fails everywhere and keeps failing after a later enable, while tokens issued after that
 * enable are valid at once.
 */
export async function updateSdkKeyFor(
  deps: SdkKeyDeps,
  actor: Actor,
  userId: string,
  clientId: string,
  change: { name?: string; status?: 'enabled' | 'disabled'; audiences?: string[] | null; dpopBound?: boolean },
): Promise<SdkKeyRow> {
  return deps.db.transaction().execute(async (trx) => {
    const key = await findSdkKey(trx, userId, clientId, { forUpdate: true });
    if (!key) throw notFound('SDK key');
    const set: Parameters<typeof updateSdkKey>[2] = {};
    const actions: Array<[string, Record<string, unknown>]> = [];
    if (change.name !== undefined && change.name !== key.name) {
      set.name = change.name;
      actions.push(['sdk_key.rename', { from: key.name, to: change.name }]);
    }
    if (change.status !== undefined && change.status !== key.status) {
      set.status = change.status;
      if (change.status === 'disabled') {
        set.tokens_valid_after = new Date(nextTokensValidAfter(key.tokens_valid_after?.getTime() ?? null, deps.clock.now()));
      }
      actions.push([change.status === 'disabled' ? 'sdk_key.disable' : 'sdk_key.enable', {}]);
    }
    if (change.audiences !== undefined && !sameList(change.audiences, key.audiences)) {
      set.audiences = change.audiences;
      actions.push(['sdk_key.audiences', { from: key.audiences, to: change.audiences }]);
    }
    if (change.dpopBound !== undefined && change.dpopBound !== key.dpop_bound_access_tokens) {
      set.dpop_bound_access_tokens = change.dpopBound;
      actions.push(['sdk_key.dpop_binding', { dpop_bound_access_tokens: change.dpopBound }]);
    }
    if (actions.length === 0) return key;
    const row = await updateSdkKey(trx, key.id, set);
    for (const [action, details] of actions) {
      await recordAudit(trx, actor, { action, targetType: 'sdk_key', targetId: clientId, organizationId: key.organization_id, details });
    }
    await publishChange(trx, { type: 'sdk_key', id: clientId });
    return row;
  });
}

/** Deletes a key: its tokens fail at once (the key no longer exists for the verifier). */
export async function deleteSdkKeyFor(deps: SdkKeyDeps, actor: Actor, userId: string, clientId: string): Promise<void> {
  await deps.db.transaction().execute(async (trx) => {
    const key = await findSdkKey(trx, userId, clientId, { forUpdate: true });
    if (!key) throw notFound('SDK key');
    await deleteSdkKey(trx, key.id);
    await recordKeyChange(trx, actor, { clientId, organizationId: key.organization_id }, 'sdk_key.delete', { name: key.name });
  });
}

function sameList(a: readonly string[] | null, b: readonly string[] | null): boolean {
  if (a === null || b === null) return a === b;
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * Gives a key a new secret and returns it (the only time it exists outside the caller). The
 * secret it replaces keeps authenticating until `overlapSeconds` from now (0: it stops at once);
 * a secret still in an earlier overlap stops at once, so at most two ever work. With
 * `revokeIssuedTokens`, `tokens_valid_after` is stamped as a disable does, so every token the key
 * issued so far fails everywhere; without it they stay valid until they expire. Audited and
 * announced to every instance in the same transaction.
 */
export async function rotateSdkKeySecret(
  deps: SdkKeyDeps,
  actor: Actor,
  userId: string,
  clientId: string,
  options: { overlapSeconds: number; revokeIssuedTokens: boolean },
): Promise<{ row: SdkKeyRow; secret: string }> {
  const secret = randomSecret();
  return deps.db.transaction().execute(async (trx) => {
    const key = await findSdkKey(trx, userId, clientId, { forUpdate: true });
    if (!key) throw notFound('SDK key');
    // A private_key_jwt key has no shared secret: its owner registers a new key pair instead.
    if (key.token_endpoint_auth_method === 'private_key_jwt') throw conflict('this SDK key authenticates with private_key_jwt and has no secret to rotate');
    const now = deps.clock.now();
    const overlapEnds = options.overlapSeconds > 0 ? new Date(now + options.overlapSeconds * 1000) : null;
    const set: Parameters<typeof updateSdkKey>[2] = {
      secret_hash: hashSecret(deps.pepper, secret, SDK_KEY_PURPOSE),
      previous_secret_hash: overlapEnds ? key.secret_hash : null,
      previous_secret_expires_at: overlapEnds,
    };
    if (options.revokeIssuedTokens) {
      set.tokens_valid_after = new Date(nextTokensValidAfter(key.tokens_valid_after?.getTime() ?? null, now));
    }
    const row = await updateSdkKey(trx, key.id, set);
    await recordKeyChange(trx, actor, { clientId, organizationId: key.organization_id }, 'sdk_key.rotate_secret', {
      previous_secret_expires_at: overlapEnds?.toISOString() ?? null,
      revoke_issued_tokens: options.revokeIssuedTokens,
    });
    return { row, secret };
  });
}
