// `npm run bench`: Tessera side by side with panva's oidc-provider and a reference ceiling.
// See bench/README.md. Loopback only; every child process is stopped on the way out.
import { execFileSync, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { loadOptions } from './lib/options.mjs';
import {
  clusterCpuSeconds,
  cpuSeconds,
  freePort,
  killAllNow,
  memory,
  postmasterPid,
  runNode,
  startNode,
  stopAll,
  stopProc,
  tail,
  waitReady,
} from './lib/procs.mjs';
import { basic, buildScenarios, judgeTargets } from './lib/scenarios.mjs';
import { DPOP_ALG, dpopKey, dpopProof } from './lib/dpop-proofs.mjs';
import { setupClientFor } from './lib/header-each.mjs';
import { median, renderMarkdown, rowAt, SERVER_NAMES } from './lib/report.mjs';
import { populationCredential } from './lib/population.mjs';
import { renderCharts } from './lib/charts.mjs';
import { proofCheckRate, signRate } from './tools/sign-rate.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// BENCH_RESULTS_DIR: another folder for the results (the smoke test writes to a temporary one).
const RESULTS = process.env.BENCH_RESULTS_DIR || path.join(ROOT, 'bench', 'results');
const log = (m) => process.stderr.write(`[bench] ${m}\n`);

class BenchError extends Error {}

const opts = loadOptions();
const work = mkdtempSync(path.join(os.tmpdir(), 'tessera-bench-'));
// As root, embedded Postgres runs as `postgres`, which must traverse into the data folder.
chmodSync(work, 0o711);
let currentLoad = null;
let aborted = null;
/** Data folders of the embedded clusters the bench's Tessera servers started (stopped on the way out). */
const pgDirs = [path.join(work, 'tessera', 'pg')];

// ---- cleanup on every way out ---------------------------------------------------------------
let cleaning = null;
/** The revocation flow's process (bench/tools/revocation-flow.mjs), when --revocations-per-second is set. */
let flowChild = null;
function cleanup() {
  return (cleaning ??= (async () => {
    currentLoad?.stop?.();
    flowChild?.kill('SIGTERM');
    await stopAll(20_000);
    // Tessera stops its Postgres on SIGTERM; if Tessera had to be killed, stop the cluster here.
    for (const dir of pgDirs) {
      const pm = postmasterPid(dir);
      if (!pm || cpuSeconds(pm) === null) continue;
      try {
        process.kill(pm, 'SIGINT');
      } catch {
        // gone
      }
      for (let i = 0; i < 40 && cpuSeconds(pm) !== null; i++) await new Promise((r) => setTimeout(r, 250));
      if (cpuSeconds(pm) !== null) process.kill(pm, 'SIGKILL');
    }
    if (opts.keep) log(`kept ${work}`);
    else rmSync(work, { recursive: true, force: true });
  })());
}
process.on('exit', () => {
  flowChild?.kill('SIGKILL');
  killAllNow();
  for (const dir of pgDirs) {
    const pm = postmasterPid(dir);
    if (!pm || cpuSeconds(pm) === null) continue;
    try {
      process.kill(pm, 'SIGQUIT');
    } catch {
      // gone
    }
  }
});
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => {
    log(`${sig}: stopping servers`);
    aborted = new BenchError(`interrupted by ${sig}`);
    cleanup().finally(() => process.exit(130));
  });
}

// ---- helpers --------------------------------------------------------------------------------
async function request(port, method, urlPath, { headers = {}, body } = {}) {
  const res = await fetch(`http://127.0.0.1:${port}${urlPath}`, { method, headers, body, signal: AbortSignal.timeout(15_000) });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, json, text };
}

/** true when the probe answered 2xx; a reason string when 404; throws on anything else. */
function probe(what, res) {
  if (res.status >= 200 && res.status < 300) return true;
  if (res.status === 404) return `${what} answered 404`;
  throw new BenchError(`${what} answered ${res.status}: ${res.text.slice(0, 300)}`);
}

function jwtHeader(token) {
  try {
    return JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString());
  } catch {
    return null;
  }
}

async function pool(items, concurrency, fn) {
  let i = 0;
  const results = new Array(items.length);
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (i < items.length) {
        if (aborted) throw aborted;
        const k = i++;
        results[k] = await fn(items[k], k);
      }
    }),
  );
  return results;
}

function gitCommit() {
  try {
    const sha = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src', 'migrations'], { cwd: ROOT, encoding: 'utf8' }).trim();
    return dirty ? `${sha}+dirty` : sha;
  } catch {
    return 'unknown';
  }
}

// ---- servers --------------------------------------------------------------------------------
function tesseraEnvFor(port, pgPort, dataDir) {
  const env = {
    ...process.env,
    PORT: String(port),
    TESSERA_HOST: '127.0.0.1',
    TESSERA_ISSUER: `http://127.0.0.1:${port}`,
    TESSERA_DATA_DIR: dataDir,
    TESSERA_EMBEDDED_PG_PORT: String(pgPort),
    TESSERA_LOG_LEVEL: 'warn',
    // One client, one IP, thousands of requests a second: the per-client and per-IP limits would
    // turn the bench into a rate-limit test. Everything else stays as in production.
    TESSERA_RATE_LIMIT: 'false',
  };
  delete env.DATABASE_URL;
  return env;
}

async function startServers(clientsFile) {
  const ports = { tessera: await freePort(), pg: await freePort(), peer: await freePort(), ceiling: await freePort() };
  const tesseraEnv = tesseraEnvFor(ports.tessera, ports.pg, path.join(work, 'tessera'));
  const serverEnv = (port) => ({ ...process.env, PORT: String(port), BENCH_CLIENTS_FILE: clientsFile });
  const procs = {
    tessera: startNode('tessera', [path.join(ROOT, 'dist/src/cli.js'), 'serve'], { env: tesseraEnv, cwd: ROOT, logFile: path.join(work, 'tessera.log') }),
    peer: startNode('oidc-provider', [path.join(ROOT, 'bench/servers/peer.mjs')], {
      env: serverEnv(ports.peer),
      cwd: ROOT,
      logFile: path.join(work, 'peer.log'),
    }),
    ceiling: startNode('ceiling', [path.join(ROOT, 'bench/servers/ceiling.mjs')], {
      env: serverEnv(ports.ceiling),
      cwd: ROOT,
      logFile: path.join(work, 'ceiling.log'),
    }),
  };
  await Promise.all([
    waitReady(procs.tessera, `http://127.0.0.1:${ports.tessera}/healthz`, 180_000),
    waitReady(procs.peer, `http://127.0.0.1:${ports.peer}/jwks`, 120_000),
    waitReady(procs.ceiling, `http://127.0.0.1:${ports.ceiling}/healthz`, 60_000),
  ]);
  const pm = postmasterPid(path.join(work, 'tessera', 'pg'));
  if (!pm) throw new BenchError("could not find the embedded Postgres postmaster of Tessera's data folder");
  // The HTTP floor is a route of the ceiling's process.
  procs.floor = procs.ceiling;
  return { ports, procs, tesseraEnv, pgPid: pm };
}

// ---- population ------------------------------------------------------------------------------
/**
 * The population phase: the main Tessera stops; a Tessera on a cached data folder (BENCH_CACHE,
 * one folder per fixture size, reused between runs) gets the fixture (bench/population.mjs: built, or
 * reused when pepper, seed and size match), is stopped, and is started again, timed from spawn to
 * /readyz 200 (the cold start: embedded Postgres, migrations check, signing keys, listener). That
 * Tessera then serves the cc-pop scenario.
 */
async function populationPhase() {
  const keys = opts.population;
  const root = opts.cache ?? path.join(os.tmpdir(), 'tessera-bench-cache');
  const dir = path.join(root, `population-${keys}`);
  mkdirSync(dir, { recursive: true });
  // Embedded Postgres runs as `postgres` under root and must traverse into the data folder.
  chmodSync(root, 0o711);
  chmodSync(dir, 0o711);
  pgDirs.push(path.join(dir, 'tessera', 'pg'));
  log('population: stopping the main Tessera');
  await stopProc(servers.procs.tessera);
  const port = await freePort();
  const env = tesseraEnvFor(port, await freePort(), path.join(dir, 'tessera'));
  const logFile = path.join(work, 'tessera-population.log');
  const start = async () => {
    const t0 = performance.now();
    const proc = startNode('tessera (population)', [path.join(ROOT, 'dist/src/cli.js'), 'serve'], { env, cwd: ROOT, logFile });
    await waitReady(proc, `http://127.0.0.1:${port}/readyz`, 600_000, 50);
    return { proc, seconds: (performance.now() - t0) / 1000 };
  };
  log(`population: Tessera on ${dir}`);
  let { proc } = await start();
  const seedFile = path.join(dir, 'seed');
  log(`population: ${keys.toLocaleString('en-US')} SDK keys for ${Math.ceil(keys / 2).toLocaleString('en-US')} users (built once, then reused)`);
  const built = JSON.parse(
    await runNode([path.join(ROOT, 'bench/population.mjs'), '--keys', String(keys), '--seed-file', seedFile], { env, cwd: ROOT, timeoutMs: 3_600_000 }),
  );
  log(`  ${built.reused ? 'reused' : 'built'} (${built.method}, build took ${built.buildSeconds.toFixed(1)} s)`);
  await stopProc(proc);
  log('population: cold start to /readyz');
  const cold = await start();
  proc = cold.proc;
  log(`  ready in ${cold.seconds.toFixed(2)} s`);
  const pm = postmasterPid(path.join(dir, 'tessera', 'pg'));
  if (!pm) throw new BenchError("could not find the embedded Postgres postmaster of the population's data folder");
  servers.procs.tessera = proc;
  servers.pgPid = pm;
  const seed = Buffer.from(readFileSync(seedFile, 'utf8').trim(), 'base64');
  const auth = new Array(Math.max(...opts.popClients));
  for (let i = 0; i < auth.length; i++) {
    const c = populationCredential(seed, i);
    auth[i] = basic(c.client_id, c.client_secret);
  }
  const check = async (i) => {
    const res = await request(port, 'POST', '/oauth/token', {
      headers: { authorization: auth[i], 'content-type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=client_credentials',
    });
    if (res.status !== 200) throw new BenchError(`population key ${i} got ${res.status} from POST /oauth/token: ${res.text.slice(0, 300)}`);
  };
  await check(0);
  await check(auth.length - 1);
  fixtures.population = { port, auth, available: true, keys, built, coldStartSeconds: cold.seconds, memoryAfterStart: memory(proc.pid), env, dir };
}

// ---- fixtures -------------------------------------------------------------------------------
async function tesseraFixtures(ports, env, wantMany, clientCount) {
  const cli = (args) => runNode([path.join(ROOT, 'dist/src/cli.js'), ...args], { env, cwd: ROOT, timeoutMs: 120_000 });
  const t = { avail: {}, oneKey: null, manyKeys: null, jwt: null, session: null, mainToken: null, settings: {} };
  log('Tessera fixtures: bench user and API token through the CLI');
  await cli(['users', 'create', '--email', 'bench-main@bench.invalid', '--name', 'Bench main']);
  t.mainToken = JSON.parse(await cli(['tokens', 'create', '--user', 'bench-main@bench.invalid', '--scopes', 'api', '--name', 'bench'])).token;
  const bearer = { authorization: `Bearer ${t.mainToken}`, 'content-type': 'application/json' };

  // SDK keys and the token endpoint.
  const created = await request(ports.tessera, 'POST', '/api/sdk-keys', { headers: bearer, body: JSON.stringify({ name: 'bench-one' }) });
  t.avail.cc = probe('POST /api/sdk-keys', created);
  if (t.avail.cc === true) {
    if (!created.json?.client_id || !created.json?.client_secret)
      throw new BenchError(`POST /api/sdk-keys returned no client_id/client_secret: ${created.text.slice(0, 300)}`);
    t.oneKey = created.json;
    const tok = await request(ports.tessera, 'POST', '/oauth/token', {
      headers: { authorization: basic(t.oneKey.client_id, t.oneKey.client_secret), 'content-type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=client_credentials',
    });
    t.avail.cc = probe('POST /oauth/token', tok);
    if (t.avail.cc === true) {
      t.jwt = tok.json?.access_token;
      const h = t.jwt && jwtHeader(t.jwt);
      if (!h) throw new BenchError(`POST /oauth/token returned no JWT access_token: ${tok.text.slice(0, 300)}`);
      t.tokenHeader = h;
      // A DPoP-bound token for the DPoP verification scenario.
      t.dpopKey = dpopKey();
      const issuer = `http://127.0.0.1:${ports.tessera}`;
      const dtok = await request(ports.tessera, 'POST', '/oauth/token', {
        headers: {
          authorization: basic(t.oneKey.client_id, t.oneKey.client_secret),
          'content-type': 'application/x-www-form-urlencoded',
          dpop: dpopProof(t.dpopKey, 'POST', `${issuer}/oauth/token`),
        },
        body: 'grant_type=client_credentials',
      });
      t.avail.dpop = dtok.status === 200 && dtok.json?.token_type === 'DPoP' ? true : `POST /oauth/token with a DPoP proof answered ${dtok.status}`;
      if (t.avail.dpop === true) t.dpopJwt = dtok.json.access_token;
    }
  }

  // Users for the round-robin scenario: 2 SDK keys each (the per-user limit).
  const users = t.avail.cc === true && wantMany ? Math.ceil(clientCount / 2) : 0;
  log(users ? `Tessera fixtures: ${users} users with API tokens (Tessera's own code, straight to the database)` : 'Tessera fixtures: database settings');
  const outFile = path.join(work, 'fixture-users.json');
  await runNode([path.join(ROOT, 'bench/tessera-fixtures.mjs'), '--users', String(users), '--out', outFile], { env, cwd: ROOT, timeoutMs: 600_000 });
  const fixture = JSON.parse(readFileSync(outFile, 'utf8'));
  t.settings = fixture.settings;
  if (users) {
    log(`Tessera fixtures: ${clientCount} SDK keys through POST /api/sdk-keys`);
    const jobs = [];
    for (let i = 0; i < clientCount; i++) jobs.push({ user: fixture.users[i >> 1], n: i & 1 });
    const started = Date.now();
    t.manyKeys = await pool(jobs, 16, async ({ user, n }) => {
      const res = await request(ports.tessera, 'POST', '/api/sdk-keys', {
        headers: { authorization: `Bearer ${user.token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ name: `bench-${n}` }),
      });
      if (res.status < 200 || res.status > 299 || !res.json?.client_secret) {
        throw new BenchError(`POST /api/sdk-keys for ${user.email} answered ${res.status}: ${res.text.slice(0, 300)}`);
      }
      return { client_id: res.json.client_id, client_secret: res.json.client_secret };
    });
    // With --keep, the credentials stay beside the data for `bench/tools/load.mjs token <port> @<file>`.
    if (opts.keep) writeFileSync(path.join(work, 'tessera-keys.json'), JSON.stringify(t.manyKeys.map((k) => basic(k.client_id, k.client_secret))));
    t.bulkUsers = users;
    t.bulkSeconds = ((Date.now() - started) / 1000).toFixed(1);
    log(`  made in ${t.bulkSeconds} s`);
    log('Tessera fixtures: VACUUM (ANALYZE), as pgbench does before measuring');
    await runNode([path.join(ROOT, 'bench/tessera-fixtures.mjs'), '--vacuum'], { env, cwd: ROOT, timeoutMs: 600_000 });
    t.vacuumed = true;
  }

  // Sessions.
  const login = await request(ports.tessera, 'POST', '/api/users/loginWithToken', {
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ apiToken: t.mainToken }),
  });
  t.avail.login = probe('POST /api/users/loginWithToken', login);
  if (t.avail.login === true) {
    t.session = login.json?.id;
    if (typeof t.session !== 'string') throw new BenchError(`loginWithToken returned no id: ${login.text.slice(0, 300)}`);
  }

  // Gateway: probe with whichever credential exists (a 404 means the route is missing).
  const cred = t.jwt ? { authorization: `Bearer ${t.jwt}` } : t.session ? { 'x-access-token': t.session } : { authorization: `Bearer ${t.mainToken}` };
  const gw = await request(ports.tessera, 'GET', '/gateway/verify', { headers: cred });
  t.avail.verify = gw.status === 404 ? 'GET /gateway/verify answered 404' : true;
  if (t.avail.verify === true) {
    if (t.jwt) probe('GET /gateway/verify with a JWT', gw);
    if (t.session)
      probe('GET /gateway/verify with a session token', await request(ports.tessera, 'GET', '/gateway/verify', { headers: { 'x-access-token': t.session } }));
  }

  const jwks = await request(ports.tessera, 'GET', '/.well-known/jwks.json');
  t.avail.jwks = probe('GET /.well-known/jwks.json', jwks);
  if (t.avail.jwks === true && !Array.isArray(jwks.json?.keys)) throw new BenchError(`JWKS without keys: ${jwks.text.slice(0, 300)}`);
  return t;
}

/** After the login scenario: a logged-out session must be refused by /gateway/verify at once. */
async function checkLogoutRevokes(port) {
  const t = fixtures.tessera;
  if (t.avail.login !== true || t.avail.verify !== true) return null;
  const login = await request(port, 'POST', '/api/users/loginWithToken', {
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ apiToken: t.mainToken }),
  });
  const out = await request(port, 'POST', '/api/users/logout', { headers: { 'x-access-token': login.json?.id ?? '' } });
  const after = await request(port, 'GET', '/gateway/verify', { headers: { 'x-access-token': login.json?.id ?? '' } });
  return login.status === 200 && out.status === 204 && after.status === 401
    ? null
    : `logout check: loginWithToken ${login.status}, logout ${out.status} (want 204), then /gateway/verify ${after.status} (want 401)`;
}

async function peerFixtures(ports, clients) {
  const [id, secret] = clients[0];
  const headers = { authorization: basic(id, secret), 'content-type': 'application/x-www-form-urlencoded' };
  const jwtRes = await request(ports.peer, 'POST', '/token', { headers, body: 'grant_type=client_credentials&resource=urn%3Abench%3Aapi' });
  if (jwtRes.status !== 200 || jwtHeader(jwtRes.json?.access_token ?? '')?.alg !== 'EdDSA') {
    throw new BenchError(`oidc-provider did not issue an EdDSA JWT: ${jwtRes.status} ${jwtRes.text.slice(0, 300)}`);
  }
  let opaque = null;
  const refreshOpaque = async () => {
    const res = await request(ports.peer, 'POST', '/token', { headers, body: 'grant_type=client_credentials' });
    opaque = res.json?.access_token;
    if (res.status !== 200 || !opaque || opaque.includes('.'))
      throw new BenchError(`oidc-provider did not issue an opaque token: ${res.status} ${res.text.slice(0, 300)}`);
    const intro = await request(ports.peer, 'POST', '/token/introspection', { headers, body: `token=${opaque}` });
    if (intro.status !== 200 || intro.json?.active !== true)
      throw new BenchError(`oidc-provider introspection not active: ${intro.status} ${intro.text.slice(0, 300)}`);
  };
  await refreshOpaque();
  return { jwtHeader: jwtHeader(jwtRes.json.access_token), refreshOpaque, opaque: () => opaque };
}

async function ceilingFixtures(ports, clients) {
  const [id, secret] = clients[0];
  const res = await request(ports.ceiling, 'POST', '/token', {
    headers: { authorization: basic(id, secret), 'content-type': 'application/x-www-form-urlencoded' },
    body: 'grant_type=client_credentials',
  });
  if (res.status !== 200) throw new BenchError(`reference server did not issue a token: ${res.status} ${res.text.slice(0, 300)}`);
  const v = await request(ports.ceiling, 'GET', '/verify', { headers: { authorization: `Bearer ${res.json.access_token}` } });
  if (v.status !== 200) throw new BenchError(`reference server did not verify its own token: ${v.status}`);
  return { jwt: res.json.access_token };
}

// ---- load -----------------------------------------------------------------------------------
function runAutocannon(options) {
  return new Promise((resolve, reject) => {
    const watchdog = setTimeout(
      () => {
        currentLoad?.stop?.();
        reject(new BenchError(`autocannon did not finish within ${options.duration + 60} s`));
      },
      (options.duration + 60) * 1000,
    );
    currentLoad = autocannon(options, (err, result) => {
      clearTimeout(watchdog);
      currentLoad = null;
      if (err) reject(err);
      else resolve(result);
    });
  });
}

/** CPU seconds so far of each process a revocation flow keeps busy, whichever server is measured. */
const FLOW_PROCESSES = {
  tessera: () => cpuSeconds(servers.procs.tessera.pid),
  postgres: () => clusterCpuSeconds(servers.pgPid),
  flow: () => cpuSeconds(flowChild.pid),
};
const flowCpu = () => Object.fromEntries(Object.entries(FLOW_PROCESSES).map(([k, read]) => [k, read()]));

async function measure(scenario, target, c, seconds) {
  if (aborted) throw aborted;
  if (target.server === 'peer' && scenario.id === 'verify') await fixtures.peer.refreshOpaque();
  const counters = { pairs: 0, seconds };
  if (target.flow) await flowRequest({ cmd: 'prepare', seconds }, 'prepared', 600_000);
  const pid = servers.procs[target.server].pid;
  // Built before the clocks start: a DPoP scenario signs its whole proof pool here.
  const requests = target.load(counters);
  const cpu0 = cpuSeconds(pid);
  const pg0 = target.server === 'tessera' ? clusterCpuSeconds(servers.pgPid) : null;
  const flow0 = target.flow ? flowCpu() : null;
  const gen0 = process.cpuUsage();
  if (target.flow) await flowRequest({ cmd: 'go' }, 'going');
  const result = await runAutocannon({
    url: `http://127.0.0.1:${target.port}`,
    connections: c,
    pipelining: 1,
    duration: seconds,
    timeout: 10,
    requests,
    setupClient: setupClientFor(requests),
  });
  const cpu1 = cpuSeconds(pid);
  const pg1 = target.server === 'tessera' ? clusterCpuSeconds(servers.pgPid) : null;
  const flow1 = target.flow ? flowCpu() : null;
  const gen = process.cpuUsage(gen0);
  const flow = target.flow ? await flowStopped() : null;
  if (cpu1 === null)
    throw new BenchError(
      `${SERVER_NAMES[target.server]} exited during ${scenario.id}; see ${servers.procs[target.server].logFile}:\n${tail(servers.procs[target.server].logFile)}`,
    );
  const completed = result['2xx'] + result.non2xx;
  const per1k = (d) => (d === null || completed === 0 ? null : d / (completed / 1000));
  const codes = Object.entries(result.statusCodeStats ?? {})
    .filter(([code]) => !code.startsWith('2'))
    .map(([code, { count }]) => `${count} x ${code}`);
  return {
    rps: result.requests.average,
    completed,
    seconds: result.duration,
    pairsPerSec: target.pairs ? counters.pairs / result.duration : null,
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.errors + result.timeouts,
    timeouts: result.timeouts,
    non2xx: result.non2xx,
    codes,
    cpuServer: per1k(cpu1 - cpu0),
    cpuPg: pg0 === null || pg1 === null ? null : per1k(pg1 - pg0),
    cpuLoadGen: per1k((gen.user + gen.system) / 1e6),
    revocationsPerSec: flow ? flow.perSecond : null,
    // CPU seconds per second of the run, by process, while revocations flowed.
    flowCpuPerSec:
      flow0 && flow1
        ? Object.fromEntries(Object.keys(flow0).map((k) => [k, flow0[k] === null || flow1[k] === null ? null : (flow1[k] - flow0[k]) / result.duration]))
        : null,
    flowProblems: flow ? flow.problems : [],
  };
}

// ---- revocation flow and local verification ---------------------------------------------------
/**
 * For the verify scenario: the local verifier (bench/servers/local-verify.mjs, subscribed to the
 * stream with an `events:read` API token) and, with --revocations-per-second, the flow process
 * with its own SDK key (the bench user's second).
 */
async function revocationSetup(ports, env) {
  const t = fixtures.tessera;
  if (t.avail.cc !== true) return;
  const cli = (args) => runNode([path.join(ROOT, 'dist/src/cli.js'), ...args], { env, cwd: ROOT, timeoutMs: 120_000 });
  const eventsToken = JSON.parse(
    await cli(['tokens', 'create', '--user', 'bench-main@bench.invalid', '--scopes', 'events:read', '--name', 'bench-events']),
  ).token;
  ports.local = await freePort();
  const issuer = `http://127.0.0.1:${ports.tessera}`;
  log('local verifier: createVerifier subscribed to /events/stream (bench/servers/local-verify.mjs)');
  servers.procs.local = startNode('local verifier', [path.join(ROOT, 'bench/servers/local-verify.mjs')], {
    env: { ...process.env, PORT: String(ports.local), BENCH_TESSERA_URL: issuer, BENCH_EVENTS_TOKEN: eventsToken },
    cwd: ROOT,
    logFile: path.join(work, 'local-verify.log'),
  });
  await waitReady(servers.procs.local, `http://127.0.0.1:${ports.local}/healthz`, 60_000);
  t.avail.local = probe('local verifier GET /verify', await request(ports.local, 'GET', '/verify', { headers: { authorization: `Bearer ${t.jwt}` } }));
  if (!(opts.revocationsPerSecond > 0)) return;
  const created = await request(ports.tessera, 'POST', '/api/sdk-keys', {
    headers: { authorization: `Bearer ${t.mainToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'bench-revoker' }),
  });
  if (created.status !== 201 && created.status !== 200)
    throw new BenchError(`POST /api/sdk-keys (revoker) answered ${created.status}: ${created.text.slice(0, 300)}`);
  const through = opts.revocationSource === 'sql' ? "Tessera's revokeTokens straight into Postgres" : 'POST /oauth/revoke';
  log(`revocation flow: ${opts.revocationsPerSecond.toLocaleString('en-US')} revocations/s through ${through} (bench/tools/revocation-flow.mjs)`);
  flowChild = fork(path.join(ROOT, 'bench/tools/revocation-flow.mjs'), [], {
    cwd: ROOT,
    env: {
      // Tessera's variables: the sql source attaches to its embedded Postgres.
      ...env,
      BENCH_REVOCATION_SOURCE: opts.revocationSource,
      BENCH_TESSERA_URL: issuer,
      BENCH_REVOKER_KEYS: JSON.stringify([{ client_id: created.json.client_id, client_secret: created.json.client_secret }]),
      BENCH_REVOCATIONS_PER_SECOND: String(opts.revocationsPerSecond),
    },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  await flowReply('started', 30_000);
}

function flowReply(type, timeoutMs = 60_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new BenchError(`the revocation flow did not answer ${type} within ${timeoutMs / 1000} s`)), timeoutMs);
    const onMessage = (m) => (m.type === type ? done(null, m) : m.type === 'error' ? done(new BenchError(`revocation flow: ${m.message}`)) : null);
    const onExit = (code) => done(new BenchError(`the revocation flow exited (${code})`));
    function done(err, m) {
      clearTimeout(timer);
      flowChild.off('message', onMessage);
      flowChild.off('exit', onExit);
      if (err) reject(err);
      else resolve(m);
    }
    flowChild.on('message', onMessage);
    flowChild.once('exit', onExit);
  });
}

function flowRequest(msg, type, timeoutMs) {
  if (!flowChild) throw new BenchError('no revocation flow running');
  const reply = flowReply(type, timeoutMs);
  flowChild.send(msg);
  return reply;
}

/**
 * Stops the flow and checks that it reached the verifiers: the last token it revoked is refused
 * by /gateway/verify and by the local verifier (from its stream) within 2 s. (A revocation through
 * the endpoint is held by the answering instance at once; one written by the sql source reaches it
 * by its change notification.)
 */
async function flowStopped() {
  const out = await flowRequest({ cmd: 'stop' }, 'stopped');
  fixtures.flowRevoked = (fixtures.flowRevoked ?? 0) + out.revoked;
  const problems = [...out.problems];
  if (out.failed) problems.push(`${out.failed} revocations failed`);
  if (!out.lastRevoked) problems.push('no revocation was acknowledged');
  else {
    const auth = { authorization: `Bearer ${out.lastRevoked}` };
    let gw = null;
    for (let i = 0; i < 40 && gw?.status !== 401; i++) {
      if (i) await new Promise((r) => setTimeout(r, 50));
      gw = await request(servers.ports.tessera, 'GET', '/gateway/verify', { headers: auth });
    }
    if (gw.status !== 401) problems.push(`/gateway/verify answered ${gw.status} to a revoked token 2 s later (want 401)`);
    let local = null;
    for (let i = 0; i < 40 && local?.json?.reason !== 'revoked'; i++) {
      if (i) await new Promise((r) => setTimeout(r, 50));
      local = await request(servers.ports.local, 'GET', '/verify', { headers: auth });
    }
    if (local?.json?.reason !== 'revoked')
      problems.push(`the local verifier answered ${local?.status} ${local?.text.slice(0, 100)} to a revoked token 2 s later`);
  }
  return { ...out, problems };
}

// ---- main -----------------------------------------------------------------------------------
let servers;
let fixtures;

async function main() {
  const started = Date.now();
  const loadBefore = os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' / ');
  const selected = new Set(opts.scenarios);
  // Target x concurrency pairs per scenario.
  const perScenario = {
    'cc-one': 4 * opts.connections.length,
    'cc-many': 4 * opts.connections.length,
    'cc-conc': 3 * opts.curveConnections.length,
    'cc-pop': opts.popClients.length,
    verify: (opts.revocationsPerSecond > 0 ? 7 : 5) * opts.connections.length,
    login: opts.connections.length,
    jwks: 3 * opts.connections.length,
    'dpop-token': 2 * opts.connections.length,
    'dpop-verify': 2 * opts.connections.length,
  };
  const estimate = opts.scenarios.reduce((s, id) => s + (perScenario[id] ?? 4 * opts.connections.length) * (opts.warmup + opts.runs * opts.duration), 0);
  // A first population build of a million keys takes minutes; later runs reuse it.
  const limit = opts.timeout || estimate * 2 + 600 + (selected.has('cc-pop') ? 3600 : 0);
  log(`about ${Math.ceil(estimate / 60)} min of load (+ start-up and fixtures); hard limit ${Math.ceil(limit / 60)} min`);
  const deadline = setTimeout(() => {
    aborted = new BenchError(`the bench ran past its limit of ${limit} s (BENCH_TIMEOUT)`);
    log(aborted.message);
    currentLoad?.stop?.();
    // Whatever is still waiting (a fixture, a probe) gets 30 s more; then everything is stopped.
    setTimeout(() => cleanup().finally(() => process.exit(1)), 30_000).unref();
  }, limit * 1000);

  // Client credentials shared by the peer and the ceiling (each holds them in memory).
  const clients = Array.from({ length: opts.clients }, (_, i) => [`bench-client-${String(i).padStart(5, '0')}`, randomBytes(32).toString('base64url')]);
  const clientsFile = path.join(work, 'clients.json');
  writeFileSync(clientsFile, JSON.stringify(clients), { mode: 0o600 });

  log('starting Tessera (embedded Postgres, throw-away data folder), oidc-provider and the reference server');
  servers = await startServers(clientsFile);
  fixtures = { clients };
  fixtures.tessera = await tesseraFixtures(servers.ports, servers.tesseraEnv, selected.has('cc-many'), opts.clients);
  fixtures.peer = await peerFixtures(servers.ports, clients);
  fixtures.ceiling = await ceilingFixtures(servers.ports, clients);
  fixtures.ports = servers.ports;
  if (selected.has('verify')) await revocationSetup(servers.ports, servers.tesseraEnv);

  // The machine's raw signing rate, every core, before any load (the servers are idle).
  let sign = null;
  if (opts.signSeconds > 0) {
    log(`raw Ed25519 signing rate, ${os.availableParallelism?.() ?? os.cpus().length} worker threads, ${opts.signSeconds} s`);
    sign = await signRate(opts.signSeconds);
    log(`  ${Math.round(sign.perSecond).toLocaleString('en-US')} signatures/s`);
  }
  // The same for the check of a DPoP proof's signature: the one piece of a DPoP request no cache skips.
  let proofCheck = null;
  if (opts.signSeconds > 0 && (selected.has('dpop-token') || selected.has('dpop-verify'))) {
    log(`raw DPoP proof signature check rate (${DPOP_ALG}), ${os.availableParallelism?.() ?? os.cpus().length} worker threads, ${opts.signSeconds} s`);
    proofCheck = await proofCheckRate(opts.signSeconds);
    log(`  ${Math.round(proofCheck.perSecond).toLocaleString('en-US')} checks/s`);
  }

  // cc-pop runs last: it stops the main Tessera and serves from the population's.
  const order = [...opts.scenarios.filter((id) => id !== 'cc-pop'), ...opts.scenarios.filter((id) => id === 'cc-pop')];
  const rows = [];
  const unavailable = [];
  const failures = [];
  const raw = [];
  const checkRun = (scenario, target, c, r, phase) => {
    for (const p of r.flowProblems) failures.push(`${scenario.id} / ${target.label} / c=${c} (${phase}): revocation flow: ${p}`);
    if (r.errors || r.non2xx) {
      failures.push(
        `${scenario.id} / ${target.label} / c=${c} (${phase}): ${r.non2xx} non-2xx${r.codes.length ? ` (${r.codes.join(', ')})` : ''}, ` +
          `${r.errors} errors (${r.timeouts} timeouts)`,
      );
    }
  };
  for (const id of order) {
    if (id === 'cc-pop') await populationPhase();
    const scenario = buildScenarios(fixtures, opts).find((s) => s.id === id);
    const targets = scenario.targets.filter((t) => {
      if (t.available === true) return true;
      unavailable.push(`${scenario.title}: ${t.label}: ${t.available}`);
      return false;
    });
    if (!targets.some((t) => t.server === 'tessera')) log(`${scenario.id}: Tessera not available on this build; measuring the others`);
    for (const c of scenario.connections ?? opts.connections) {
      const runs = new Map(targets.map((t) => [t, []]));
      if (opts.warmup > 0) {
        for (const t of targets) {
          log(`${scenario.id} c=${c} warm-up ${t.label}`);
          checkRun(scenario, t, c, await measure(scenario, t, c, opts.warmup), 'warm-up');
        }
      }
      for (let i = 0; i < opts.runs; i++) {
        const turn = scenario.rotate === false ? targets : targets.map((_, k) => targets[(k + i) % targets.length]);
        for (const t of turn) {
          const r = await measure(scenario, t, c, opts.duration);
          log(
            `${scenario.id} c=${c} run ${i + 1}/${opts.runs} ${t.label}: ${Math.round(r.rps)} req/s` +
              `${r.revocationsPerSec !== null ? ` (${Math.round(r.revocationsPerSec)} revocations/s achieved)` : ''}` +
              `${r.pairsPerSec !== null ? ` (${Math.round(r.pairsPerSec)} pairs/s)` : ''}, p99 ${r.p99} ms, non-2xx ${r.non2xx}, errors ${r.errors}`,
          );
          checkRun(scenario, t, c, r, `run ${i + 1}`);
          runs.get(t).push(r);
        }
      }
      for (const t of targets) {
        const rs = runs.get(t);
        const m = (k) => median(rs.map((r) => r[k]));
        const row = {
          scenario: scenario.id,
          scenarioTitle: scenario.title,
          server: t.server,
          variant: t.variant,
          label: t.label,
          c,
          pairs: !!t.pairs,
          rps: m('rps'),
          pairsPerSec: t.pairs ? m('pairsPerSec') : null,
          p50: m('p50'),
          p99: m('p99'),
          errors: rs.reduce((s, r) => s + r.errors, 0),
          non2xx: rs.reduce((s, r) => s + r.non2xx, 0),
          cpuServer: m('cpuServer'),
          cpuPg: m('cpuPg'),
          cpuLoadGen: m('cpuLoadGen'),
          revocationsPerSec: t.flow ? m('revocationsPerSec') : null,
          flowCpuPerSec: t.flow ? Object.fromEntries(Object.keys(FLOW_PROCESSES).map((k) => [k, median(rs.map((r) => r.flowCpuPerSec?.[k] ?? null))])) : null,
          clients: t.clients ?? null,
        };
        rows.push(row);
        raw.push({ ...row, runs: rs });
      }
    }
    if (scenario.id === 'cc-pop') {
      const pop = fixtures.population;
      pop.memoryEnd = memory(servers.procs.tessera.pid);
      pop.stats = JSON.parse(await runNode([path.join(ROOT, 'bench/population.mjs'), '--stats'], { env: pop.env, cwd: ROOT, timeoutMs: 120_000 }));
      log(
        `population: Tessera RSS ${Math.round((pop.memoryEnd?.rss ?? 0) / 2 ** 20)} MB at the end; database ${Math.round(pop.stats.databaseBytes / 2 ** 20)} MB`,
      );
    }
    if (scenario.id === 'verify' && fixtures.flowRevoked) {
      // Every acknowledged revocation is a committed security event.
      const kinds = JSON.parse(
        await runNode([path.join(ROOT, 'bench/tessera-fixtures.mjs'), '--security-events'], { env: servers.tesseraEnv, cwd: ROOT, timeoutMs: 120_000 }),
      );
      log(`revocation flow: ${fixtures.flowRevoked} revocations acknowledged, security_events ${JSON.stringify(kinds)}`);
      if (!((kinds.token_revoked ?? 0) >= fixtures.flowRevoked))
        failures.push(
          `revocation flow: ${fixtures.flowRevoked} revocations acknowledged but ${kinds.token_revoked ?? 0} token_revoked rows in security_events`,
        );
    }
    if (scenario.id === 'login') {
      const problem = await checkLogoutRevokes(servers.ports.tessera);
      if (problem) failures.push(problem);
    }
  }
  clearTimeout(deadline);

  const find = (scenario, server, variant, c) => rowAt(rows, scenario, server, variant, c) ?? null;
  const pop = fixtures.population;
  const population = pop
    ? {
        keys: pop.keys,
        users: pop.built.users,
        reused: pop.built.reused,
        method: pop.built.method,
        buildSeconds: pop.built.buildSeconds,
        builtAt: pop.built.builtAt,
        coldStartSeconds: pop.coldStartSeconds,
        rssAfterStartBytes: pop.memoryAfterStart?.rss ?? null,
        rssEndBytes: pop.memoryEnd?.rss ?? null,
        rssPeakBytes: pop.memoryEnd?.peak ?? null,
        ...pop.stats,
        clientCacheMax: pop.env.TESSERA_CLIENT_CACHE_MAX ?? '150000 (the default)',
      }
    : null;
  const targets = judgeTargets(find, { population }, opts);
  const ratios = [];
  for (const r of rows.filter((x) => x.server === 'tessera')) {
    const peer = find(r.scenario, 'peer', undefined, r.c);
    const ceiling = find(r.scenario, 'ceiling', undefined, r.c);
    const floor = find(r.scenario, 'floor', undefined, r.c);
    ratios.push({
      scenario: r.scenarioTitle,
      label: r.label,
      c: r.c,
      peer: peer ? `${(r.rps / peer.rps).toFixed(2)}x` : null,
      ceiling: ceiling ? `${(r.rps / ceiling.rps).toFixed(2)}x` : null,
      floor: floor ? `${(r.rps / floor.rps).toFixed(2)}x` : null,
    });
  }
  if (opts.requireAll && unavailable.length) failures.push(`BENCH_REQUIRE_ALL: ${unavailable.length} target(s) not available on this build`);

  const t = fixtures.tessera;
  const meta = {
    quick: opts.quick,
    command: `${process.env.BENCH_QUICK ? 'BENCH_QUICK=1 ' : ''}npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
    date: new Date().toISOString(),
    commit: gitCommit(),
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model?.trim() ?? 'unknown',
    memGb: Math.round(os.totalmem() / 2 ** 30),
    kernel: os.release(),
    node: process.versions.node,
    loadBefore,
    warmup: opts.warmup,
    runs: opts.runs,
    duration: opts.duration,
    connections: opts.connections,
    curveConnections: opts.curveConnections,
    popConnections: opts.popConnections,
    revocationsPerSecond: opts.revocationsPerSecond,
    revocationSource: opts.revocationsPerSecond > 0 ? opts.revocationSource : null,
    ratios,
    sign,
    proofCheck,
    population,
    elapsedSeconds: Math.round((Date.now() - started) / 1000),
  };
  const s = t.settings;
  const notes = [
    `Tessera: \`node dist/src/cli.js serve\` on a throw-away data folder with its own embedded Postgres ${s.server_version ?? ''} ` +
      `(synchronous_commit=${s.synchronous_commit}, fsync=${s.fsync}, wal_sync_method=${s.wal_sync_method}, shared_buffers=${s.shared_buffers}); ` +
      'TESSERA_LOG_LEVEL=warn, TESSERA_RATE_LIMIT=false (one client on one IP would otherwise hit the per-client and per-IP limits), every other setting at its default.' +
      (t.tokenHeader ? ` Access tokens: ${JSON.stringify(t.tokenHeader)}.` : ''),
    'Tessera fixtures: one user and API token through the CLI (`tessera users create`, `tessera tokens create`), its SDK key through POST /api/sdk-keys; ' +
      (t.manyKeys
        ? `for the round-robin scenario ${t.bulkUsers.toLocaleString('en-US')} users with an API token each, made by bench/tessera-fixtures.mjs through Tessera's own ` +
          `repository/service code straight against the database (audit events included), then ${t.manyKeys.length.toLocaleString('en-US')} SDK keys ` +
          `(2 per user, the limit) through POST /api/sdk-keys in ${t.bulkSeconds} s` +
          (t.vacuumed ? '; then VACUUM (ANALYZE) on its database, as pgbench does before it measures.' : '.')
        : 'no round-robin fixture this run (scenario not selected, or SDK keys not available on this build).'),
    `oidc-provider ${readJson('node_modules/oidc-provider/package.json').version} (bench/servers/peer.mjs): ${opts.clients.toLocaleString('en-US')} static confidential clients ` +
      '(client_secret_basic), clientCredentials + introspection + resourceIndicators, access tokens for the resource urn:bench:api as JWT signed EdDSA (Ed25519), ' +
      `default in-memory adapter. Without a resource it issues opaque tokens, which its /token/introspection checks (client_secret_basic). Access tokens: ${JSON.stringify(fixtures.peer.jwtHeader)}.`,
    'Reference ceiling (bench/servers/ceiling.mjs): Fastify + @fastify/formbody, clients in a Map, secrets as HMAC-SHA256 compared with timingSafeEqual, ' +
      "an RFC 9068 JWT signed Ed25519 with node:crypto on libuv's thread pool (the callback form, as Tessera signs), the JOSE header encoded once; " +
      '/verify checks a JWT with jose; /jwks serves a constant. HTTP floor: POST /token-floor in the same process, the same Fastify + formbody route ' +
      'answering a token signed at start (no client look-up, no secret check, no signature): what HTTP, the framework and the load generator alone cost.',
    ...(sign
      ? [
          `Raw signing rate (bench/tools/sign-rate.mjs): ${sign.threads} worker threads (every CPU), each signing a ~330-byte access-token signing input ` +
            `with Ed25519 (node:crypto, synchronous) for ${opts.signSeconds} s, before any load.`,
        ]
      : []),
    ...(proofCheck
      ? [
          `Raw DPoP proof check rate (bench/tools/sign-rate.mjs proof-check): ${proofCheck.threads} worker threads, each checking the signature of one ` +
            `${proofCheck.alg} proof with a key object made once (node:crypto, synchronous) for ${opts.signSeconds} s, before any load.`,
        ]
      : []),
    ...(population
      ? [
          `Population (bench/population.mjs): ${population.keys.toLocaleString('en-US')} SDK keys for ${population.users.toLocaleString('en-US')} users, ` +
            "secret_hash through Tessera's own hashSecret (imported from dist) with the pepper of the data folder, loaded with COPY (pg-copy-streams); " +
            `${population.reused ? `reused from the cache (built ${population.builtAt} in ${population.buildSeconds.toFixed(1)} s)` : `built in ${population.buildSeconds.toFixed(1)} s`}. ` +
            `Served by its own Tessera on the cached data folder, TESSERA_CLIENT_CACHE_MAX=${population.clientCacheMax}; the client counts run in increasing order, ` +
            `each the first N keys of the population round-robin, concurrency ${opts.popConnections}. Cold start: spawn of \`tessera serve\` to the first /readyz 200, ` +
            'embedded Postgres start included, polled every 50 ms, the OS page cache warm.',
        ]
      : []),
    `autocannon ${readJson('node_modules/autocannon/package.json').version}, in the bench process itself (separate from every server). Round-robin: each request takes the next credential of a shared list.`,
    ...(fixtures.tessera.avail.local === true
      ? [
          "Local verification (bench/servers/local-verify.mjs): Tessera's TypeScript verifier (dist/src/client, createVerifier with revocations: 'stream', " +
            'subscribed to /events/stream with an events:read API token) checking the JWT in-process behind a minimal node:http GET /verify, its own process.' +
            (opts.revocationsPerSecond > 0
              ? ` Revocation flow (bench/tools/revocation-flow.mjs, its own process): ${opts.revocationsPerSecond.toLocaleString('en-US')} revocations a second ` +
                (opts.revocationSource === 'sql'
                  ? "written with Tessera's own revokeTokens straight into Postgres in batches of up to 50 (the rows, audit and change events the RFC 7009 endpoint writes; " +
                    "Tessera's HTTP workers are not involved) "
                  : 'through RFC 7009 POST /oauth/revoke (Tessera also serves these requests and authenticates their client) ') +
                "of access tokens issued to a second bench SDK key before each run (outside the measurement), each a token_revoked security event in Tessera's " +
                'security_events and on every stream; during the runs marked "revocations/s flowing" only. After each such run the last revoked token is checked ' +
                'to be refused, within 2 s, by /gateway/verify and by the local verifier.'
              : ''),
        ]
      : []),
    'The login scenario reuses one API token; a pair counts when its logout has answered 2xx, and after the runs one logged-out session is checked to be refused by /gateway/verify.',
    `Run took ${meta.elapsedSeconds} s in all.`,
  ];
  mkdirSync(RESULTS, { recursive: true });
  meta.charts = await renderCharts(rows, RESULTS, opts.out);
  const md = renderMarkdown({ meta, rows, targets, unavailable, failures, notes });
  writeFileSync(path.join(RESULTS, `${opts.out}.md`), md);
  writeFileSync(
    path.join(RESULTS, `${opts.out}.json`),
    JSON.stringify({ meta, options: opts, settings: s, rows: raw, targets, unavailable, failures, notes }, null, 2) + '\n',
  );
  process.stdout.write(md + '\n');
  log(`wrote ${path.relative(ROOT, path.join(RESULTS, opts.out))}.md and .json`);
  if (failures.length) {
    log(`INVALID RUN: ${failures.length} problem(s):\n  - ${failures.join('\n  - ')}`);
    return 1;
  }
  return 0;
}

function readJson(p) {
  try {
    return JSON.parse(readFileSync(path.join(ROOT, p), 'utf8'));
  } catch {
    return {};
  }
}

let code = 1;
try {
  code = await main();
} catch (err) {
  log(`failed: ${err instanceof BenchError ? err.message : (err?.stack ?? err)}`);
  if (servers?.procs) log(`Tessera log tail (${servers.procs.tessera.logFile}):\n${tail(servers.procs.tessera.logFile, 15)}`);
  code = 1;
} finally {
  await cleanup();
}
process.exit(aborted && code === 0 ? 1 : code);
