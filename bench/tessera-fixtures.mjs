// Bench fixture for Tessera, run as its own process against the bench's throw-away data folder
// (it attaches to the embedded Postgres the bench's Tessera server started).
//
// Creates N users, each with one API token (scope `api`), through Tessera's own code
// (users.repository createUser, api-tokens.service issueApiToken, audit.repository recordAudit),
// straight against the database: 5,000 users through the CLI would be 10,000 process starts.
// The SDK keys themselves are then made through the HTTP API by bench/run.mjs (2 per user).
// Also reports the Postgres settings that matter for durability, for the results header.
//
// With --vacuum it only runs VACUUM (ANALYZE), as pgbench does before it measures: once the SDK keys are made,
// so autovacuum's pass over the freshly loaded tables does not land in the first measured run.
//
// With --security-events it prints the security_events rows by kind as JSON (the revocation flow's check).
//
// usage: node bench/tessera-fixtures.mjs --users N --out FILE   (env: the bench's TESSERA_* variables)
//        node bench/tessera-fixtures.mjs --vacuum
//        node bench/tessera-fixtures.mjs --security-events
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { sql } from 'kysely';
import { openRuntime } from '../dist/src/platform/runtime.js';
import { createUser } from '../dist/src/identity/users.repository.js';
import { issueApiToken } from '../dist/src/api-tokens/api-tokens.service.js';
import { recordAudit } from '../dist/src/platform/database/audit.repository.js';

const { values } = parseArgs({
  options: {
    users: { type: 'string', default: '0' },
    out: { type: 'string' },
    vacuum: { type: 'boolean' },
    'security-events': { type: 'boolean' },
  },
});
const count = Number(values.users);
const rt = await openRuntime(process.env, { logLevel: 'warn' });
const actor = { userId: null, credential: 'cli' };
try {
  if (values.vacuum) await sql`vacuum (analyze)`.execute(rt.handle.db);
  else if (values['security-events']) {
    const { rows } = await sql`select kind, count(*)::int as n from security_events group by kind`.execute(rt.handle.db);
    process.stdout.write(JSON.stringify(Object.fromEntries(rows.map((r) => [r.kind, r.n]))));
  } else await makeFixtures();
} finally {
  await rt.close();
}

async function makeFixtures() {
  const settings = {};
  for (const name of ['server_version', 'synchronous_commit', 'fsync', 'wal_sync_method', 'shared_buffers', 'max_connections']) {
    const { rows } = await sql.raw(`show ${name}`).execute(rt.handle.db);
    settings[name] = Object.values(rows[0])[0];
  }
  const users = new Array(count);
  const BATCH = 250;
  const batches = [];
  for (let start = 0; start < count; start += BATCH) batches.push(start);
  const worker = async () => {
    for (let start = batches.shift(); start !== undefined; start = batches.shift()) {
      await rt.handle.db.transaction().execute(async (trx) => {
        for (let i = start; i < Math.min(start + BATCH, count); i++) {
          const email = `bench-user-${String(i).padStart(5, '0')}@bench.invalid`;
          const user = await createUser(trx, { email, name: `Bench user ${i}` });
          const { token, row } = await issueApiToken(trx, rt.config.pepper, { userId: user.id, name: 'bench', scopes: ['api'], expiresAt: null });
          await recordAudit(trx, actor, { action: 'user.create', targetType: 'user', targetId: user.id, details: { email, fixture: 'bench' } });
          await recordAudit(trx, actor, {
            action: 'api_token.create',
            targetType: 'api_token',
            targetId: row.id,
            details: { user_id: user.id, scopes: ['api'] },
          });
          users[i] = { id: user.id, email, token };
        }
      });
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  writeFileSync(values.out, JSON.stringify({ settings, users }));
}
