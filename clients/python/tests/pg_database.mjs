// A Postgres database for the Python client tests: a fresh database in the cluster DATABASE_URL names
// (scripts/run-tests.mjs exports its embedded one), else a throw-away embedded cluster started here.
// Prints {"database_url": ...} on one line, then holds until stdin closes and cleans up.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { freePort } from '../../../scripts/free-port.mjs';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..', '..');

function withDatabase(url, name) {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

let embedded = null;
let tmp = null;
let base = process.env.DATABASE_URL;
if (!base) {
  const { startEmbeddedPostgres } = await import(path.join(root, 'dist/src/platform/database/embedded.js'));
  tmp = mkdtempSync(path.join(tmpdir(), 'tessera-py-'));
  embedded = await startEmbeddedPostgres({ dataDir: tmp, port: await freePort(), database: 'postgres', ephemeral: true });
  base = embedded.connectionString;
}
const name = `tessera_py_${randomBytes(6).toString('hex')}`;
const admin = new pg.Client({ connectionString: withDatabase(base, 'postgres') });
await admin.connect();
await admin.query(`create database ${name}`);
await admin.end();
process.stdout.write(JSON.stringify({ database_url: withDatabase(base, name) }) + '\n');

process.stdin.resume();
await new Promise((r) => process.stdin.on('end', r).on('close', r));
try {
  const c = new pg.Client({ connectionString: withDatabase(base, 'postgres') });
  await c.connect();
  await c.query(`drop database if exists ${name} with (force)`);
  await c.end();
} catch {
  // the cluster is going away anyway
}
if (embedded) {
  await embedded.stop().catch(() => undefined);
  rmSync(tmp, { recursive: true, force: true });
}
process.exit(0);
