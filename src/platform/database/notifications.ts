import { EventEmitter } from 'node:events';
import { sql, type Kysely, type RawBuilder } from 'kysely';
import pg from 'pg';
import type { Logger } from 'pino';

/** Postgres channel every Tessera instance listens on. */
export const CHANNEL = 'tessera_events';

/**
 * Every change other instances must learn of, by type: what each event carries besides its
 * `type`. `id` names what changed; nothing here ever carries a secret. Publishers and listeners
 * both name events from this one list, so a misspelt or unknown type does not compile.
 */
export interface ChangeEvents {
  /** An API token was revoked (its sessions and cached verifications go with it). */
  api_token: { id: string };
  /** An invitation was created, answered or cancelled (`user_id`: the invited user). */
  invitation: { id: string; user_id: string };
  /** A membership was set or ended (`id`: the organization). */
  membership: { id: string; user_id: string };
  /** A provider token was stored or deleted. */
  provider_token: { id: string };
  /** An access token's jti joined the denylist (`exp`: its expiry, seconds since the epoch). */
  revoked_token: { id: string; exp: number };
  /** A session ended. */
  session: { id: string };
  /** An SDK key changed (`id`: its client_id). */
  sdk_key: { id: string };
  /** The signing keys changed (`id`: the key a lifecycle step changed first). */
  signing_keys: { id: string; state?: string; step?: string };
  /** A user's status changed. */
  user: { id: string };
  /**
   * Rows were added to security_events, sent by the capturing trigger: one per transaction
   * however many rows it added (the same payload each time, which Postgres folds into one).
   */
  security_event: Record<never, never>;
}

/** The union of change-event types. */
export type ChangeEventType = keyof ChangeEvents;

/** One change event: `type` and what that type carries (a union over every type by default). */
export type ChangeEvent<T extends ChangeEventType = ChangeEventType> = { [K in T]: { type: K } & ChangeEvents[K] }[T];

/**
 * Announces a change to every instance. Call it inside the transaction that makes the change:
 * Postgres delivers the notification only if and when that transaction commits.
 */
// Any database or transaction will do: the statement is raw SQL over no table.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export async function publishChange<T extends ChangeEventType>(db: Kysely<any>, event: ChangeEvent<T>): Promise<void> {
  await sql`select pg_notify(${CHANNEL}, ${JSON.stringify(event)})`.execute(db);
}

/**
 * Several {@link publishChange} in one statement (one notification per event), for a
 * transaction that makes many changes at once.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export async function publishChanges<T extends ChangeEventType>(db: Kysely<any>, events: Array<ChangeEvent<T>>): Promise<void> {
  if (events.length === 0) return;
  const payloads = events.map((e) => JSON.stringify(e));
  await sql`select pg_notify(${CHANNEL}, p) from unnest(${payloads}::text[]) as t(p)`.execute(db);
}

/**
 * {@link publishChange} as an SQL expression, for a statement that makes the change itself (a
 * data-modifying CTE): `idExpr` is the changed row's id column. The notification is sent if and
 * when the statement's transaction commits, exactly as with publishChange.
 */
export function changeNotifySql(type: ChangeEventType, idExpr: RawBuilder<string>): RawBuilder<unknown> {
  return sql`pg_notify(${CHANNEL}, json_build_object('type', ${type}::text, 'id', ${idExpr})::text)`;
}

/**
 * A handler of events of type `T`. Events arrive from other processes: a field may be missing
 * from an event sent by an older or newer instance, so handlers check what they use.
 */
export type ChangeHandler<T extends ChangeEventType = ChangeEventType> = (event: Partial<ChangeEvent<T>> & { type: T }) => void;

/**
 * Keeps one dedicated connection LISTENing on {@link CHANNEL} and hands each event to the
 * handlers registered for its type. While the connection is down events may be missed, so on
 * every (re)connect it emits `reset`: caches must then drop everything they hold.
 */
export class ChangeListener {
  private client: pg.Client | null = null;
  private readonly emitter = new EventEmitter();
  private closed = false;
  private retryMs = 100;
  private timer: NodeJS.Timeout | null = null;
  private connected = false;
  private readyPromise: Promise<void>;
  private resolveReady!: () => void;

  constructor(
    private readonly connectionString: string,
    private readonly log: Pick<Logger, 'info' | 'warn' | 'debug'>,
  ) {
    this.emitter.setMaxListeners(100);
    this.readyPromise = new Promise((r) => (this.resolveReady = r));
  }

  /** Handlers for one event type, or `*` for all. */
  on<T extends ChangeEventType>(type: T | '*', handler: ChangeHandler<T>): () => void {
    this.emitter.on(`event:${type}`, handler);
    return () => this.emitter.off(`event:${type}`, handler);
  }

  /** Called after every (re)connect: whatever was cached may be stale. */
  onReset(handler: () => void): () => void {
    this.emitter.on('reset', handler);
    return () => this.emitter.off('reset', handler);
  }

  get isConnected(): boolean {
    return this.connected;
  }

  /** Resolves once the first LISTEN is in place. */
  ready(): Promise<void> {
    return this.readyPromise;
  }

  start(): void {
    // Detached: connect() never rejects (it logs a failure and schedules the next attempt itself).
    void this.connect();
  }

  private barrier: Promise<boolean> | null = null;
  private nextBarrier: Promise<boolean> | null = null;

  /**
   * A freshness barrier: resolves `true` once every notification committed before this call has
   * been handed to the handlers, `false` when that cannot be promised (not listening, or the
   * round trip failed or took over `timeoutMs`): callers must then not trust their caches.
   *
   * How: a round trip on the LISTEN connection. Postgres signals listeners while the notifying
   * transaction commits (before its client hears of the commit) and delivers pending
   * notifications at the latest when the listener's next transaction ends, before ReadyForQuery;
   * pg emits them, in order, before the query resolves. Concurrent callers share round trips:
   * a call waits for the first round trip that starts after it, so the cost is at most two
   * round trips of latency and one trivial query per round trip, however many requests wait.
   */
  sync(timeoutMs = 1000): Promise<boolean> {
    if (!this.connected || !this.client) return Promise.resolve(false);
    if (!this.barrier) {
      const client = this.client;
      this.barrier = this.roundTrip(client, timeoutMs).finally(() => {
        this.barrier = null;
      });
      return this.barrier;
    }
    // One is in flight, but it started before this call: wait for the next one.
    this.nextBarrier ??= this.barrier.then(() => {
      this.nextBarrier = null;
      return this.sync(timeoutMs);
    });
    return this.nextBarrier;
  }

  private async roundTrip(client: pg.Client, timeoutMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    try {
      const ok = await Promise.race([
        client.query('select 1').then(() => true),
        new Promise<boolean>((r) => {
          timer = setTimeout(() => r(false), timeoutMs);
          timer.unref();
        }),
      ]);
      return ok && this.client === client && this.connected;
    } catch {
      return false;
    } finally {
      if (timer) clearTimeout(timer);
    }
  }

  private async connect(): Promise<void> {
    if (this.closed) return;
    const client = new pg.Client({ connectionString: this.connectionString, application_name: 'tessera-listener' });
    this.client = client;
    client.on('error', (err) => {
      this.log.warn({ err: { message: err.message } }, 'change listener connection failed; reconnecting');
      this.scheduleReconnect(client);
    });
    client.on('end', () => this.scheduleReconnect(client));
    client.on('notification', (msg) => {
      if (msg.channel !== CHANNEL || !msg.payload) return;
      let event: ChangeEvent;
      try {
        event = JSON.parse(msg.payload) as ChangeEvent;
      } catch {
        return;
      }
      if (typeof event?.type !== 'string') return;
      this.emitter.emit(`event:${event.type}`, event);
      this.emitter.emit('event:*', event);
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANNEL}`);
      if (this.closed) {
        await client.end().catch(() => undefined);
        return;
      }
      this.connected = true;
      this.retryMs = 100;
      this.log.debug('change listener connected');
      this.emitter.emit('reset');
      this.resolveReady();
    } catch (err) {
      this.log.warn({ err: { message: (err as Error).message } }, 'change listener could not connect; retrying');
      this.scheduleReconnect(client);
    }
  }

  private scheduleReconnect(client: pg.Client): void {
    if (this.client !== client || this.closed) return;
    this.client = null;
    this.connected = false;
    client.removeAllListeners('end');
    client.end().catch(() => undefined);
    const delay = this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, 2000);
    this.timer = setTimeout(() => void this.connect(), delay); // never rejects, see start()
    this.timer.unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.connected = false;
    if (this.timer) clearTimeout(this.timer);
    const c = this.client;
    this.client = null;
    if (c) {
      c.removeAllListeners('end');
      await c.end().catch(() => undefined);
    }
  }
}
