// Population fixture: POPULATION_KEYS SDK keys for POPULATION_KEYS / 2 users, loaded in bulk into the
// database of a Tessera data folder (run as its own process, attached to the embedded Postgres that the
// bench's Tessera started there, like bench/tessera-fixtures.mjs).
//
// Each key's secret_hash is Tessera's own `hashSecret(pepper, secret, SDK_KEY_PURPOSE)`, imported from
// dist, with the pepper Tessera stores in that data folder; the rows go in with COPY (pg-copy-streams,
// text format): one statement per table, streamed, no per-row round trip or parse, which is what makes a
// million rows a matter of minutes. The per-user limit trigger (sdk_keys_limit: a row lock and a count
// per inserted key) is switched off for the COPY, in its transaction, and the limit checked once over the
// whole table afterwards: the fixture makes two keys per user, as the API allows. Keys are made without a parent API token and without audit events (their
// creation is not what is measured; the token path reads neither).
//
// A finished build is recorded in the table bench_population (pepper fingerprint, seed fingerprint,
// size, version); the next run with the same pepper, seed and size reuses it. Anything else (another
// size, a new pepper, a build cut short) truncates the fixture's tables and builds again.
//
// usage: node bench/population.mjs --keys N --seed-file FILE   -> JSON {reused, seconds, users, keys, ...}
//        node bench/population.mjs --stats                     -> JSON {databaseBytes, sdkKeys, ...}
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import pg from 'pg';
import copyStreams from 'pg-copy-streams';
import { openRuntime } from '../dist/src/platform/runtime.js';
import { hashSecret } from '../dist/src/platform/crypto/secrets.js';
import { SDK_KEY_PURPOSE } from '../dist/src/oauth/client-auth.js';
import { fingerprint, populationCredential, POPULATION_VERSION } from './lib/population.mjs';

const { values } = parseArgs({ options: { keys: { type: 'string' }, 'seed-file': { type: 'string' }, stats: { type: 'boolean' } } });
const rt = await openRuntime(process.env, { logLevel: 'warn' });
const client = new pg.Client({ connectionString: rt.handle.connectionString });
await client.connect();
const log = (m) => process.stderr.write(`[population] ${m}\n`);
try {
  if (values.stats) process.stdout.write(JSON.stringify(await stats()) + '\n');
  else process.stdout.write(JSON.stringify(await ensure(Number(values.keys), values['seed-file'])) + '\n');
} finally {
  await client.end();
  await rt.close();
}

async function stats() {
  const { rows } = await client.query(`select pg_database_size(current_database())::bigint as db,
    pg_total_relation_size('sdk_keys')::bigint as keys_bytes, pg_total_relation_size('users')::bigint as users_bytes,
    (select count(*) from sdk_keys)::bigint as keys`);
  const r = rows[0];
  return { databaseBytes: Number(r.db), sdkKeysBytes: Number(r.keys_bytes), usersBytes: Number(r.users_bytes), sdkKeys: Number(r.keys) };
}

async function ensure(keys, seedFile) {
  if (!Number.isInteger(keys) || keys < 2) throw new Error('--keys must be a whole number >= 2');
  if (!seedFile) throw new Error('--seed-file is required');
  if (!existsSync(seedFile)) writeFileSync(seedFile, randomBytes(32).toString('base64'), { mode: 0o600 });
  const seed = Buffer.from(readFileSync(seedFile, 'utf8').trim(), 'base64');
  const want = { pepper_fp: fingerprint(rt.config.pepper), seed_fp: fingerprint(seed), keys, version: POPULATION_VERSION };
  await client.query(`create table if not exists bench_population (
    pepper_fp text not null, seed_fp text not null, keys int not null, version int not null,
    users int not null, seconds real not null, built_at timestamptz not null default now())`);
  const { rows } = await client.query('select * from bench_population');
  const have = rows[0];
  if (rows.length === 1 && Object.entries(want).every(([k, v]) => have[k] === v)) {
    log(`reusing the population of ${keys.toLocaleString('en-US')} keys built ${have.built_at.toISOString()} in ${have.seconds.toFixed(1)} s`);
    return { reused: true, keys, users: have.users, buildSeconds: have.seconds, builtAt: have.built_at, method: 'COPY (cached)' };
  }
  const started = Date.now();
  const users = Math.ceil(keys / 2);
  log(rows.length ? 'cached population does not match (size, pepper, seed or version): rebuilding' : 'no cached population: building');
  await client.query('truncate users, bench_population cascade');
  const userIds = Array.from({ length: users }, () => randomUUID());
  const at = new Date().toISOString();

  log(`COPY ${users.toLocaleString('en-US')} users`);
  await copy('copy users (id, email, name, status, created_at, updated_at) from stdin', function* () {
    for (let u = 0; u < users; u++) yield `${userIds[u]}\tpop-${String(u).padStart(7, '0')}@bench.invalid\tPopulation user ${u}\tactive\t${at}\t${at}\n`;
  });
  log(`  ${((Date.now() - started) / 1000).toFixed(1)} s`);

  log(`COPY ${keys.toLocaleString('en-US')} SDK keys (secret_hash through Tessera's hashSecret with its pepper)`);
  const pepper = rt.config.pepper;
  await client.query('begin');
  await client.query('alter table sdk_keys disable trigger sdk_keys_limit');
  await copy('copy sdk_keys (client_id, user_id, name, secret_hash, scopes, status, created_at, updated_at) from stdin', function* () {
    for (let i = 0; i < keys; i++) {
      const { client_id, client_secret } = populationCredential(seed, i);
      const hash = hashSecret(pepper, client_secret, SDK_KEY_PURPOSE).toString('hex');
      yield `${client_id}\t${userIds[i >> 1]}\tpop-${i & 1}\t\\\\x${hash}\t{api}\tenabled\t${at}\t${at}\n`;
    }
  });
  await client.query('alter table sdk_keys enable trigger sdk_keys_limit');
  const over = await client.query('select user_id from sdk_keys group by user_id having count(*) > 2 limit 1');
  if (over.rows.length) throw new Error('the fixture broke the two-keys-per-user limit');
  await client.query('commit');
  log(`  ${((Date.now() - started) / 1000).toFixed(1)} s`);
  log('VACUUM (ANALYZE) users, sdk_keys');
  await client.query('vacuum (analyze) users, sdk_keys');
  const seconds = (Date.now() - started) / 1000;
  await client.query('insert into bench_population (pepper_fp, seed_fp, keys, version, users, seconds) values ($1, $2, $3, $4, $5, $6)', [
    want.pepper_fp,
    want.seed_fp,
    keys,
    POPULATION_VERSION,
    users,
    seconds,
  ]);
  log(`built in ${seconds.toFixed(1)} s`);
  return { reused: false, keys, users, buildSeconds: seconds, builtAt: new Date().toISOString(), method: 'COPY' };
}

/** Streams the lines of `rows()` into one COPY statement, in chunks of ~1 MB. */
async function copy(statement, rows) {
  const it = rows();
  const source = Readable.from(
    (function* () {
      let chunk = '';
      for (const line of it) {
        chunk += line;
        if (chunk.length >= 1 << 20) {
          yield chunk;
          chunk = '';
        }
      }
      if (chunk) yield chunk;
    })(),
  );
  await pipeline(source, client.query(copyStreams.from(statement)));
}
