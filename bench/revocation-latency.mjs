// Time from an acknowledged revocation to its refusal by two locally-verifying verifiers, each
// subscribed to a different Tessera instance (one database). Kinds: access token revoked, SDK key
// disabled, user suspended, session ended (each in turn, `count` in all), then signing key revoked
// (a few: each needs a rotation). Writes bench/results/revocation-latency.md. Run after `npm run build`:
//   node bench/revocation-latency.mjs [count] [signing-key revocations]     (default 200 5)
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = (p) => import(path.join(ROOT, 'dist', 'src', p));
const { startEmbeddedPostgres } = await dist('platform/database/embedded.js');
const { createDb } = await dist('platform/database/database.js');
const { migrateToLatest } = await dist('platform/database/migrate.js');
const { loadConfig } = await dist('platform/config.js');
const { buildApp } = await dist('app.js');
const { createUser } = await dist('identity/users.repository.js');
const { issueApiToken } = await dist('api-tokens/api-tokens.service.js');
const { createVerifier, TesseraVerifyError } = await dist('client/index.js');

const COUNT = Number(process.argv[2] ?? 200);
const KEY_REVOCATIONS = Number(process.argv[3] ?? 5);
const freePort = () =>
  new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const basic = (id, secret) => `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;

const work = mkdtempSync(path.join(os.tmpdir(), 'tessera-revlat-'));
chmodSync(work, 0o711);
const pg = await startEmbeddedPostgres({ dataDir: work, port: await freePort(), ephemeral: true });
const portA = await freePort();
const issuer = `http://127.0.0.1:${portA}`;
const { config } = loadConfig({
  DATABASE_URL: pg.connectionString,
  TESSERA_MASTER_KEY: randomBytes(32).toString('base64'),
  TESSERA_PEPPER: randomBytes(32).toString('base64'),
  TESSERA_ISSUER: issuer,
  TESSERA_LOG_LEVEL: 'silent',
  TESSERA_RATE_LIMIT: 'false',
});
const admin = createDb({ connectionString: pg.connectionString, max: 2 });
await migrateToLatest(admin.db);
const apps = [];
const handles = [admin];
async function start(port) {
  const handle = createDb({ connectionString: pg.connectionString, max: 10 });
  handles.push(handle);
  const app = await buildApp({ config, db: handle.db, connectionString: pg.connectionString, logger: false });
  apps.push(app);
  await app.ready();
  await app.jobs.start();
  await app.listen({ port, host: '127.0.0.1' });
  return `http://127.0.0.1:${port}`;
}
const urlA = await start(portA);
const urlB = await start(await freePort());

const u = await createUser(admin.db, { email: 'bench@example.com', name: 'Bench' });
const { token: apiToken } = await issueApiToken(admin.db, config.pepper, {
  userId: u.id,
  name: 'bench',
  scopes: ['api', 'events:read', 'admin'],
  expiresAt: null,
});
const json = (url, method, body, token = apiToken) =>
  fetch(url, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
const form = { 'content-type': 'application/x-www-form-urlencoded' };
const mkKey = async (token = apiToken) => (await json(`${urlA}/api/sdk-keys`, 'POST', { name: 'k', scopes: ['api'] }, token)).json();
let users = 0;
/** A fresh user's API token (each user may hold two SDK keys). */
const freshUser = async () => {
  const x = await createUser(admin.db, { email: `bench${++users}@example.com`, name: 'Bench' });
  return { id: x.id, token: (await issueApiToken(admin.db, config.pepper, { userId: x.id, name: 'bench', scopes: ['api'], expiresAt: null })).token };
};
const freshToken = async () => (await freshUser()).token;
const mint = async (key) =>
  (
    await (
      await fetch(`${urlA}/oauth/token`, {
        method: 'POST',
        headers: { ...form, authorization: basic(key.client_id, key.client_secret) },
        body: 'grant_type=client_credentials',
      })
    ).json()
  ).access_token;

const verifiers = [
  createVerifier({
    issuer,
    audience: issuer,
    jwksCooldownMs: 100,
    revocations: 'stream',
    events: { auth: async () => apiToken, url: `${urlA}/events/stream` },
  }),
  createVerifier({
    issuer,
    audience: issuer,
    jwksUri: `${urlB}/.well-known/jwks.json`,
    jwksCooldownMs: 100,
    revocations: 'stream',
    events: { auth: async () => apiToken, url: `${urlB}/events/stream` },
  }),
];
await Promise.all(verifiers.map((v) => v.revocationStream.ready()));
const outcome = async (v, tok) => {
  try {
    await v.verify(tok);
    return 'ok';
  } catch (err) {
    if (err instanceof TesseraVerifyError) return err.reason;
    throw err;
  }
};
/** ms from `t0` until both verifiers refuse `tok` for one of `reasons` (polled every ms). */
async function refusedAfter(tok, t0, reasons = ['revoked']) {
  const done = [null, null];
  while (done.some((d) => d === null)) {
    for (let i = 0; i < 2; i++) if (done[i] === null && reasons.includes(await outcome(verifiers[i], tok))) done[i] = performance.now() - t0;
    if (performance.now() - t0 > 10_000) throw new Error('not refused within 10 s');
    await sleep(1);
  }
  return done;
}

const control = await mkKey();
let controlToken = await mint(control);
const samples = { token_revoked: [], sdk_key_disabled: [], user_suspended: [], session_ended: [], signing_key_revoked: [] };
const KINDS = ['token_revoked', 'token_revoked', 'token_revoked', 'token_revoked', 'token_revoked', 'token_revoked'];
KINDS.push('sdk_key_disabled', 'sdk_key_disabled', 'user_suspended', 'session_ended');
let falseRejections = 0;
const keyPool = [];
for (let i = 0; i < COUNT + KEY_REVOCATIONS; i++) {
  const kind = i >= COUNT ? 'signing_key_revoked' : KINDS[i % KINDS.length];
  if (kind === 'token_revoked') {
    const key = keyPool[0] ?? (keyPool[0] = await mkKey());
    const tok = await mint(key);
    const t0 = performance.now();
    const r = await fetch(`${urlA}/oauth/revoke`, {
      method: 'POST',
      headers: { ...form, authorization: basic(key.client_id, key.client_secret) },
      body: `token=${tok}`,
    });
    if (r.status !== 200) throw new Error(`revoke ${r.status}`);
    samples[kind].push(...(await refusedAfter(tok, t0)));
  } else if (kind === 'sdk_key_disabled') {
    const owner = await freshToken();
    const key = await mkKey(owner);
    const tok = await mint(key);
    const t0 = performance.now();
    const r = await json(`${urlA}/api/sdk-keys/${key.client_id}`, 'PATCH', { status: 'disabled' }, owner);
    if (r.status !== 200) throw new Error(`disable ${r.status}`);
    samples[kind].push(...(await refusedAfter(tok, t0)));
  } else if (kind === 'user_suspended') {
    const owner = await freshUser();
    const tok = await mint(await mkKey(owner.token));
    const t0 = performance.now();
    const r = await json(`${urlA}/admin/users/${owner.id}/suspend`, 'POST');
    if (r.status !== 200) throw new Error(`suspend ${r.status}`);
    samples[kind].push(...(await refusedAfter(tok, t0)));
  } else if (kind === 'session_ended') {
    // A session token is opaque: the verifiers confirm it with Tessera and reuse the answer for a
    // few seconds; the session-revoked event drops that answer, so the next check asks again.
    const owner = await freshToken();
    const login = await fetch(`${urlA}/api/users/loginWithToken`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ apiToken: owner }),
    });
    if (login.status !== 200) throw new Error(`login ${login.status}`);
    const session = (await login.json()).id;
    for (const v of verifiers) if ((await outcome(v, session)) !== 'ok') throw new Error('a fresh session was refused');
    const t0 = performance.now();
    const r = await fetch(`${urlA}/api/users/logout`, { method: 'POST', headers: { 'x-access-token': session } });
    if (r.status !== 204) throw new Error(`logout ${r.status}`);
    samples[kind].push(...(await refusedAfter(session, t0)));
  } else {
    // The token is signed by the key about to be revoked; the control token is re-issued under the
    // key that replaces it, so it must stay accepted.
    const tok = await mint(control);
    const kid = JSON.parse(Buffer.from(tok.split('.')[0], 'base64url').toString()).kid;
    const rot = await json(`${urlA}/admin/keys/rotate`, 'POST', { immediate: true });
    if (rot.status !== 200 && rot.status !== 201) throw new Error(`rotate ${rot.status}`);
    controlToken = await mint(control);
    // Both instances publish the new key within moments (their change listener); wait for the verifiers to take it.
    const until = performance.now() + 10_000;
    for (const v of verifiers) {
      while ((await outcome(v, controlToken)) !== 'ok') {
        if (performance.now() > until) throw new Error('the new key is not accepted within 10 s');
        await sleep(50);
      }
    }
    const t0 = performance.now();
    const r = await json(`${urlA}/admin/keys/${kid}/revoke`, 'POST');
    if (r.status !== 200) throw new Error(`revoke key ${r.status}`);
    // Refused as revoked (the event) or as signed by a key no longer published (a JWKS refetch).
    samples[kind].push(...(await refusedAfter(tok, t0, ['revoked', 'unknown_kid'])));
  }
  for (const v of verifiers) if ((await outcome(v, controlToken)) !== 'ok') falseRejections++;
}

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
const all = Object.values(samples).flat();
const row = (name, xs) => `| ${name} | ${xs.length} | ${pct(xs, 50).toFixed(1)} | ${pct(xs, 99).toFixed(1)} | ${Math.max(...xs).toFixed(1)} |`;
const md = [
  '# Revocation latency: acknowledged revocation -> refused by two stream-subscribed verifiers',
  '',
  `Two Tessera instances on one embedded Postgres, two TypeScript verifiers (one per instance), ${COUNT + KEY_REVOCATIONS} revocations made on instance A,`,
  `each measured at both verifiers (${all.length} samples). Same machine, loopback. ${new Date().toISOString()}, ${os.cpus().length} CPUs, load average ${os
    .loadavg()
    .map((l) => l.toFixed(1))
    .join(' / ')} at the end.`,
  '',
  '| kind | samples | p50 ms | p99 ms | max ms |',
  '|---|---|---|---|---|',
  row('access token revoked', samples.token_revoked),
  row('SDK key disabled', samples.sdk_key_disabled),
  row('user suspended', samples.user_suspended),
  row('session ended (logout)', samples.session_ended),
  row('signing key revoked', samples.signing_key_revoked),
  row('all', all),
  '',
  `False rejections of an unaffected token: ${falseRejections} (checked after every revocation on both verifiers).`,
  '',
].join('\n');
mkdirSync(path.join(ROOT, 'bench', 'results'), { recursive: true });
writeFileSync(path.join(ROOT, 'bench', 'results', 'revocation-latency.md'), md);
process.stdout.write(md);

for (const v of verifiers) v.close();
for (const a of apps.reverse()) await a.close();
for (const h of handles) await h.close();
await pg.stop();
rmSync(work, { recursive: true, force: true });
