#!/usr/bin/env node
// Soak: two Tessera instances on one embedded Postgres, loopback only, for SOAK_SECONDS
// (default 120). Mixes token issuance, verification (API, gateway, introspection), revocation and
// login/use/logout across instances, and checks every answer against what it must be (a revoked
// token or a logged-out session must be refused on the *other* instance at once). Samples each
// instance's RSS. Writes bench/results/soak-latest.md; exits 1 on any unexpected answer or
// unbounded memory growth.
//
// Key rotation: mixed in when `POST /admin/keys/rotate` exists on this build; otherwise skipped
// (noted in the report).
//
// usage: npm run soak        env: SOAK_SECONDS (default 120), SOAK_CONCURRENCY (default 8)
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir, cpus, totalmem } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { startEmbeddedPostgres } from '../dist/src/platform/database/embedded.js';
import { createDb } from '../dist/src/platform/database/database.js';
import { migrateToLatest } from '../dist/src/platform/database/migrate.js';
import { createUser } from '../dist/src/identity/users.repository.js';
import { issueApiToken } from '../dist/src/api-tokens/api-tokens.service.js';
import { freePort, startNode, waitReady, stopAll, killAllNow, tail } from './lib/procs.mjs';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const SECONDS = Number(process.env.SOAK_SECONDS ?? 120);
const CONCURRENCY = Number(process.env.SOAK_CONCURRENCY ?? 8);
const USERS = 20;
if (!(SECONDS > 0 && SECONDS <= 1800)) throw new Error('SOAK_SECONDS must be between 1 and 1800');

const work = mkdtempSync(path.join(tmpdir(), 'tessera-soak-'));
let pg = null;
const cleanup = async () => {
  await stopAll(10_000).catch(() => killAllNow());
  await pg?.stop().catch(() => undefined);
  rmSync(work, { recursive: true, force: true });
};
process.on('SIGINT', () => {
  killAllNow();
  process.exit(130);
});

const log = (m) => process.stderr.write(`[soak] ${m}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function rssMb(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

function percentile(sorted, p) {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))];
}

try {
  log(`embedded Postgres in ${work}`);
  pg = await startEmbeddedPostgres({ dataDir: work, port: await freePort(), ephemeral: true });
  const env = {
    ...process.env,
    DATABASE_URL: pg.connectionString,
    TESSERA_MASTER_KEY: randomBytes(32).toString('base64'),
    TESSERA_PEPPER: randomBytes(32).toString('base64'),
    TESSERA_ISSUER: 'http://tessera.soak',
    TESSERA_HOST: '127.0.0.1',
    TESSERA_LOG_LEVEL: 'warn',
    // Loopback load comes from one IP: the per-IP limits would answer 429 by design.
    TESSERA_RATE_LIMIT: 'false',
  };
  const handle = createDb({ connectionString: pg.connectionString, max: 2 });
  await migrateToLatest(handle.db);
  const pepper = Buffer.from(env.TESSERA_PEPPER, 'utf8');
  const users = [];
  for (let i = 0; i < USERS; i++) {
    const u = await createUser(handle.db, { email: `soak${i}@example.com`, name: `Soak ${i}` });
    const { token } = await issueApiToken(handle.db, pepper, { userId: u.id, name: 'soak', scopes: ['api', 'introspect'], expiresAt: null });
    users.push({ id: u.id, apiToken: token });
  }
  const admin = await createUser(handle.db, { email: 'ops@example.com', name: 'Ops' });
  const adminToken = (await issueApiToken(handle.db, pepper, { userId: admin.id, name: 'ops', scopes: ['api', 'admin'], expiresAt: null })).token;
  await handle.close();

  const servers = [];
  for (const name of ['a', 'b']) {
    const port = await freePort();
    const proc = startNode(`tessera-${name}`, [path.join(root, 'dist', 'src', 'cli.js'), 'serve'], {
      env: { ...env, PORT: String(port) },
      cwd: root,
      logFile: path.join(work, `${name}.log`),
    });
    servers.push({ name, port, url: `http://127.0.0.1:${port}`, proc });
  }
  for (const s of servers) await waitReady(s.proc, `${s.url}/readyz`, 60_000);
  log(`instances on :${servers.map((s) => s.port).join(', :')}`);

  const req = async (s, method, p, { headers = {}, body, json } = {}) => {
    const res = await fetch(`${s.url}${p}`, {
      method,
      headers: { ...(json !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
      body: json !== undefined ? JSON.stringify(json) : body,
      signal: AbortSignal.timeout(10_000),
    });
    const text = await res.text();
    return { status: res.status, text };
  };
  const form = { 'content-type': 'application/x-www-form-urlencoded' };
  const basic = (id, secret) => `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;

  // One SDK key per user, made through the API.
  for (const [i, u] of users.entries()) {
    const r = await req(servers[i % 2], 'POST', '/api/sdk-keys', { headers: { authorization: `Bearer ${u.apiToken}` }, json: { name: 'soak' } });
    if (r.status !== 201) throw new Error(`sdk key: ${r.status} ${r.text}`);
    const k = JSON.parse(r.text);
    u.auth = basic(k.client_id, k.client_secret);
  }
  const rotateProbe = await req(servers[0], 'POST', '/admin/keys/rotate', { headers: { authorization: `Bearer ${adminToken}` }, json: {} });
  const rotation = rotateProbe.status !== 404 && rotateProbe.status !== 405;
  log(rotation ? 'key rotation mixed in' : 'POST /admin/keys/rotate does not exist on this build: rotation skipped');

  // Operations: each returns a list of [label, ok] checks.
  const ops = {
    async issue(a, b, u) {
      const r = await req(a, 'POST', '/oauth/token', { headers: { ...form, authorization: u.auth }, body: 'grant_type=client_credentials' });
      return [['issue 200', r.status === 200]];
    },
    async verify(a, b, u) {
      const t = await req(a, 'POST', '/oauth/token', { headers: { ...form, authorization: u.auth }, body: 'grant_type=client_credentials' });
      if (t.status !== 200) return [['issue 200', false]];
      const jwt = JSON.parse(t.text).access_token;
      const api = await req(b, 'GET', '/api/users/me', { headers: { authorization: `Bearer ${jwt}` } });
      const gw = await req(b, 'GET', '/gateway/verify', { headers: { authorization: `Bearer ${jwt}` } });
      const intro = await req(b, 'POST', '/oauth/introspect', { headers: { ...form, authorization: u.auth }, body: `token=${jwt}` });
      return [
        ['api 200', api.status === 200],
        ['gateway 200', gw.status === 200],
        ['introspect active', intro.status === 200 && JSON.parse(intro.text).active === true],
      ];
    },
    async revoke(a, b, u) {
      const t = await req(a, 'POST', '/oauth/token', { headers: { ...form, authorization: u.auth }, body: 'grant_type=client_credentials' });
      if (t.status !== 200) return [['issue 200', false]];
      const jwt = JSON.parse(t.text).access_token;
      const rv = await req(a, 'POST', '/oauth/revoke', { headers: { ...form, authorization: u.auth }, body: `token=${jwt}` });
      // The denylist reaches the other instance by NOTIFY; within a second by contract.
      await sleep(1000);
      const after = await req(b, 'GET', '/api/users/me', { headers: { authorization: `Bearer ${jwt}` } });
      return [
        ['revoke 200', rv.status === 200],
        ['revoked token 401 on the other instance within 1 s', after.status === 401],
      ];
    },
    async session(a, b, u) {
      const l = await req(a, 'POST', '/api/users/loginWithToken', { json: { apiToken: u.apiToken } });
      if (l.status !== 200) return [['login 200', false]];
      const id = JSON.parse(l.text).id;
      const use1 = await req(b, 'GET', '/api/users/me', { headers: { 'x-access-token': id } });
      const use2 = await req(b, 'GET', '/gateway/verify', { headers: { 'x-access-token': id } });
      const out = await req(a, 'POST', '/api/users/logout', { headers: { 'x-access-token': id } });
      // A logout is in force everywhere as soon as its 204 is seen (freshness barrier): no wait.
      const after = await req(b, 'GET', '/api/users/me', { headers: { 'x-access-token': id } });
      const afterGw = await req(b, 'GET', '/gateway/verify', { headers: { 'x-access-token': id } });
      return [
        ['login 200', true],
        ['session use 200', use1.status === 200 && use2.status === 200],
        ['logout 204', out.status === 204],
        ['logged-out 401 on the other instance at once', after.status === 401 && afterGw.status === 401],
      ];
    },
    async rotate(a) {
      const r = await req(a, 'POST', '/admin/keys/rotate', { headers: { authorization: `Bearer ${adminToken}` }, json: {} });
      return [['rotate 2xx', r.status >= 200 && r.status < 300]];
    },
  };
  const weights = [['issue', 40], ['verify', 30], ['session', 20], ['revoke', 5], ...(rotation ? [['rotate', 0.05]] : [])];
  const totalWeight = weights.reduce((a, [, w]) => a + w, 0);
  const pick = () => {
    let x = Math.random() * totalWeight;
    for (const [n, w] of weights) if ((x -= w) < 0) return n;
    return weights[0][0];
  };

  const stats = new Map(); // op -> { n, latencies[] }
  const checks = new Map(); // label -> { ok, bad }
  const failures = [];
  const rss = []; // { t, a, b }
  const started = Date.now();
  const deadline = started + SECONDS * 1000;
  const sampler = setInterval(
    () => rss.push({ t: Math.round((Date.now() - started) / 1000), a: rssMb(servers[0].proc.pid), b: rssMb(servers[1].proc.pid) }),
    2000,
  );
  let progress = 0;
  const worker = async (w) => {
    while (Date.now() < deadline) {
      const name = pick();
      const u = users[Math.floor(Math.random() * users.length)];
      const [a, b] = Math.random() < 0.5 ? servers : [servers[1], servers[0]];
      const t0 = performance.now();
      let result;
      try {
        result = await ops[name](a, b, u);
      } catch (err) {
        result = [[`${name}: request error`, false]];
        if (failures.length < 50) failures.push(`${name}: ${err.message}`);
      }
      const ms = performance.now() - t0;
      let st = stats.get(name);
      if (!st) stats.set(name, (st = { n: 0, latencies: [] }));
      st.n++;
      if (st.latencies.length < 200_000) st.latencies.push(ms);
      for (const [label, ok] of result) {
        let c = checks.get(label);
        if (!c) checks.set(label, (c = { ok: 0, bad: 0 }));
        if (ok) c.ok++;
        else {
          c.bad++;
          if (failures.length < 50) failures.push(`${name} on ${a.name}/${b.name}: ${label}`);
        }
      }
      if (w === 0 && Date.now() - started > (progress + 10) * 1000) {
        progress += 10;
        log(`${progress} s: ${[...stats].map(([n, s]) => `${n} ${s.n}`).join(', ')}`);
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, (_, i) => worker(i)));
  clearInterval(sampler);
  const elapsed = (Date.now() - started) / 1000;
  const alive = servers.every((s) => s.proc.exitCode === null);

  // Memory: after a warm-up fifth, the last quarter's mean against the first quarter's.
  const steady = rss.slice(Math.floor(rss.length / 5));
  const q = Math.max(1, Math.floor(steady.length / 4));
  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const memory = ['a', 'b'].map((k) => {
    const first = mean(steady.slice(0, q).map((s) => s[k]));
    const last = mean(steady.slice(-q).map((s) => s[k]));
    const peak = Math.max(...rss.map((s) => s[k]));
    const growth = last - first;
    return { k, first, last, peak, growth, stable: growth < Math.max(30, first * 0.2) };
  });
  const unexpected = [...checks.values()].reduce((a, c) => a + c.bad, 0);
  const pass = unexpected === 0 && alive && memory.every((m) => m.stable);

  const f1 = (x) => x.toFixed(1);
  const lines = [];
  lines.push('# Soak: latest result', '');
  lines.push(
    `${new Date().toISOString()} · ${f1(elapsed)} s · ${CONCURRENCY} workers · 2 instances on one embedded Postgres · loopback · ${cpus().length} CPUs, ${Math.round(totalmem() / 2 ** 30)} GiB`,
  );
  lines.push(
    '',
    `**Verdict: ${pass ? 'PASS' : 'FAIL'}** — ${unexpected} unexpected answers; instances ${alive ? 'alive' : 'DIED'}; memory ${memory.every((m) => m.stable) ? 'stable' : 'GROWING'}.`,
  );
  lines.push(
    '',
    `Command: \`SOAK_SECONDS=${SECONDS} npm run soak\`. Key rotation: ${rotation ? 'mixed in (POST /admin/keys/rotate)' : 'skipped — `POST /admin/keys/rotate` does not exist on this build (enable after the rotation branch lands)'}.`,
  );
  lines.push('', '## Operations', '', '| operation | count | per s | p50 ms | p99 ms |', '|---|---:|---:|---:|---:|');
  for (const [n, s] of [...stats].sort()) {
    const sorted = [...s.latencies].sort((a, b) => a - b);
    lines.push(`| ${n} | ${s.n} | ${f1(s.n / elapsed)} | ${f1(percentile(sorted, 50))} | ${f1(percentile(sorted, 99))} |`);
  }
  lines.push(
    '',
    'An operation is a sequence of requests (`verify`: issue, then API, gateway and introspection on the other instance; `session`: login, two uses on the other instance, logout, two uses after it; `revoke`: issue, revoke, 1 s, use on the other instance).',
  );
  lines.push('', '## Checks', '', '| check | passed | failed |', '|---|---:|---:|');
  for (const [label, c] of [...checks].sort()) lines.push(`| ${label} | ${c.ok} | ${c.bad} |`);
  lines.push(
    '',
    '## Memory (RSS, MB)',
    '',
    '| instance | first quarter (after warm-up) | last quarter | growth | peak | stable |',
    '|---|---:|---:|---:|---:|---|',
  );
  for (const m of memory) lines.push(`| ${m.k} | ${f1(m.first)} | ${f1(m.last)} | ${f1(m.growth)} | ${f1(m.peak)} | ${m.stable ? 'yes' : 'NO'} |`);
  lines.push('', `Samples every 2 s: ${rss.map((s) => `${s.t}s ${Math.round(s.a)}/${Math.round(s.b)}`).join(', ')}`);
  if (failures.length) lines.push('', '## First failures', '', ...failures.map((f) => `- ${f}`));
  mkdirSync(path.join(root, 'bench', 'results'), { recursive: true });
  writeFileSync(path.join(root, 'bench', 'results', 'soak-latest.md'), lines.join('\n') + '\n');
  console.log(lines.join('\n'));
  if (!alive) for (const s of servers) console.error(tail(s.proc.logFile));
  await cleanup();
  process.exit(pass ? 0 : 1);
} catch (err) {
  console.error(err);
  await cleanup();
  process.exit(1);
}
