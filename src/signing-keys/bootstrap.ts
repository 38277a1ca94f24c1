import type { Transaction } from 'kysely';
import type { Config } from '../platform/config.js';
import type { Database } from '../platform/database/database.js';
import { recordAudit, type Actor } from '../platform/database/audit.repository.js';
import { findActiveSigningKey, insertSigningKey, listSigningKeys, setSigningKeyState, type SigningKeyRow } from './signing-keys.repository.js';
import { generateSigningKey } from './signing-key.js';

/** What a bootstrap changed: the key it created and/or activated. */
export interface BootstrapEvent {
  event: 'created' | 'activated';
  kid: string;
  kind: 'bootstrap';
}

/**
 * The one signing-key bootstrap: makes sure a key signs, in `trx` (which must hold the
 * signing-keys advisory lock). A waiting `next` key is promoted rather than a new one made; with
 * none, an active key is created. Audited in `trx` (kind `bootstrap`). Returns the active key and
 * what changed (nothing when a key was active already); the caller announces the change.
 */
export async function ensureActiveKeyIn(
  trx: Transaction<Database>,
  input: { config: Config; now: Date; actor: Actor },
): Promise<{ row: SigningKeyRow; events: BootstrapEvent[] }> {
  const { config, now, actor } = input;
  const active = await findActiveSigningKey(trx);
  if (active) return { row: active, events: [] };
  const [next] = await listSigningKeys(trx, ['next']);
  if (next) {
    const row = await setSigningKeyState(trx, next.kid, 'next', { state: 'active', activated_at: now });
    if (!row) throw new Error(`signing key ${next.kid} is no longer next`);
    await recordAudit(trx, actor, {
      action: 'signing_key.activate',
      targetType: 'signing_key',
      targetId: next.kid,
      details: { kind: 'bootstrap', alg: next.alg, retired_kid: null, published_at: next.created_at.toISOString() },
    });
    return { row, events: [{ event: 'activated', kid: row.kid, kind: 'bootstrap' }] };
  }
  const key = await generateSigningKey(config.signingAlg, config.masterKey);
  const row = await insertSigningKey(trx, { ...key, state: 'active', activateAfter: now, activatedAt: now });
  await recordAudit(trx, actor, {
    action: 'signing_key.create',
    targetType: 'signing_key',
    targetId: row.kid,
    details: { alg: row.alg, state: 'active', kind: 'bootstrap' },
  });
  return {
    row,
    events: [
      { event: 'created', kid: row.kid, kind: 'bootstrap' },
      { event: 'activated', kid: row.kid, kind: 'bootstrap' },
    ],
  };
}
