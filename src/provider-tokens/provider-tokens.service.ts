import type { Logger } from 'pino';
import type { Clock } from '../platform/clock.js';
import type { Config, MasterKey } from '../platform/config.js';
import { DecryptError, open, seal } from '../platform/crypto/aead.js';
import type { Db } from '../platform/database/database.js';
import { recordAudit, type Actor } from '../platform/database/audit.repository.js';
import { publishChange } from '../platform/database/notifications.js';
import { findMembership, organizationsOfUser } from '../identity/organizations.repository.js';
import { deleteProviderToken, findProviderToken, upsertProviderToken, type ProviderTokenOwner, type ProviderTokenRow } from './provider-tokens.repository.js';
import { USAGE_EVERY_MS, type UsageStamps, type UsageTarget } from '../platform/database/usage-stamps.js';
import { ApiError, badRequest, conflict, notFound } from '../platform/errors/api-error.js';
import type { ProviderRegistry } from './registry.js';

const PROVIDER_TOKEN_USAGE: UsageTarget = { table: 'provider_tokens', keyColumn: 'id', keyType: 'uuid', everyMs: USAGE_EVERY_MS };

export interface ProviderTokenDeps {
  db: Db;
  config: Config;
  registry: ProviderRegistry;
  clock: Clock;
  usage: UsageStamps;
  log: Pick<Logger, 'error'>;
}

/**
 * Associated data of a sealed credential: a row moved to another owner or provider (or another
 * owner kind with the same id) fails authentication when opened.
 */
export function providerTokenAad(owner: ProviderTokenOwner, provider: string): string {
  return `tessera:provider_token:v1\u0000${owner.type}\u0000${owner.id}\u0000${provider}`;
}

export function ownerOfRow(row: ProviderTokenRow): ProviderTokenOwner {
  return row.owner_type === 'user' ? { type: 'user', id: row.user_id! } : { type: 'organization', id: row.organization_id! };
}

/** Every master key that may have sealed a row: the current one first. */
export function allMasterKeys(config: Config): MasterKey[] {
  return [config.masterKey, ...config.previousMasterKeys];
}

/** The sealed bytes of a row, opened; DecryptError when the key is missing or the row was moved or altered. */
export function openCredentialBytes(keys: readonly MasterKey[], row: ProviderTokenRow): Buffer {
  return open(keys, { ciphertext: row.ciphertext, keyId: row.key_id }, providerTokenAad(ownerOfRow(row), row.provider));
}

/** Opens a row's credential (see {@link openCredentialBytes}). */
export function openCredential(keys: readonly MasterKey[], row: ProviderTokenRow): Record<string, unknown> {
  return JSON.parse(openCredentialBytes(keys, row).toString('utf8')) as Record<string, unknown>;
}

/** 404 for a provider that is not configured (the list is public: it is in the message). */
export function requireProvider(registry: ProviderRegistry, provider: string): void {
  if (!registry.get(provider)) {
    throw new ApiError(404, 'not_found', `provider ${provider} is not configured (configured: ${registry.names.join(', ')})`);
  }
}

/** Metadata a listing may show: nothing secret. */
export function metadata(row: ProviderTokenRow) {
  return {
    provider: row.provider,
    label: row.label,
    hint: row.hint,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
    last_used_at: row.last_used_at ? row.last_used_at.toISOString() : null,
    updated_by: row.updated_by,
  };
}

const auditOwner = (owner: ProviderTokenOwner) => ({
  organizationId: owner.type === 'organization' ? owner.id : null,
  details: { owner_type: owner.type, owner_id: owner.id },
});

/** Creates or replaces a credential: validated against the provider's schema, sealed, audited. */
export async function putProviderToken(
  deps: ProviderTokenDeps,
  owner: ProviderTokenOwner,
  provider: string,
  input: { label?: string | null; credential: unknown },
  actor: Actor,
): Promise<{ row: ProviderTokenRow; created: boolean }> {
  requireProvider(deps.registry, provider);
  const problems = deps.registry.validate(provider, input.credential);
  if (problems.length) {
    const list = problems.map((p) => `credential${p.field} ${p.message}`);
    throw badRequest(`invalid ${provider} credential: ${list.join('; ')}`, {
      problems: problems.map((p) => ({ field: `credential${p.field}`, message: p.message })),
    });
  }
  const credential = input.credential as Record<string, unknown>;
  const label = input.label?.trim() || null;
  const sealed = seal(deps.config.masterKey, JSON.stringify(credential), providerTokenAad(owner, provider));
  const now = new Date(deps.clock.now());
  return deps.db.transaction().execute(async (trx) => {
    const row = await upsertProviderToken(trx, owner, {
      provider,
      label,
      ciphertext: sealed.ciphertext,
      keyId: sealed.keyId,
      hint: deps.registry.hint(provider, credential),
      actorUserId: actor.userId,
      now,
    });
    const a = auditOwner(owner);
    await recordAudit(trx, actor, {
      action: row.created ? 'provider_token.create' : 'provider_token.replace',
      targetType: 'provider_token',
      targetId: row.id,
      organizationId: a.organizationId,
      // Field names only: which parts the credential has, never their values.
      details: { ...a.details, provider, label, fields: Object.keys(credential).sort() },
    });
    await publishChange(trx, { type: 'provider_token', id: row.id });
    return { row, created: row.created };
  });
}

export async function removeProviderToken(deps: ProviderTokenDeps, owner: ProviderTokenOwner, provider: string, actor: Actor): Promise<void> {
  requireProvider(deps.registry, provider);
  await deps.db.transaction().execute(async (trx) => {
    const row = await deleteProviderToken(trx, owner, provider);
    if (!row) throw notFound(`${provider} credential`);
    const a = auditOwner(owner);
    await recordAudit(trx, actor, {
      action: 'provider_token.delete',
      targetType: 'provider_token',
      targetId: row.id,
      organizationId: a.organizationId,
      details: { ...a.details, provider },
    });
    await publishChange(trx, { type: 'provider_token', id: row.id });
  });
}

export interface Resolved {
  provider: string;
  source: 'user' | 'organization';
  organization_id: string | null;
  label: string | null;
  updated_at: string;
  credential: Record<string, unknown>;
}

/**
 * Run-time resolution: the user's own credential, else their organization's (named by
 * `organizationId`, by the credential's own organization, or the user's only organization).
 * 404 when there is none, 409 with the candidate ids when the organization is ambiguous.
 * Every successful resolution is audited; last_used_at is stamped (batched, see UsageStamps).
 */
export async function resolveProviderToken(
  deps: ProviderTokenDeps,
  user: { userId: string; organizationId: string | null },
  provider: string,
  organizationId: string | undefined,
  actor: Actor,
): Promise<Resolved> {
  requireProvider(deps.registry, provider);
  if (organizationId !== undefined && !(await findMembership(deps.db, organizationId, user.userId))) {
    throw notFound('organization');
  }
  let row = await findProviderToken(deps.db, { type: 'user', id: user.userId }, provider);
  if (!row) {
    let orgId = organizationId ?? user.organizationId ?? null;
    if (orgId === null) {
      const orgs = await organizationsOfUser(deps.db, user.userId);
      if (orgs.length > 1) {
        throw conflict('you belong to several organizations: name one with ?organization_id=', {
          organization_ids: orgs.map((o) => o.id),
        });
      }
      orgId = orgs[0]?.id ?? null;
    } else if (organizationId === undefined && !(await findMembership(deps.db, orgId, user.userId))) {
      // The credential's organization no longer has this user.
      throw notFound('organization');
    }
    if (orgId !== null) row = await findProviderToken(deps.db, { type: 'organization', id: orgId }, provider);
    if (!row) {
      throw notFound(orgId ? `${provider} credential of yours or of organization ${orgId}` : `${provider} credential of yours`);
    }
  }
  const owner = ownerOfRow(row);
  const a = auditOwner(owner);
  let credential: Record<string, unknown>;
  try {
    credential = openCredential(allMasterKeys(deps.config), row);
  } catch (err) {
    if (!(err instanceof DecryptError)) throw err;
    deps.log.error({ provider_token_id: row.id, key_id: row.key_id, reason: err.message }, 'stored provider credential cannot be decrypted');
    await recordAudit(deps.db, actor, {
      action: 'provider_token.decrypt_failed',
      targetType: 'provider_token',
      targetId: row.id,
      organizationId: a.organizationId,
      details: { ...a.details, provider, key_id: row.key_id },
    });
    throw new ApiError(
      500,
      'internal_error',
      `the stored ${provider} credential cannot be decrypted; an operator has been alerted (storing it again replaces it)`,
    );
  }
  const now = new Date(deps.clock.now());
  await recordAudit(deps.db, actor, {
    action: 'provider_token.resolve',
    targetType: 'provider_token',
    targetId: row.id,
    organizationId: a.organizationId,
    details: { ...a.details, provider, source: owner.type },
  });
  deps.usage.touch(PROVIDER_TOKEN_USAGE, row.id, now);
  return {
    provider,
    source: owner.type,
    organization_id: owner.type === 'organization' ? owner.id : null,
    label: row.label,
    updated_at: row.updated_at.toISOString(),
    credential,
  };
}
