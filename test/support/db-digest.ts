// What "the database did not change" means in the hostile-input and fuzz tests: every row of every
// table Tessera owns, compared as JSON, except `last_used_at` (a successful authentication may
// legitimately stamp it; it is a hint for people, not state).
import { sql } from 'kysely';
import type { Db } from '../../src/platform/database/database.js';

/** Columns a request may change without changing any credential or record. */
export const VOLATILE_COLUMNS = ['last_used_at'] as const;

/** table name -> md5 of its rows (JSON, volatile columns removed, sorted). */
export async function databaseDigest(db: Db): Promise<Record<string, string>> {
  const tables = await sql<{ name: string }>`
    select table_name as name from information_schema.tables
    where table_schema = 'public' and table_type = 'BASE TABLE' and table_name not like 'kysely_%'
    order by table_name`.execute(db);
  const out: Record<string, string> = {};
  for (const { name } of tables.rows) {
    let row = sql`to_jsonb(t)`;
    for (const c of VOLATILE_COLUMNS) row = sql`(${row} - ${c}::text)`;
    const r = await sql<{ n: number; digest: string }>`
      select count(*)::int as n, md5(coalesce(string_agg(x, E'\\n' order by x), '')) as digest
      from (select ${row}::text as x from ${sql.table(name)} as t) s`.execute(db);
    out[name] = `${r.rows[0]!.n}:${r.rows[0]!.digest}`;
  }
  return out;
}

/** A response body must never carry a stack trace, a file path or SQL. */
export function leaksInternals(body: string): boolean {
  return /\bat [\w.<>]+ \(|\.(ts|js):\d+|node_modules|\bselect\b.+\bfrom\b|syntax error|stack/i.test(body);
}
