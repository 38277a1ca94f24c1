import { sql } from 'kysely';
import type { Logger } from 'pino';
import type { Db } from './database.js';

/**
 * A column whose rows get `last_used_at` stamps. Tables, columns and types are ours, never input.
 * `everyMs` is how stale a stored stamp may be: a row is written again only once its last written
 * stamp is that old, so a busy credential costs one row update per `everyMs`, not one per flush.
 */
export interface UsageTarget {
  readonly table: string;
  readonly keyColumn: string;
  /** SQL type of `keyColumn`: the ids are sent as an array of it, so the match uses the column's index. */
  readonly keyType: 'uuid' | 'text';
  readonly everyMs: number;
}

/** How stale a credential's stored `last_used_at` may be unless its target says otherwise. */
export const USAGE_EVERY_MS = 60_000;

/** Most rows one UPDATE stamps: a flush of many ids is several short statements, not one long one. */
export const FLUSH_CHUNK = 1000;

/** Most remembered "written at" times; past it they are forgotten (rows are then stamped more often, never less). */
const MAX_REMEMBERED = 200_000;

interface Pending {
  target: UsageTarget;
  ids: Map<string, number>;
}

/** Most ids a target keeps waiting for a retry; past it the oldest failures are dropped (logged). */
const MAX_RETAINED = 200_000;

/**
 * Batches `last_used_at` stamps so the hot path never writes: `touch()` records in memory, and
 * every few seconds a flush stamps the ids used since, in sorted chunks of at most `FLUSH_CHUNK`
 * rows per UPDATE. An id whose stamp was written less than its target's `everyMs` ago is not
 * stamped again. A chunk that fails (an outage, a refusing trigger) goes back to the pending
 * stamps and is tried again by the next flush (merged with newer uses), so `last_used_at` catches
 * up once writes succeed again; one warning when a target starts failing, one info line when it
 * recovers. A stamp is lost only if the process dies before it is written, or past
 * `MAX_RETAINED` waiting ids: it is a hint for people (and, for sliding sessions, the idle clock
 * other instances read), never a security record.
 */
export class UsageStamps {
  private pending = new Map<UsageTarget, Pending>();
  /** Per target: id -> epoch ms of the stamp last written. */
  private written = new Map<UsageTarget, Map<string, number>>();
  /** Targets whose last flush failed (their failure was logged; recovery will be). */
  private failing = new Set<UsageTarget>();
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;

  constructor(
    private readonly db: Db,
    private readonly log: Pick<Logger, 'warn'> & Partial<Pick<Logger, 'info'>>,
    private readonly intervalMs = 5000,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.flush(), this.intervalMs);
    this.timer.unref();
  }

  /** Marks `id` (a value of the target's key column) as used at `at`. */
  touch(target: UsageTarget, id: string, at: Date): void {
    const ms = at.getTime();
    const last = this.written.get(target)?.get(id);
    if (last !== undefined && ms - last < target.everyMs && ms >= last) return;
    this.queue(target, id, ms);
  }

  private queue(target: UsageTarget, id: string, ms: number): void {
    let p = this.pending.get(target);
    if (!p) this.pending.set(target, (p = { target, ids: new Map() }));
    const prev = p.ids.get(id);
    if (prev === undefined || ms > prev) p.ids.set(id, ms);
  }

  /** Queues failed ids for the next flush, as many as the budget allows (the newest uses first). */
  private retry(target: UsageTarget, keys: string[], ids: Map<string, number>): void {
    const room = MAX_RETAINED - (this.pending.get(target)?.ids.size ?? 0);
    const kept = room >= keys.length ? keys : [...keys].sort((a, b) => ids.get(b)! - ids.get(a)!).slice(0, Math.max(0, room));
    for (const id of kept) this.queue(target, id, ids.get(id)!);
    if (kept.length < keys.length) {
      this.log.warn({ table: target.table, dropped: keys.length - kept.length }, 'too many last-used times waiting for a retry; dropped the oldest');
    }
  }

  /** Writes what is pending now; concurrent calls share one flush. */
  async flush(): Promise<void> {
    if (this.flushing) return this.flushing;
    const batch = this.pending;
    if (batch.size === 0) return;
    this.pending = new Map();
    this.flushing = (async () => {
      for (const { target, ids } of batch.values()) {
        const keys = [...ids.keys()].sort();
        let failed = 0;
        let lastError: unknown = null;
        for (let i = 0; i < keys.length; i += FLUSH_CHUNK) {
          const chunk = keys.slice(i, i + FLUSH_CHUNK);
          try {
            await this.write(target, chunk, ids);
            this.remember(target, chunk, ids);
          } catch (err) {
            failed += chunk.length;
            lastError = err;
            this.retry(target, chunk, ids);
          }
        }
        if (failed > 0 && !this.failing.has(target)) {
          this.failing.add(target);
          this.log.warn(
            { err: { message: (lastError as Error).message }, table: target.table, ids: failed },
            'could not record last-used times; retrying with the next flush',
          );
        } else if (failed === 0 && this.failing.delete(target)) {
          this.log.info?.({ table: target.table }, 'last-used times recorded again');
        }
        this.forgetOld(target);
      }
    })().finally(() => {
      this.flushing = null;
    });
    return this.flushing;
  }

  private async write(target: UsageTarget, keys: string[], ids: Map<string, number>): Promise<void> {
    const times = keys.map((id) => new Date(ids.get(id)!).toISOString());
    await sql`
      update ${sql.table(target.table)} as t set last_used_at = greatest(coalesce(t.last_used_at, u.at), u.at)
      from unnest(${keys}::${sql.raw(target.keyType)}[], ${times}::timestamptz[]) as u(key, at)
      where t.${sql.ref(target.keyColumn)} = u.key`.execute(this.db);
  }

  private remember(target: UsageTarget, keys: string[], ids: Map<string, number>): void {
    let w = this.written.get(target);
    if (!w) this.written.set(target, (w = new Map()));
    for (const id of keys) w.set(id, ids.get(id)!);
  }

  /** Drops remembered stamps that suppress nothing any more (older than everyMs); bounds the memory. */
  private forgetOld(target: UsageTarget): void {
    const w = this.written.get(target);
    if (!w) return;
    let newest = 0;
    for (const ms of w.values()) if (ms > newest) newest = ms;
    for (const [id, ms] of w) if (newest - ms >= target.everyMs) w.delete(id);
    if (w.size > MAX_REMEMBERED) w.clear();
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.flush();
  }
}
