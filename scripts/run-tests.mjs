#!/usr/bin/env node
// Runs every test against a real Postgres: DATABASE_URL when given, else a throw-away embedded
// cluster started here for the run. Each test file makes its own database in it.
// Prints failures in full and ends with one line: "N passed, N failed".
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, createWriteStream, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { Parser } from 'tap-parser';
import { startEmbeddedPostgres } from '../dist/src/platform/database/embedded.js';

const args = process.argv.slice(2);
const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

let embedded = null;
let tmp = null;
const env = { ...process.env };
if (!env.DATABASE_URL) {
  tmp = mkdtempSync(path.join(tmpdir(), 'tessera-test-'));
  embedded = await startEmbeddedPostgres({ dataDir: tmp, port: await freePort(), database: 'postgres', ephemeral: true });
  env.DATABASE_URL = embedded.connectionString;
  env.TESSERA_TEST_PG_DIR = embedded.dataDir;
  console.log(`# embedded Postgres for this run on 127.0.0.1:${embedded.port}`);
}

mkdirSync(path.join(root, '.tap'), { recursive: true });
const raw = createWriteStream(path.join(root, '.tap', 'last-run.tap'));
const tap = spawn(process.execPath, [path.join(root, 'node_modules', 'tap', 'dist', 'esm', 'run.mjs'), '--reporter=tap', ...args], {
  cwd: root,
  env,
  stdio: ['ignore', 'pipe', 'inherit'],
});

let passed = 0;
let failed = 0;
let skipped = 0;
const parser = new Parser();
parser.on('pass', () => passed++);
parser.on('todo', () => skipped++);
parser.on('skip', () => skipped++);
parser.on('fail', (res) => {
  failed++;
  console.log(`not ok - ${res.fullname}`);
  if (res.diag) {
    for (const line of JSON.stringify(res.diag, null, 2).split('\n').slice(0, 40)) console.log(`    ${line}`);
  }
});
parser.on('child', (child) => {
  // Top-level children are test files.
  child.on('complete', (results) => {
    console.log(`${results.ok ? 'ok' : 'not ok'} - ${child.name} (${results.pass} passed, ${results.fail} failed)`);
  });
});
parser.on('bailout', (reason) => console.log(`Bail out! ${reason}`));
tap.stdout.on('data', (chunk) => {
  raw.write(chunk);
  parser.write(chunk);
});
const code = await new Promise((resolve) => tap.on('close', (c, signal) => resolve(c ?? (signal ? 1 : 0))));
parser.end();
raw.end();

if (embedded) {
  await embedded.stop().catch(() => undefined);
  rmSync(tmp, { recursive: true, force: true });
}
if (code !== 0 && failed === 0) failed = 1; // the runner itself failed (a file crashed before any assertion)
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(code === 0 && failed === 0 ? 0 : 1);
