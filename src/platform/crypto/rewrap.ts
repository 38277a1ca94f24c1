import type { MasterKey } from '../config.js';
import type { Transaction } from 'kysely';
import type { Database, Db } from '../database/database.js';
import { recordAudit, type Actor } from '../database/audit.repository.js';

/** What a rewrap target reports. Ids only: never a secret. */
export interface RewrapResult {
  target: string;
  /** Rows re-sealed under the current key by this run. */
  rewrapped: number;
  /** Rows that could not be opened (unknown key, or moved/altered data), by id. Left as they were. */
  failed: Array<{ id: string; keyId: string; reason: string }>;
  /** Rows still not under the current key after the run (failed ones included). */
  remaining: number;
}

export interface RewrapOptions {
  current: MasterKey;
  /** Every key that may open existing rows (current + previous). */
  keys: readonly MasterKey[];
  batchSize: number;
  actor: Actor;
}

/**
 * One kind of data sealed under the master key. `tessera keys rewrap` runs every target in
 * turn; a feature that stores sealed data adds its target to REWRAP_TARGETS (src/cli/rewrap.ts).
 * A target re-seals, in batches of short transactions, every row not under `current`; it is
 * idempotent (a second run finds nothing to do) and safe beside running servers.
 */
export interface RewrapTarget {
  name: string;
  /** Rows per master key id (for --dry-run and the report). */
  census(db: Db): Promise<Record<string, number>>;
  rewrap(db: Db, opts: RewrapOptions): Promise<RewrapResult>;
}

/** A table of rows sealed under the master key, as the generic rewrap loop sees it. */
export interface SealedRows<R> {
  name: string;
  /** Audit action and target type recorded per batch. */
  auditAction: string;
  targetType: string;
  id(row: R): string;
  keyId(row: R): string;
  /** Rows per master key id. */
  census(db: Db): Promise<Record<string, number>>;
  /** Locks (FOR UPDATE) up to `limit` rows not under `currentKeyId`, ordered by id, after `afterId`. */
  lockBatch(trx: Transaction<Database>, currentKeyId: string, afterId: string | null, limit: number): Promise<R[]>;
  /** The plaintext of a row (throws DecryptError when it cannot be opened). */
  open(keys: readonly MasterKey[], row: R): Buffer;
  /** Seals the plaintext for this row's place under `key`. */
  seal(key: MasterKey, row: R, plaintext: Buffer): { ciphertext: Buffer; keyId: string };
  /** Stores the new ciphertext if the row is still under `fromKeyId`; true when it did. */
  replace(trx: Transaction<Database>, row: R, ciphertext: Buffer, keyId: string): Promise<boolean>;
}

/**
 * The rewrap loop every sealed table shares: short transactions of locked rows, each opened with
 * whichever key sealed it and sealed again under the current key, one audit row per batch; rows
 * that cannot be opened are reported and left as they are.
 */
export function sealedRowsTarget<R>(rows: SealedRows<R>, isDecryptError: (err: unknown) => boolean): RewrapTarget {
  return {
    name: rows.name,
    census: (db) => rows.census(db),
    async rewrap(db, opts) {
      let rewrapped = 0;
      const failed: RewrapResult['failed'] = [];
      let after: string | null = null;
      for (;;) {
        const batch: R[] = await db.transaction().execute(async (trx) => {
          const locked = await rows.lockBatch(trx, opts.current.id, after, opts.batchSize);
          let done = 0;
          const fromKeys = new Set<string>();
          for (const row of locked) {
            let plain: Buffer;
            try {
              plain = rows.open(opts.keys, row);
            } catch (err) {
              if (!isDecryptError(err)) throw err;
              failed.push({ id: rows.id(row), keyId: rows.keyId(row), reason: (err as Error).message });
              continue;
            }
            const sealed = rows.seal(opts.current, row, plain);
            plain.fill(0);
            if (await rows.replace(trx, row, sealed.ciphertext, sealed.keyId)) {
              done++;
              fromKeys.add(rows.keyId(row));
            }
          }
          if (done > 0) {
            await recordAudit(trx, opts.actor, {
              action: rows.auditAction,
              targetType: rows.targetType,
              details: { count: done, from_key_ids: [...fromKeys].sort(), to_key_id: opts.current.id },
            });
          }
          rewrapped += done;
          return locked;
        });
        if (batch.length < opts.batchSize) break;
        after = rows.id(batch[batch.length - 1]!);
      }
      const census = await rows.census(db);
      const remaining = Object.entries(census)
        .filter(([k]) => k !== opts.current.id)
        .reduce((n, [, c]) => n + c, 0);
      return { target: rows.name, rewrapped, failed, remaining };
    },
  };
}
