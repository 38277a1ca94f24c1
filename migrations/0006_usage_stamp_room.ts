import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application code here.

// Credentials get `last_used_at` stamps in batches. `last_used_at` is in no index, so a stamp can
// be a HOT update (no index entries, no new page) when the row's page has room for the new
// version: leave 10% of each page free on the tables that are stamped. It applies to pages
// written from now on; existing full pages gain room as VACUUM frees them.
const STAMPED = ['sdk_keys', 'api_tokens', 'sessions', 'provider_tokens'];

export async function up(db: Kysely<any>): Promise<void> {
  for (const t of STAMPED) await sql`alter table ${sql.table(t)} set (fillfactor = 90)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const t of STAMPED) await sql`alter table ${sql.table(t)} reset (fillfactor)`.execute(db);
}
