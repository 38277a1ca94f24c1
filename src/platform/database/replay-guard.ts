import { createHash } from 'node:crypto';
import { sql } from 'kysely';
import { preparedMarker, type Db } from './database.js';

/** One use of a single-use JWT (a DPoP proof, a client assertion), kept until the JWT expires. */
export interface UsedJtisTable {
  /** What kind of JWT: 'dpop', 'client_assertion'. */
  namespace: string;
  /** SHA-256 of the JWT's issuer (key thumbprint, client_id) and its jti: the raw jti is never stored. */
  jti_hash: Buffer;
  expires_at: Date;
}

export type ReplayNamespace = 'dpop' | 'client_assertion';

/**
 * Single use of JWT identifiers across every instance: the first `INSERT ... ON CONFLICT DO NOTHING`
 * of a (namespace, issuer, jti) wins, and Postgres' primary key decides between instances that see
 * the same JWT at once. One insert per JWT is the whole cost; rows are deleted by {@link pruneUsedJtis}
 * once the JWT would be refused on its time claims anyway.
 */
export class ReplayGuard {
  constructor(private readonly db: Db) {}

  /**
   * True the first time this (namespace, issuer, jti) is seen by any instance; false on every
   * later use. `keepUntil`: when the JWT is refused by its time claims anyway. Database errors
   * propagate (a proof is never accepted without its record).
   */
  async firstUse(namespace: ReplayNamespace, issuer: string, jti: string, keepUntil: Date): Promise<boolean> {
    const hash = createHash('sha256').update(issuer).update('\0').update(jti).digest();
    const r = await sql<{ one: number }>`${sql.raw(preparedMarker('used_jti_insert'))}
      insert into used_jtis (namespace, jti_hash, expires_at) values (${namespace}, ${hash}, ${keepUntil})
      on conflict do nothing returning 1 as one`.execute(this.db);
    return r.rows.length === 1;
  }
}

/** Deletes the records of JWTs expired before `before`; returns how many went. */
export async function pruneUsedJtis(db: Db, before: Date): Promise<number> {
  const r = await db.deleteFrom('used_jtis').where('expires_at', '<', before).executeTakeFirst();
  return Number(r.numDeletedRows);
}
