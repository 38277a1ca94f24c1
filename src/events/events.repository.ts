import { sql, type Kysely } from 'kysely';
import type { Db } from '../platform/database/database.js';
import type { SecurityEventKind, SecurityEventTables } from './events.table.js';

/** One stored security event. */
export interface StoredEvent {
  id: number;
  kind: SecurityEventKind;
  subject: Record<string, unknown>;
  createdAt: Date;
}

type EventsDb = Kysely<SecurityEventTables>;

/** The events tables on any database handle or transaction. */
export function eventsDb(db: Db | Kysely<never>): EventsDb {
  return (db as unknown as Kysely<object>).withTables<SecurityEventTables>() as unknown as EventsDb;
}

/** Events with id > `after`, oldest first, at most `limit`. */
export async function eventsAfter(db: EventsDb, after: number, limit: number): Promise<StoredEvent[]> {
  const rows = await db
    .selectFrom('security_events')
    .select(['id', 'kind', 'subject', 'created_at'])
    .where('id', '>', after)
    .orderBy('id')
    .limit(limit)
    .execute();
  return rows.map((r) => ({ id: r.id, kind: r.kind, subject: r.subject, createdAt: r.created_at }));
}

/** The highest id pruned, and the highest id ever drawn (0 when none). */
export async function eventBounds(db: EventsDb): Promise<{ horizon: number; latest: number }> {
  const r = await sql<{ horizon: number; latest: number }>`
    select (select pruned_through from security_events_horizon) as horizon,
           (select case when is_called then last_value else 0 end from security_events_id_seq) as latest`.execute(db);
  const row = r.rows[0]!;
  return { horizon: Number(row.horizon), latest: Number(row.latest) };
}

/** The newest committed event id, else the horizon (0 when nothing was ever pruned). */
export async function latestCommitted(db: EventsDb): Promise<number> {
  const r = await sql<{ id: number }>`
    select coalesce((select max(id) from security_events), (select pruned_through from security_events_horizon), 0) as id`.execute(db);
  return Number(r.rows[0]!.id);
}

/** How long a poll receiver that stopped polling is remembered, at least (it is told to resync when it returns). */
export const RECEIVER_MEMORY_MS = 30 * 86_400_000;

/**
 * Deletes events created before `before`; moves the horizon past them. Returns how many went.
 * Poll receivers idle since before `receiversIdleBefore` (default: `RECEIVER_MEMORY_MS` before
 * `before`) are forgotten: until then one that returns with a position below the horizon is told
 * to resync; after, it starts again as a new receiver, with every event still kept.
 */
export async function pruneEvents(db: EventsDb, before: Date, receiversIdleBefore = new Date(before.getTime() - RECEIVER_MEMORY_MS)): Promise<number> {
  const r = await sql<{ n: number }>`
    with gone as (delete from security_events where created_at < ${before} returning id),
    moved as (
      update security_events_horizon set pruned_through = greatest(pruned_through, (select max(id) from gone))
      where exists (select 1 from gone) returning 1)
    select (select count(*) from gone)::int as n, (select count(*) from moved) as m`.execute(db);
  const n = r.rows[0]?.n ?? 0;
  await sql`delete from security_event_receivers where updated_at < ${receiversIdleBefore}`.execute(db);
  return n;
}

/** The jti of the resync SET owed to a receiver whose position `cursor` fell below the horizon. */
export const resyncJti = (cursor: number): string => `resync-${cursor}`;

/** A resync owed to a poll receiver: events after its position up to `from` were pruned unread. */
export interface PollResync {
  /** The resync SET's jti: acknowledging it moves the receiver on. */
  jti: string;
  /** The horizon: every event at or below it is gone; what is delivered starts above it. */
  from: number;
}

/**
 * One RFC 8936 poll for `receiver`, in one transaction: records the acknowledgements, moves the
 * receiver's cursor past every acknowledged event, and returns up to `max` unacknowledged events
 * (plus whether more wait). A new receiver starts at the oldest retained event. One whose cursor
 * fell below the horizon (events it never acknowledged were pruned) is owed a resync: `resync`
 * names it, counts against `max`, and is owed again on every poll until the receiver
 * acknowledges its jti (given in `ackResync`); its position stays put until then, while events
 * above the horizon are delivered and acknowledged as usual.
 */
export async function pollEvents(
  db: Db,
  receiver: string,
  ack: readonly number[],
  max: number,
  ackResync: readonly string[] = [],
): Promise<{ events: StoredEvent[]; more: boolean; resync: PollResync | null }> {
  return db.transaction().execute(async (t) => {
    const trx = eventsDb(t);
    const { horizon } = await eventBounds(trx);
    await trx
      .insertInto('security_event_receivers')
      .values({ receiver, cursor: horizon })
      .onConflict((oc) => oc.column('receiver').doNothing())
      .execute();
    const row = await trx.selectFrom('security_event_receivers').select('cursor').where('receiver', '=', receiver).forUpdate().executeTakeFirstOrThrow();
    let cursor = Number(row.cursor);
    let owed = cursor < horizon;
    if (owed && ackResync.includes(resyncJti(cursor))) {
      owed = false;
      cursor = horizon;
    }
    // Acknowledgements at or below the horizon name pruned events: nothing is left to record.
    await trx.deleteFrom('security_event_acks').where('receiver', '=', receiver).where('event_id', '<=', Math.max(cursor, horizon)).execute();
    const base = Math.max(cursor, horizon);
    const fresh = [...new Set(ack)].filter((id) => id > base);
    if (fresh.length > 0) {
      await trx
        .insertInto('security_event_acks')
        .values(fresh.map((event_id) => ({ receiver, event_id })))
        .onConflict((oc) => oc.doNothing())
        .execute();
    }
    if (!owed) {
      // The cursor moves to just below the oldest unacknowledged event (or to the newest event when all are).
      const next = await sql<{ cursor: number }>`
        select coalesce(
          (select min(e.id) - 1 from security_events e
            where e.id > ${cursor} and not exists (select 1 from security_event_acks a where a.receiver = ${receiver} and a.event_id = e.id)),
          (select max(id) from security_events where id > ${cursor}),
          ${cursor}::bigint) as cursor`.execute(trx);
      cursor = Number(next.rows[0]!.cursor);
      await trx.deleteFrom('security_event_acks').where('receiver', '=', receiver).where('event_id', '<=', cursor).execute();
    }
    await trx.updateTable('security_event_receivers').set({ cursor, updated_at: new Date() }).where('receiver', '=', receiver).execute();
    const resync = owed && max > 0 ? { jti: resyncJti(cursor), from: horizon } : null;
    const limit = resync ? max - 1 : max;
    const from = Math.max(cursor, horizon);
    const rows = await sql<{ id: number; kind: SecurityEventKind; subject: Record<string, unknown>; created_at: Date }>`
      select e.id, e.kind, e.subject, e.created_at from security_events e
      where e.id > ${from} and not exists (select 1 from security_event_acks a where a.receiver = ${receiver} and a.event_id = e.id)
      order by e.id limit ${limit + 1}`.execute(trx);
    const events = rows.rows.slice(0, limit).map((r) => ({ id: Number(r.id), kind: r.kind, subject: r.subject, createdAt: r.created_at }));
    return { events, more: rows.rows.length > limit, resync };
  });
}
