import type { Logger } from 'pino';
import type { Db } from '../platform/database/database.js';
import { eventsAfter, latestCommitted, eventsDb, type StoredEvent } from './events.repository.js';

/** Rows read per query, when catching up or following. */
const PAGE = 500;

/** One connected receiver of this instance (a stream or a waiting long poll). */
export interface Subscriber {
  /** The highest event id this subscriber has been handed (events at or below are skipped). */
  cursor: number;
  /** Takes events above `cursor`, in id order. */
  push(events: readonly StoredEvent[]): void;
}

export interface EventHubHooks {
  /** Called for every event this instance reads from the table, once. */
  onEvent?(e: StoredEvent): void;
}

/**
 * Fans the security events out to the receivers connected to this instance. One reader per
 * instance: a `security_event` notification (or a reconnect of the LISTEN connection, after
 * which notifications may have been missed) makes it read every row above the last id it has
 * seen, in one query for all receivers, and hand the rows to each. Ids are drawn in commit order
 * (see the migration), so reading by id never skips a row that commits later.
 */
export class EventHub {
  private last = 0;
  private readonly subscribers = new Set<Subscriber>();
  private reading: Promise<void> | null = null;
  private again = false;
  private stopped = false;

  constructor(private readonly deps: { db: Db; log: Pick<Logger, 'warn'>; hooks?: EventHubHooks }) {}

  /** The highest id this instance has read. */
  get lastId(): number {
    return this.last;
  }

  get size(): number {
    return this.subscribers.size;
  }

  /** Starts following from the newest committed event. */
  async start(): Promise<void> {
    // The newest committed id: ids commit in order, so nothing below it can still appear.
    this.last = await latestCommitted(eventsDb(this.deps.db));
    this.pull();
  }

  stop(): void {
    this.stopped = true;
  }

  /** Reads every event above the last seen and hands it out; concurrent calls share one read loop. */
  pull(): void {
    if (this.stopped) return;
    if (this.reading) {
      this.again = true;
      return;
    }
    this.reading = this.readAll()
      .catch((err: Error) => this.deps.log.warn({ err: { message: err.message } }, 'could not read security events; will retry on the next notification'))
      .finally(() => {
        this.reading = null;
        if (this.again) {
          this.again = false;
          this.pull();
        }
      });
  }

  /** Resolves when the read under way (if any) is done: tests and long polls wait on it. */
  async settled(): Promise<void> {
    while (this.reading) await this.reading;
  }

  private async readAll(): Promise<void> {
    for (;;) {
      this.again = false;
      const rows = await eventsAfter(eventsDb(this.deps.db), this.last, PAGE);
      if (rows.length > 0) {
        this.last = rows[rows.length - 1]!.id;
        for (const e of rows) this.deps.hooks?.onEvent?.(e);
        for (const s of [...this.subscribers]) {
          const fresh = rows.filter((e) => e.id > s.cursor);
          if (fresh.length > 0) s.push(fresh);
        }
      }
      if (rows.length < PAGE && !this.again) return;
    }
  }

  /**
   * Brings a new subscriber up to date from the table (ids above its cursor), then adds it to the
   * live fan-out, with no gap between the two: the hand-over happens in one tick once the
   * subscriber has caught up with everything this hub has read.
   */
  async subscribe(s: Subscriber, isOpen: () => boolean): Promise<() => void> {
    const db = eventsDb(this.deps.db);
    while (isOpen()) {
      const rows = await eventsAfter(db, s.cursor, PAGE);
      if (rows.length > 0) s.push(rows);
      if (rows.length === 0 || (rows.length < PAGE && s.cursor >= this.last)) break;
    }
    this.subscribers.add(s);
    return () => this.subscribers.delete(s);
  }

  /** Adds a subscriber that only wants what arrives from now on. */
  follow(s: Subscriber): () => void {
    this.subscribers.add(s);
    return () => this.subscribers.delete(s);
  }
}
