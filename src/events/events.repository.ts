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

/** Deletes events created before `before`; moves the horizon past them. Returns how many went. */
export async function pruneEvents(db: EventsDb, before: Date): Promise<number> {
  const r = await sql<{ n: number }>`
    with gone as (delete from security_events where created_at < ${before} returning id),
    moved as (
      update security_events_horizon set pruned_through = greatest(pruned_through, (select max(id) from gone))
      where exists (select 1 from gone) returning 1)
    select (select count(*) from gone)::int as n, (select count(*) from moved) as m`.execute(db);
  const n = r.rows[0]?.n ?? 0;
  // Receivers that have not polled for longer than the retention window start again from the horizon.
  await sql`delete from security_event_receivers where updated_at < ${before}`.execute(db);
  return n;
}

/**
 * One RFC 8936 poll for `receiver`, in one transaction: records the acknowledgements, moves the
 * receiver's cursor past every acknowledged event, and returns up to `max` unacknowledged events
 * (plus whether more wait). A new receiver starts at the oldest retained event; one whose cursor
 * fell below the horizon (away longer than the retention) restarts there, and `resync` says so.
 */
export async function pollEvents(
  db: Db,
  receiver: string,
  ack: readonly number[],
  max: number,
): Promise<{ events: StoredEvent[]; more: boolean; resync: boolean }> {
  return db.transaction().execute(async (t) => {
    const trx = eventsDb(t);
    const { horizon } = await eventBounds(trx);
    await trx
      .insertInto('security_event_receivers')
      .values({ receiver, cursor: horizon })
      .onConflict((oc) => oc.column('receiver').doNothing())
      .execute();
    const row = await trx.selectFrom('security_event_receivers').select('cursor').where('receiver', '=', receiver).forUpdate().executeTakeFirstOrThrow();
    let cursor = row.cursor;
    const resync = cursor < horizon;
    if (resync) {
      cursor = horizon;
      await trx.deleteFrom('security_event_acks').where('receiver', '=', receiver).execute();
    }
    const fresh = [...new Set(ack)].filter((id) => id > cursor);
    if (fresh.length > 0) {
      await trx
        .insertInto('security_event_acks')
        .values(fresh.map((event_id) => ({ receiver, event_id })))
        .onConflict((oc) => oc.doNothing())
        .execute();
    }
    // The cursor moves to just below the oldest unacknowledged event (or to the newest event when all are).
    const next = await sql<{ cursor: number }>`
      select coalesce(
        (select min(e.id) - 1 from security_events e
          where e.id > ${cursor} and not exists (select 1 from security_event_acks a where a.receiver = ${receiver} and a.event_id = e.id)),
        (select max(id) from security_events where id > ${cursor}),
        ${cursor}::bigint) as cursor`.execute(trx);
    cursor = Number(next.rows[0]!.cursor);
    await trx.updateTable('security_event_receivers').set({ cursor, updated_at: new Date() }).where('receiver', '=', receiver).execute();
    await trx.deleteFrom('security_event_acks').where('receiver', '=', receiver).where('event_id', '<=', cursor).execute();
    const rows = await sql<{ id: number; kind: SecurityEventKind; subject: Record<string, unknown>; created_at: Date }>`
      select e.id, e.kind, e.subject, e.created_at from security_events e
      where e.id > ${cursor} and not exists (select 1 from security_event_acks a where a.receiver = ${receiver} and a.event_id = e.id)
      order by e.id limit ${max + 1}`.execute(trx);
    const events = rows.rows.slice(0, max).map((r) => ({ id: Number(r.id), kind: r.kind, subject: r.subject, createdAt: r.created_at }));
    return { events, more: rows.rows.length > max, resync };
  });
}
