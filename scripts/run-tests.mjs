#!/usr/bin/env node
// Runs every test against a real Postgres: DATABASE_URL when given, else a throw-away embedded
// cluster started here for the run. Each test file makes its own database in it.
// Then the Python client's pytest suite (clients/python/tests) on the same cluster: on a full run, when
// a path under clients/python or a test/client-*.test.ts file is named, or when TESSERA_TEST_PYTHON=1
// (TESSERA_TEST_PYTHON=0 leaves it out). Its results count in the totals.
// Prints failures in full and ends with one line: "N passed, N failed".
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, createWriteStream, rmSync, existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Parser } from 'tap-parser';
import { startEmbeddedPostgres } from '../dist/src/platform/database/embedded.js';
import { freePort } from './free-port.mjs';

const allArgs = process.argv.slice(2);
const isPython = (a) => a.replace(/^\.\//, '').startsWith('clients/python');
const args = allArgs.filter((a) => !isPython(a));
const pythonArgs = allArgs.filter(isPython);
const runTap = allArgs.length === 0 || args.length > 0;
const runPython =
  process.env.TESSERA_TEST_PYTHON !== undefined && process.env.TESSERA_TEST_PYTHON !== ''
    ? process.env.TESSERA_TEST_PYTHON !== '0'
    : allArgs.length === 0 || pythonArgs.length > 0 || args.some((a) => /(^|\/)test\/client-[^/]*\.test\.ts$/.test(a));
const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');

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
let passed = 0;
let failed = 0;
let skipped = 0;
let code = 0;

async function runTapSuite() {
  const raw = createWriteStream(path.join(root, '.tap', 'last-run.tap'));
  const tap = spawn(process.execPath, [path.join(root, 'node_modules', 'tap', 'dist', 'esm', 'run.mjs'), '--reporter=tap', ...args], {
    cwd: root,
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
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
  const exit = await new Promise((resolve) => tap.on('close', (c, signal) => resolve(c ?? (signal ? 1 : 0))));
  parser.end();
  raw.end();
  if (exit !== 0 && failed === 0) failed = 1; // the runner itself failed (a file crashed before any assertion)
  return exit;
}

const unescapeXml = (s) =>
  s.replace(/&(lt|gt|quot|apos|amp|#(\d+)|#x([0-9a-f]+));/gi, (m, name, dec, hex) =>
    dec
      ? String.fromCodePoint(Number(dec))
      : hex
        ? String.fromCodePoint(parseInt(hex, 16))
        : { lt: '<', gt: '>', quot: '"', apos: "'", amp: '&' }[name.toLowerCase()],
  );

/**
 * The Python client's tests with Debian's python3 (TESSERA_TEST_PYTHON_BIN to choose another), read from
 * pytest's JUnit XML. A python without pytest, or a pytest that ends without a report, counts as a failure.
 */
async function runPytest() {
  const python = process.env.TESSERA_TEST_PYTHON_BIN || (existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3');
  const report = path.join(root, '.tap', 'pytest.xml');
  const log = path.join(root, '.tap', 'pytest.log');
  rmSync(report, { force: true });
  const targets = pythonArgs.length ? pythonArgs : ['clients/python/tests'];
  const out = createWriteStream(log);
  const child = spawn(python, ['-m', 'pytest', ...targets, '-q', '-p', 'no:cacheprovider', `--junitxml=${report}`], {
    cwd: root,
    env: { ...env, TESSERA_TEST_NODE: process.execPath, PYTHONDONTWRITEBYTECODE: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let tail = '';
  const keep = (chunk) => {
    out.write(chunk);
    tail = (tail + chunk).slice(-4000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const timer = setTimeout(() => child.kill('SIGKILL'), 5 * 60_000);
  const exit = await new Promise((resolve) => {
    child.on('error', (err) => resolve(`cannot run ${python}: ${err.message}`));
    child.on('close', (c, signal) => resolve(c ?? `killed by ${signal}`));
  });
  clearTimeout(timer);
  out.end();
  if (!existsSync(report)) {
    failed++;
    console.log(`not ok - clients/python/tests: pytest did not run (${exit})`);
    if (/No module named pytest/.test(tail)) {
      console.log(
        `    ${python} has no pytest: apt-get install python3-pytest python3-requests python3-jwt python3-httpx python3-keyring python3-cryptography`,
      );
    }
    for (const line of tail.trim().split('\n').slice(-20)) console.log(`    ${line}`);
    return;
  }
  const xml = readFileSync(report, 'utf8');
  let p = 0;
  let f = 0;
  for (const m of xml.matchAll(/<testcase\b([^>]*?)(?:\/>|>([\s\S]*?)<\/testcase>)/g)) {
    const attrs = m[1];
    const body = m[2] ?? '';
    const attr = (n) => unescapeXml(new RegExp(`\\b${n}="([^"]*)"`).exec(attrs)?.[1] ?? '');
    if (/<skipped\b/.test(body)) {
      skipped++;
      continue;
    }
    const bad = /<(failure|error)\b([^>]*?)(?:\/>|>([\s\S]*?)<\/\1>)/.exec(body);
    if (!bad) {
      p++;
      continue;
    }
    f++;
    console.log(`not ok - python: ${attr('classname')}::${attr('name')}`);
    const text = unescapeXml(bad[3] ?? /message="([^"]*)"/.exec(bad[2])?.[1] ?? '');
    for (const line of text.split('\n').slice(-40)) console.log(`    ${line}`);
  }
  passed += p;
  failed += f;
  if (exit !== 0 && f === 0) {
    failed++;
    console.log(`not ok - clients/python/tests: pytest exited ${exit} (see .tap/pytest.log)`);
    for (const line of tail.trim().split('\n').slice(-20)) console.log(`    ${line}`);
  }
  console.log(`${exit === 0 && f === 0 ? 'ok' : 'not ok'} - clients/python/tests (${p} passed, ${f} failed)`);
  if (exit !== 0 && code === 0) code = 1;
}

if (runTap) code = await runTapSuite();
if (runPython) await runPytest();

if (embedded) {
  await embedded.stop().catch(() => undefined);
  rmSync(tmp, { recursive: true, force: true });
}
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(code === 0 && failed === 0 ? 0 : 1);
