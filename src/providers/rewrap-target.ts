import { DecryptError, seal } from '../crypto/aead.js';
import type { RewrapTarget } from '../crypto/rewrap.js';
import { recordAudit } from '../db/audit.repository.js';
import { countByKey, lockRowsToRewrap, replaceCiphertext } from '../db/provider-tokens.repository.js';
import { openCredentialBytes, ownerOfRow, providerTokenAad } from './provider-tokens.service.js';

/** Provider credentials: opened with whichever key sealed them, sealed again under the current key (same AAD). */
export const providerTokensRewrapTarget: RewrapTarget = {
  name: 'provider_tokens',
  census: (db) => countByKey(db),
  async rewrap(db, opts) {
    let rewrapped = 0;
    const failed: Array<{ id: string; keyId: string; reason: string }> = [];
    let after: string | null = null;
    for (;;) {
      const batch = await db.transaction().execute(async (trx) => {
        const rows = await lockRowsToRewrap(trx, opts.current.id, after, opts.batchSize);
        let done = 0;
        const fromKeys = new Set<string>();
        for (const row of rows) {
          let plain: Buffer;
          try {
            plain = openCredentialBytes(opts.keys, row);
          } catch (err) {
            if (!(err instanceof DecryptError)) throw err;
            failed.push({ id: row.id, keyId: row.key_id, reason: err.message });
            continue;
          }
          const sealed = seal(opts.current, plain, providerTokenAad(ownerOfRow(row), row.provider));
          plain.fill(0);
          if (await replaceCiphertext(trx, row.id, row.key_id, sealed.ciphertext, sealed.keyId)) {
            done++;
            fromKeys.add(row.key_id);
          }
        }
        if (done > 0) {
          await recordAudit(trx, opts.actor, {
            action: 'provider_token.rewrap',
            targetType: 'provider_token',
            details: { count: done, from_key_ids: [...fromKeys].sort(), to_key_id: opts.current.id },
          });
        }
        rewrapped += done;
        return rows;
      });
      if (batch.length < opts.batchSize) break;
      after = batch[batch.length - 1]!.id;
    }
    const census = await countByKey(db);
    const remaining = Object.entries(census)
      .filter(([k]) => k !== opts.current.id)
      .reduce((n, [, c]) => n + c, 0);
    return { target: this.name, rewrapped, failed, remaining };
  },
};
