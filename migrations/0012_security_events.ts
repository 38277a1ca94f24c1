import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application code here.

/**
 * Security events for verifiers: every committed change that ends a credential becomes one row of
 * `security_events`, written by triggers in the transaction that makes the change, so every code
 * path (API, console, CLI, cascades, plain SQL) is covered.
 *
 * Ids are handed out in commit order: the capturing triggers are deferred to commit time and take
 * one transaction-scoped advisory lock before drawing the id, and Postgres releases that lock only
 * after the transaction is visible. A reader that sees id N therefore already sees every id below
 * N that will ever commit, so "every row with id > last seen" never skips a row committed later.
 * Deferring to commit also means the lock is taken after every row lock the transaction takes, so
 * it cannot join a deadlock, and it is held only for the commit itself.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('security_events')
    .addColumn('id', 'bigint', (c) => c.primaryKey())
    .addColumn('kind', 'text', (c) =>
      c
        .notNull()
        .check(
          sql`kind in ('token_revoked', 'sdk_key_disabled', 'sdk_key_tokens_cut_off', 'sdk_key_deleted', 'user_suspended', 'session_revoked', 'signing_key_revoked', 'api_token_revoked')`,
        ),
    )
    // What the event is about (ids, jti, exp): never a secret.
    .addColumn('subject', 'jsonb', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`clock_timestamp()`))
    .execute();
  await db.schema.createIndex('security_events_created_idx').on('security_events').column('created_at').execute();
  await sql`create sequence security_events_id_seq as bigint`.execute(db);

  // The highest id pruned so far: a receiver resuming below it has missed events and must resync.
  await db.schema
    .createTable('security_events_horizon')
    .addColumn('one', 'boolean', (c) =>
      c
        .primaryKey()
        .defaultTo(true)
        .check(sql`one`),
    )
    .addColumn('pruned_through', 'bigint', (c) => c.notNull().defaultTo(0))
    .execute();
  await sql`insert into security_events_horizon (one, pruned_through) values (true, 0)`.execute(db);

  // RFC 8936 poll receivers: every event at or below `cursor` is acknowledged; above it, `acks` lists those that are.
  await db.schema
    .createTable('security_event_receivers')
    .addColumn('receiver', 'text', (c) => c.primaryKey())
    .addColumn('cursor', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema
    .createTable('security_event_acks')
    .addColumn('receiver', 'text', (c) => c.notNull().references('security_event_receivers.receiver').onDelete('cascade'))
    .addColumn('event_id', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('security_event_acks_pk', ['receiver', 'event_id'])
    .execute();

  await sql`
    create function security_event_emit(p_kind text, p_subject jsonb) returns void language plpgsql as $$
    declare
      new_id bigint;
    begin
      perform pg_advisory_xact_lock(hashtext('tessera:security_events'));
      new_id := nextval('security_events_id_seq');
      insert into security_events (id, kind, subject) values (new_id, p_kind, p_subject);
      perform pg_notify('tessera_events', json_build_object('type', 'security_event', 'id', new_id::text)::text);
    end
    $$`.execute(db);

  const epoch = (col: string) => `ceil(extract(epoch from ${col}))::bigint`;
  await sql
    .raw(
      `
    create function security_event_capture() returns trigger language plpgsql as $$
    begin
      -- One branch per table, nested: a record's fields may be named only where the table has them.
      if tg_table_name = 'revoked_tokens' then
        perform security_event_emit('token_revoked', jsonb_build_object('jti', new.jti, 'client_id', new.client_id, 'exp', ${epoch('new.expires_at')}));
      elsif tg_table_name = 'sdk_keys' then
        if tg_op = 'DELETE' then
          perform security_event_emit('sdk_key_deleted', jsonb_build_object('client_id', old.client_id, 'user_id', old.user_id));
        elsif new.status = 'disabled' and old.status <> 'disabled' then
          perform security_event_emit('sdk_key_disabled', jsonb_build_object('client_id', new.client_id, 'user_id', new.user_id,
            'tokens_valid_after', ${epoch('coalesce(new.tokens_valid_after, now())')}));
        else
          perform security_event_emit('sdk_key_tokens_cut_off', jsonb_build_object('client_id', new.client_id, 'user_id', new.user_id,
            'tokens_valid_after', ${epoch('new.tokens_valid_after')}));
        end if;
      elsif tg_table_name = 'users' then
        perform security_event_emit('user_suspended', jsonb_build_object('user_id', new.id));
      elsif tg_table_name = 'sessions' then
        if tg_op = 'DELETE' then
          perform security_event_emit('session_revoked', jsonb_build_object('session_id', old.id, 'user_id', old.user_id, 'exp', ${epoch('old.expires_at')}));
        else
          perform security_event_emit('session_revoked', jsonb_build_object('session_id', new.id, 'user_id', new.user_id, 'exp', ${epoch('new.expires_at')}));
        end if;
      elsif tg_table_name = 'signing_keys' then
        perform security_event_emit('signing_key_revoked', jsonb_build_object('kid', new.kid));
      elsif tg_table_name = 'api_tokens' then
        if tg_op = 'DELETE' then
          perform security_event_emit('api_token_revoked', jsonb_build_object('api_token_id', old.id, 'user_id', old.user_id));
        else
          perform security_event_emit('api_token_revoked', jsonb_build_object('api_token_id', new.id, 'user_id', new.user_id));
        end if;
      end if;
      return null;
    end
    $$`,
    )
    .execute(db);

  const triggers: [string, string, string][] = [
    ['revoked_tokens', 'insert', 'true'],
    ['sdk_keys', 'delete', 'true'],
    [
      'sdk_keys',
      'update',
      `(new.status = 'disabled' and old.status <> 'disabled') or (new.tokens_valid_after is distinct from old.tokens_valid_after and new.tokens_valid_after is not null)`,
    ],
    ['users', 'update', `new.status = 'suspended' and old.status <> 'suspended'`],
    ['sessions', 'update', 'old.revoked_at is null and new.revoked_at is not null and new.expires_at > now()'],
    ['sessions', 'delete', 'old.revoked_at is null and old.expires_at > now()'],
    ['signing_keys', 'update', `new.state = 'revoked' and old.state <> 'revoked'`],
    ['api_tokens', 'update', 'old.revoked_at is null and new.revoked_at is not null'],
    ['api_tokens', 'delete', 'old.revoked_at is null and (old.expires_at is null or old.expires_at > now())'],
  ];
  for (const [table, op, when] of triggers) {
    await sql
      .raw(
        `create constraint trigger security_event_${table}_${op} after ${op} on ${table} deferrable initially deferred ` +
          `for each row when (${when}) execute function security_event_capture()`,
      )
      .execute(db);
  }
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const [table, op] of [
    ['revoked_tokens', 'insert'],
    ['sdk_keys', 'delete'],
    ['sdk_keys', 'update'],
    ['users', 'update'],
    ['sessions', 'update'],
    ['sessions', 'delete'],
    ['signing_keys', 'update'],
    ['api_tokens', 'update'],
    ['api_tokens', 'delete'],
  ]) {
    await sql.raw(`drop trigger if exists security_event_${table}_${op} on ${table}`).execute(db);
  }
  await sql`drop function if exists security_event_capture()`.execute(db);
  await sql`drop function if exists security_event_emit(text, jsonb)`.execute(db);
  await db.schema.dropTable('security_event_acks').execute();
  await db.schema.dropTable('security_event_receivers').execute();
  await db.schema.dropTable('security_events_horizon').execute();
  await sql`drop sequence if exists security_events_id_seq`.execute(db);
  await db.schema.dropTable('security_events').execute();
}
