import type { Clock } from '../platform/clock.js';
import type { SdkKeyAuthRow } from './sdk-keys.repository.js';
import type { PublicJwk } from './oauth.table.js';

/** What the token endpoint and the verifier know of an SDK key, held in memory. */
export interface ClientEntry {
  id: string;
  clientId: string;
  userId: string;
  /** Null for private_key_jwt keys: no secret authenticates them. */
  secretHash: Buffer | null;
  /** The registered public key of a private_key_jwt key (null for secret keys). */
  publicJwk: PublicJwk | null;
  /** RFC 9449 §5.2: tokens only with a DPoP proof. */
  dpopBound: boolean;
  scopes: readonly string[];
  status: 'enabled' | 'disabled';
  userStatus: 'active' | 'suspended';
  /** Epoch ms; tokens issued before it are rejected (0 when never set). */
  tokensValidAfterMs: number;
  /** Epoch ms from which the key no longer exists for anyone (null: it does not expire). */
  expiresAtMs: number | null;
  organizationId: string | null;
  /** False when the key is bound to an organization its owner has left: no token, none verified. */
  organizationBindingValid: boolean;
  /** Audiences its tokens may name besides the issuer (null or absent: any the operator allows). */
  audiences?: readonly string[] | null;
  /** The secret's hash before the last rotation, accepted until `previousSecretExpiresAtMs` (null: none). */
  previousSecretHash?: Buffer | null;
  previousSecretExpiresAtMs?: number | null;
}

export interface ClientCacheOptions {
  /** Safety net behind change events: entries are re-read after 90-100% of this long (ms). */
  ttlMs?: number;
  /**
   * Most entries held (unknown ids included, so guessing cannot grow it without bound); past it the
   * least recently used entry is dropped. About 1 KB of resident memory each.
   */
  maxEntries?: number;
  /** Most client_ids one look-up statement asks for. */
  maxBatch?: number;
}

/** How the cache reads Postgres: the keys with these client_ids, and the most recently used keys. */
export interface ClientLoader {
  byClientIds(clientIds: readonly string[]): Promise<SdkKeyAuthRow[]>;
  recent(limit: number): Promise<SdkKeyAuthRow[]>;
}

interface Slot {
  value: ClientEntry | null;
  expiresAt: number;
}

interface Waiter {
  resolve(row: SdkKeyAuthRow | undefined): void;
  reject(err: unknown): void;
}

/**
 * In-memory SDK-key cache: a cached client is authenticated and its tokens verified without
 * touching Postgres. Unknown ids are cached too (as null), so guessing does not reach the
 * database twice. Entries are dropped by change events (`sdk_key` for a key, `user` and
 * `membership` for an owner: the organization a key acts in and whether its binding still holds
 * are read with the entry), and everything on a listener reset; a generation counter keeps a load that raced an
 * invalidation from caching what it read before it.
 *
 * Misses are batched: the ids missed while the event loop handles one round of I/O are read with
 * one statement, so a burst of first requests (new clients, a restarted instance) costs a few
 * round trips, not one each. `warm()` fills the cache with the most recently used keys, in one
 * statement, at start and after a reset.
 */
export class ClientCache {
  private slots = new Map<string, Slot>();
  private inflight = new Map<string, Promise<ClientEntry | null>>();
  private queued = new Map<string, Waiter[]>();
  private generation = 0;
  private readonly ttlMs: number;
  private readonly maxEntries: number;
  private readonly maxBatch: number;

  constructor(
    private readonly loader: ClientLoader,
    private readonly clock: Clock,
    opts: ClientCacheOptions = {},
  ) {
    this.ttlMs = opts.ttlMs ?? 5 * 60_000;
    this.maxEntries = opts.maxEntries ?? 150_000;
    this.maxBatch = opts.maxBatch ?? 500;
  }

  /**
   * The key with this client_id, or null if there is none. A key past its `expires_at` is none:
   * it authenticates nothing and its tokens verify nowhere. A previous secret past its expiry is
   * dropped from the entry here, by the clock, so no instance accepts it after its overlap
   * whether or not a change event reached it.
   */
  get(clientId: string): Promise<ClientEntry | null> | ClientEntry | null {
    const found = this.lookup(clientId);
    return found instanceof Promise ? found.then((e) => this.unexpired(e)) : this.unexpired(found);
  }

  private unexpired(e: ClientEntry | null): ClientEntry | null {
    if (e === null) return null;
    const now = this.clock.now();
    if (e.expiresAtMs !== null && e.expiresAtMs <= now) return null;
    // Expiry only moves forward in time, so clearing the cached entry in place is final.
    if (e.previousSecretHash && (e.previousSecretExpiresAtMs ?? 0) <= now) {
      e.previousSecretHash = null;
      e.previousSecretExpiresAtMs = null;
    }
    return e;
  }

  private lookup(clientId: string): Promise<ClientEntry | null> | ClientEntry | null {
    const slot = this.slots.get(clientId);
    if (slot && slot.expiresAt > this.clock.now()) {
      // Map order is recency order: a hit moves the entry to the end, eviction takes the front.
      this.slots.delete(clientId);
      this.slots.set(clientId, slot);
      return slot.value;
    }
    let p = this.inflight.get(clientId);
    if (!p) {
      const gen = this.generation;
      p = this.enqueue(clientId)
        .then((row) => {
          const value = row ? toEntry(row) : null;
          if (gen === this.generation) this.put(clientId, value);
          return value;
        })
        .finally(() => this.inflight.delete(clientId));
      this.inflight.set(clientId, p);
    }
    return p;
  }

  /**
   * Loads up to `limit` of the most recently used keys (half the capacity by default) into the
   * cache, keeping entries already there. Nothing is kept if an invalidation raced the read.
   * Returns how many entries were added.
   */
  async warm(limit = Math.floor(this.maxEntries / 2)): Promise<number> {
    const gen = this.generation;
    const rows = await this.loader.recent(Math.min(limit, this.maxEntries));
    if (gen !== this.generation) return 0;
    let added = 0;
    for (const row of rows) {
      if (this.slots.has(row.client_id)) continue;
      this.put(row.client_id, toEntry(row));
      added++;
    }
    return added;
  }

  invalidate(clientId: string): void {
    this.generation++;
    this.slots.delete(clientId);
  }

  invalidateUser(userId: string): void {
    this.generation++;
    for (const [k, s] of this.slots) if (s.value?.userId === userId) this.slots.delete(k);
  }

  clear(): void {
    this.generation++;
    this.slots.clear();
  }

  get size(): number {
    return this.slots.size;
  }

  private put(clientId: string, value: ClientEntry | null): void {
    this.slots.delete(clientId);
    while (this.slots.size >= this.maxEntries) this.slots.delete(this.slots.keys().next().value!);
    // 90-100% of the TTL: entries loaded together (a warm-up) do not all expire in the same instant.
    this.slots.set(clientId, { value, expiresAt: this.clock.now() + this.ttlMs * (0.9 + Math.random() * 0.1) });
  }

  /** Queues a look-up; the queue is read after the current round of I/O callbacks. */
  private enqueue(clientId: string): Promise<SdkKeyAuthRow | undefined> {
    return new Promise((resolve, reject) => {
      if (this.queued.size === 0) setImmediate(() => this.drain());
      const waiters = this.queued.get(clientId);
      if (waiters) waiters.push({ resolve, reject });
      else this.queued.set(clientId, [{ resolve, reject }]);
    });
  }

  private drain(): void {
    const batch = this.queued;
    this.queued = new Map();
    const ids = [...batch.keys()];
    for (let i = 0; i < ids.length; i += this.maxBatch) {
      const chunk = ids.slice(i, i + this.maxBatch);
      this.loader.byClientIds(chunk).then(
        (rows) => {
          const found = new Map(rows.map((r) => [r.client_id, r]));
          for (const id of chunk) for (const w of batch.get(id)!) w.resolve(found.get(id));
        },
        (err) => {
          for (const id of chunk) for (const w of batch.get(id)!) w.reject(err);
        },
      );
    }
  }
}

function toEntry(row: SdkKeyAuthRow): ClientEntry {
  return {
    id: row.id,
    clientId: row.client_id,
    userId: row.user_id,
    secretHash: row.secret_hash,
    publicJwk: row.token_endpoint_auth_method === 'private_key_jwt' ? row.public_jwk : null,
    dpopBound: row.dpop_bound_access_tokens,
    scopes: Object.freeze([...row.scopes]),
    status: row.status,
    userStatus: row.user_status,
    tokensValidAfterMs: row.tokens_valid_after ? row.tokens_valid_after.getTime() : 0,
    expiresAtMs: row.expires_at ? row.expires_at.getTime() : null,
    organizationId: row.organization_id,
    organizationBindingValid: row.organization_binding_valid,
    audiences: row.audiences ? Object.freeze([...row.audiences]) : null,
    previousSecretHash: row.previous_secret_hash,
    previousSecretExpiresAtMs: row.previous_secret_expires_at ? row.previous_secret_expires_at.getTime() : null,
  };
}
