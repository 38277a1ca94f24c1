import type { MasterKey } from '../config.js';
import type { Db } from '../db/database.js';
import type { Actor } from '../db/audit.repository.js';

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
