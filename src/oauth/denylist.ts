/**
 * Revoked jtis held in memory (the `revoked_tokens` table is the source of truth). Revocations
 * are never undone, so the set only grows by events and by reloads (a union), and shrinks by
 * pruning entries whose tokens have expired anyway.
 */
export class RevokedTokenSet {
  private readonly expiries = new Map<string, number>();

  has(jti: string): boolean {
    return this.expiries.has(jti);
  }

  add(jti: string, expiresAtMs: number): void {
    const prev = this.expiries.get(jti);
    if (prev === undefined || prev < expiresAtMs) this.expiries.set(jti, expiresAtMs);
  }

  /** Forgets entries expired before `nowMs` (their tokens fail on `exp` anyway). */
  prune(nowMs: number): void {
    for (const [jti, exp] of this.expiries) if (exp <= nowMs) this.expiries.delete(jti);
  }

  get size(): number {
    return this.expiries.size;
  }
}
