// Holds an ACCESS EXCLUSIVE lock on a table of the database in DATABASE_URL, so that Tessera's requests
// reading it wait. Prints "locked", then "waiting" once a query on the table waits for the lock (or
// "nobody waited" after 30 s); releases it and exits when stdin closes. Usage: node pg_lock.mjs <table>
import pg from 'pg';

const table = process.argv[2];
const c = new pg.Client({ connectionString: process.env.DATABASE_URL });
await c.connect();
await c.query('begin');
await c.query(`lock table ${table} in access exclusive mode`);
process.stdout.write('locked\n');
const watcher = new pg.Client({ connectionString: process.env.DATABASE_URL });
await watcher.connect();
let released = false;
process.stdin.resume();
const done = new Promise((r) => process.stdin.on('end', r).on('close', r));
void done.then(() => (released = true));
const giveUpAt = Date.now() + 30_000;
for (;;) {
  if (released) break;
  if (Date.now() > giveUpAt) {
    process.stdout.write('nobody waited\n');
    break;
  }
  const { rows } = await watcher.query(
    "select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and pid <> $1 and query ilike $2",
    [(await c.query('select pg_backend_pid() as pid')).rows[0].pid, `%${table}%`],
  );
  if (rows[0].n > 0) {
    process.stdout.write('waiting\n');
    break;
  }
  await new Promise((r) => setTimeout(r, 50));
}
await done;
await c.query('rollback').catch(() => undefined);
await c.end().catch(() => undefined);
await watcher.end().catch(() => undefined);
process.exit(0);
