import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application code here.

// A session row is written once at login and updated once at logout, soon after. Pages kept 20%
// free let that update stay on the row's page (a HOT update): none of the table's five indexes
// gets a new entry, and Postgres prunes the old version on the page itself. Applies to pages
// written from now on; no rewrite.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table sessions set (fillfactor = 80)`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`alter table sessions reset (fillfactor)`.execute(db);
}
