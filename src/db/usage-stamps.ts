import { sql } from 'kysely';
import type { Logger } from 'pino';
import type { Db } from './database.js';

/**
 * Batches `last_used_at` stamps so the hot path never writes: `touch()` records in memory, and
 * every few seconds one UPDATE per table stamps all ids used since. A stamp may be lost if the
 * process dies before a flush; it is a hint for people, not a security record.
 */
export class UsageStamps {
  private pending = new Map<string, Map<string, Date>>();
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;

  constructor(
    private readonly db: Db,
    private readonly log: Pick<Logger, 'warn'>,
    private readonly intervalMs = 5000,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.flush(), this.intervalMs);
    this.timer.unref();
  }

  /** Marks `id` (a value of `keyColumn` in `table`) as used at `at`. Tables and columns are ours, never input. */
  touch(table: string, keyColumn: string, id: string, at: Date): void {
    const k = `${table}\0${keyColumn}`;
    let m = this.pending.get(k);
    if (!m) this.pending.set(k, (m = new Map()));
    m.set(id, at);
  }

  async flush(): Promise<void> {
    if (this.flushing) return this.flushing;
    const batch = this.pending;
    if (batch.size === 0) return;
    this.pending = new Map();
    this.flushing = (async () => {
      for (const [k, ids] of batch) {
        const [table, col] = k.split('\0') as [string, string];
        const keys = [...ids.keys()];
        const times = keys.map((id) => ids.get(id)!.toISOString());
        try {
          await sql`
            update ${sql.table(table)} as t set last_used_at = greatest(coalesce(t.last_used_at, u.at), u.at)
            from unnest(${keys}::text[], ${times}::timestamptz[]) as u(key, at)
            where t.${sql.ref(col)}::text = u.key`.execute(this.db);
        } catch (err) {
          this.log.warn({ err: { message: (err as Error).message }, table }, 'could not record last-used times');
        }
      }
    })().finally(() => {
      this.flushing = null;
    });
    return this.flushing;
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.flush();
  }
}
