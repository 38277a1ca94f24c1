/** What an instance remembers of a verified session. */
export interface CachedSession {
  sessionId: string;
  userId: string;
  apiTokenId: string;
  scopes: readonly string[];
  /** Epoch ms at which it stops working (moved on use when sessions slide). */
  expiresAt: number;
  /** Epoch ms of the API token's own expiry, if any (a session never outlives its token). */
  apiTokenExpiresAt: number | null;
}

type Invalidation = { gen: number; kind: 'session' | 'api_token' | 'user' | 'all'; id: string };

/**
 * Verified sessions by token hash. Entries are dropped by change events (logout, token
 * revocation, suspension) from any instance; `set` refuses an entry read from the database
 * before an invalidation that concerns it was seen (the fill race), so a stale row never lands
 * in the cache after its invalidation passed by.
 */
export class SessionCache {
  private readonly byHash = new Map<string, CachedSession>();
  private readonly hashById = new Map<string, string>();
  private gen = 0;
  private log: Invalidation[] = [];
  /** Invalidations older than this generation were forgotten: fills that started before are refused. */
  private floor = 0;

  constructor(
    private readonly maxEntries = 100_000,
    private readonly maxLog = 10_000,
  ) {}

  get size(): number {
    return this.byHash.size;
  }

  /** Take this before reading from the database; hand it to `set`. */
  generation(): number {
    return this.gen;
  }

  get(key: string): CachedSession | undefined {
    return this.byHash.get(key);
  }

  /** Caches `entry` unless an invalidation since generation `since` may concern it. True when cached. */
  set(key: string, entry: CachedSession, since: number): boolean {
    if (since < this.floor) return false;
    for (let i = this.log.length - 1; i >= 0; i--) {
      const inv = this.log[i]!;
      if (inv.gen <= since) break;
      if (
        inv.kind === 'all' ||
        (inv.kind === 'session' && inv.id === entry.sessionId) ||
        (inv.kind === 'api_token' && inv.id === entry.apiTokenId) ||
        (inv.kind === 'user' && inv.id === entry.userId)
      ) {
        return false;
      }
    }
    if (this.byHash.size >= this.maxEntries && !this.byHash.has(key)) {
      // Evict the oldest entry (Map keeps insertion order).
      const oldest = this.byHash.keys().next().value as string;
      this.delete(oldest);
    }
    this.byHash.set(key, entry);
    this.hashById.set(entry.sessionId, key);
    return true;
  }

  delete(key: string): void {
    const e = this.byHash.get(key);
    if (!e) return;
    this.byHash.delete(key);
    this.hashById.delete(e.sessionId);
  }

  /** Drops what a change concerns, and remembers the change for fills in flight. */
  invalidate(kind: 'session' | 'api_token' | 'user', id: string): void {
    this.remember(kind, id);
    if (kind === 'session') {
      const key = this.hashById.get(id);
      if (key) this.delete(key);
      return;
    }
    for (const [key, e] of this.byHash) {
      if ((kind === 'api_token' && e.apiTokenId === id) || (kind === 'user' && e.userId === id)) this.delete(key);
    }
  }

  /** Drops everything (the change listener reconnected: changes may have been missed). */
  clear(): void {
    this.remember('all', '');
    this.byHash.clear();
    this.hashById.clear();
  }

  private remember(kind: Invalidation['kind'], id: string): void {
    this.gen++;
    this.log.push({ gen: this.gen, kind, id });
    if (this.log.length > this.maxLog * 2) {
      const dropped = this.log.length - this.maxLog;
      this.floor = this.log[dropped - 1]!.gen;
      this.log = this.log.slice(dropped);
    }
  }
}
