import type { Clock } from '../clock.js';
import type { SdkKeyAuthRow } from '../db/sdk-keys.repository.js';

/** What the token endpoint and the verifier know of an SDK key, held in memory. */
export interface ClientEntry {
  id: string;
  clientId: string;
  userId: string;
  secretHash: Buffer;
  scopes: readonly string[];
  status: 'enabled' | 'disabled';
  userStatus: 'active' | 'suspended';
  /** Epoch ms; tokens issued before it are rejected (0 when never set). */
  tokensValidAfterMs: number;
  organizationId: string | null;
}

export interface ClientCacheOptions {
  /** Safety net behind change events: entries are re-read after this long (ms). */
  ttlMs?: number;
  /** Most entries held; past it the cache starts over (unknown ids cannot grow it without bound). */
  maxEntries?: number;
}

interface Slot {
  value: ClientEntry | null;
  expiresAt: number;
}

/**
 * In-memory SDK-key cache: a cached client is authenticated and its tokens verified without
 * touching Postgres. Unknown ids are cached too (as null), so guessing does not reach the
 * database twice. Entries are dropped by change events (`sdk_key` for a key, `user` for an owner),
 * and everything on a listener reset; a generation counter keeps a load that raced an
 * invalidation from caching what it read before it.
 */
export class ClientCache {
  private slots = new Map<string, Slot>();
  private inflight = new Map<string, Promise<ClientEntry | null>>();
  private generation = 0;
  private readonly ttlMs: number;
  private readonly maxEntries: number;

  constructor(
    private readonly load: (clientId: string) => Promise<SdkKeyAuthRow | undefined>,
    private readonly clock: Clock,
    opts: ClientCacheOptions = {},
  ) {
    this.ttlMs = opts.ttlMs ?? 5 * 60_000;
    this.maxEntries = opts.maxEntries ?? 100_000;
  }

  /** The key with this client_id, or null if there is none. */
  get(clientId: string): Promise<ClientEntry | null> | ClientEntry | null {
    const slot = this.slots.get(clientId);
    if (slot && slot.expiresAt > this.clock.now()) return slot.value;
    let p = this.inflight.get(clientId);
    if (!p) {
      const gen = this.generation;
      p = this.load(clientId)
        .then((row) => {
          const value = row ? toEntry(row) : null;
          if (gen === this.generation) {
            if (this.slots.size >= this.maxEntries) this.slots.clear();
            this.slots.set(clientId, { value, expiresAt: this.clock.now() + this.ttlMs });
          }
          return value;
        })
        .finally(() => this.inflight.delete(clientId));
      this.inflight.set(clientId, p);
    }
    return p;
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
}

function toEntry(row: SdkKeyAuthRow): ClientEntry {
  return {
    id: row.id,
    clientId: row.client_id,
    userId: row.user_id,
    secretHash: row.secret_hash,
    scopes: Object.freeze([...row.scopes]),
    status: row.status,
    userStatus: row.user_status,
    tokensValidAfterMs: row.tokens_valid_after ? row.tokens_valid_after.getTime() : 0,
    organizationId: row.organization_id,
  };
}
