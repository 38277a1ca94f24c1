import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application code here.

// The notification a security event sends carries no id: readers take every row above the last
// one they read, so one wake-up per transaction is enough, and Postgres folds identical
// notifications of one transaction into one (a batch of N logouts sends one, not N).
const emit = (payload: string) =>
  sql.raw(`
    create or replace function security_event_emit(p_kind text, p_subject jsonb) returns void language plpgsql as $$
    declare
      new_id bigint;
    begin
      perform pg_advisory_xact_lock(hashtext('tessera:security_events'));
      new_id := nextval('security_events_id_seq');
      insert into security_events (id, kind, subject) values (new_id, p_kind, p_subject);
      perform pg_notify('tessera_events', ${payload});
    end
    $$`);

export async function up(db: Kysely<any>): Promise<void> {
  await emit(`'{"type":"security_event"}'`).execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await emit(`json_build_object('type', 'security_event', 'id', new_id::text)::text`).execute(db);
}
