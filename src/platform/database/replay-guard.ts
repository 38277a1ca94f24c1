import { hash as digest } from 'node:crypto';
import { sql } from 'kysely';
import { preparedMarker, type Db } from './database.js';
import { GroupCommit } from './group-commit.js';

/** One use of a single-use JWT (a DPoP proof, a client assertion), kept until the JWT expires. */
export interface UsedJtisTable {
  /** What kind of JWT: 'dpop', 'client_assertion'. */
  namespace: string;
  /** SHA-256 of the JWT's issuer (key thumbprint, client_id) and its jti: the raw jti is never stored. */
  jti_hash: Buffer;
  expires_at: Date;
}

export type ReplayNamespace = 'dpop' | 'client_assertion';

interface Use {
  namespace: ReplayNamespace;
  hash: Buffer;
  expiresAt: Date;
  /** namespace and hash as one string: the identity of the record within a batch and in memory. */
  key: string;
}

/**
 * How replay records are grouped: at most this many per statement and one statement in flight;
 * records arriving meanwhile go together into the next one (see GroupCommit).
 */
const GROUP = { maxBatch: 256, maxInFlight: 1 };

/** Most records an instance remembers locally; past it the ones expired, then the oldest, are forgotten. */
const DEFAULT_LOCAL_LIMIT = 100_000;

/**
 * Writes one batch of records with one statement; per input, whether it was the first use.
 * Inputs with the same key in one batch: the first of them is written, the others are replays.
 */
async function insertUses(db: Db, uses: Use[]): Promise<boolean[]> {
  const firstOf = new Map<string, number>();
  const namespaces: string[] = [];
  const hashes: Buffer[] = [];
  const expiries: Date[] = [];
  uses.forEach((u, i) => {
    if (firstOf.has(u.key)) return;
    firstOf.set(u.key, i);
    namespaces.push(u.namespace);
    hashes.push(u.hash);
    expiries.push(u.expiresAt);
  });
  const r = await sql<{ namespace: string; jti_hash: Buffer }>`${sql.raw(preparedMarker('used_jti_insert_many'))}
    insert into used_jtis (namespace, jti_hash, expires_at)
    select u.namespace, u.jti_hash, u.expires_at
    from unnest(${namespaces}::text[], ${hashes}::bytea[], ${expiries}::timestamptz[]) as u(namespace, jti_hash, expires_at)
    on conflict do nothing
    returning namespace, jti_hash`.execute(db);
  const inserted = new Set(r.rows.map((row) => `${row.namespace}:${row.jti_hash.toString('base64')}`));
  return uses.map((u, i) => firstOf.get(u.key) === i && inserted.has(u.key));
}

/**
 * Single use of JWT identifiers across every instance. Postgres decides: the first insert of a
 * (namespace, issuer, jti) into `used_jtis` wins, and its primary key settles instances that see
 * the same JWT at once. The inserts of concurrent requests of one instance share one statement
 * (group commit: one transaction and one WAL flush for the group), and each request is answered
 * only after that statement committed with `synchronous_commit` on, so an accepted JWT's record
 * survives a crash of Postgres or of the instance. Rows are deleted by {@link pruneUsedJtis} once
 * the JWT would be refused on its time claims anyway.
 *
 * Each instance also remembers the records it has written or found (bounded by their expiry and
 * a size limit), so a replay reaching the same instance is refused without a database round trip;
 * a key it does not remember always goes to the database.
 */
export class ReplayGuard {
  private readonly group: GroupCommit<Use, boolean>;
  /** Keys known to be used, with the time (ms) after which their record may go; insertion order. */
  private readonly seen = new Map<string, number>();

  constructor(
    db: Db,
    private readonly opts: { now?: () => number; localLimit?: number } = {},
  ) {
    this.group = new GroupCommit((uses) => insertUses(db, uses), GROUP);
  }

  /**
   * True the first time this (namespace, issuer, jti) is seen by any instance; false on every
   * later use. `keepUntil`: when the JWT is refused by its time claims anyway. Database errors
   * propagate (a proof is never accepted without its committed record).
   */
  async firstUse(namespace: ReplayNamespace, issuer: string, jti: string, keepUntil: Date): Promise<boolean> {
    const hash = digest('sha256', `${issuer}\0${jti}`, 'buffer');
    const key = `${namespace}:${hash.toString('base64')}`;
    if (this.seen.has(key)) return false;
    const first = await this.group.submit({ namespace, hash, expiresAt: keepUntil, key });
    this.remember(key, keepUntil.getTime());
    return first;
  }

  private remember(key: string, until: number): void {
    this.seen.set(key, until);
    const limit = this.opts.localLimit ?? DEFAULT_LOCAL_LIMIT;
    if (this.seen.size <= limit) return;
    const now = (this.opts.now ?? Date.now)();
    for (const [k, t] of this.seen) if (t < now) this.seen.delete(k);
    // Still full of live records: the oldest tenth goes (the database still refuses their replays).
    const excess = this.seen.size - Math.floor(limit * 0.9);
    if (excess <= 0) return;
    let n = 0;
    for (const k of this.seen.keys()) {
      if (n++ >= excess) break;
      this.seen.delete(k);
    }
  }
}

/** Deletes the records of JWTs expired before `before`; returns how many went. */
export async function pruneUsedJtis(db: Db, before: Date): Promise<number> {
  const r = await db.deleteFrom('used_jtis').where('expires_at', '<', before).executeTakeFirst();
  return Number(r.numDeletedRows);
}
