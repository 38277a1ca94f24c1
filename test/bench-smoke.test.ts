// The bench harness cannot rot unnoticed: a BENCH_QUICK run of every scenario at the smallest sizes
// (1 s runs, no warm-up, a 50-key population fixture) must complete and produce sane rows. No
// thresholds: the figures of a smoke run on a shared machine mean nothing, only their presence does.
import t, { type Test } from 'tap';
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

t.setTimeout(240_000);

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const SCENARIOS = ['cc-one', 'cc-many', 'cc-conc', 'cc-pop', 'verify', 'login', 'jwks'];

interface Row {
  scenario: string;
  server: string;
  variant?: string;
  c: number;
  revocationsPerSec: number | null;
  rps: number;
  pairsPerSec: number | null;
  clients: number | null;
  errors: number;
  non2xx: number;
}

/** Runs `bench/run.mjs` with BENCH_QUICK=1 and `args`, its results in a fresh folder removed after the test. */
async function quickBench(t: Test, prefix: string, args: string[]): Promise<{ dir: string; code: number; stderr: string }> {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  // The population's embedded Postgres (the `postgres` user, under root) must traverse into it.
  chmodSync(dir, 0o711);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const env: NodeJS.ProcessEnv = { ...process.env, BENCH_QUICK: '1', BENCH_RESULTS_DIR: dir, BENCH_CACHE: path.join(dir, 'cache') };
  delete env.DATABASE_URL;
  return new Promise((resolve) => {
    execFile(process.execPath, ['bench/run.mjs', ...args], { cwd: root, env, maxBuffer: 64 * 1024 * 1024 }, (err, _stdout, stderr) =>
      resolve({ dir, code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr }),
    );
  });
}

t.test('BENCH_QUICK=1: every scenario runs and yields non-zero rates, references, population and charts', async (t) => {
  const { dir, code, stderr } = await quickBench(t, 'tessera-bench-smoke-', [
    '--scenarios',
    SCENARIOS.join(','),
    '--duration',
    '1',
    '--warmup',
    '0',
    '--runs',
    '1',
    '--connections',
    '5',
    '--clients',
    '20',
    '--curve-connections',
    '2,5',
    '--pop-clients',
    '20,50',
    '--pop-connections',
    '5',
    '--sign-seconds',
    '0.3',
    '--out',
    'smoke',
    '--revocations-per-second',
    '50',
  ]);
  if (code !== 0) t.comment(stderr.slice(-4000));
  t.equal(code, 0, 'the bench exits 0 (every response 2xx, every check passed)');
  const json = JSON.parse(readFileSync(path.join(dir, 'smoke.json'), 'utf8')) as {
    rows: Row[];
    failures: string[];
    unavailable: string[];
    meta: { sign: { perSecond: number } | null; population: { keys: number; coldStartSeconds: number; rssEndBytes: number; databaseBytes: number } | null };
    targets: Array<{ name: string; status: string; command: string }>;
  };
  t.same(json.failures, [], 'no failed checks');
  t.same(json.unavailable, [], 'every scenario is available on this build');
  for (const id of SCENARIOS) {
    const rows = json.rows.filter((r) => r.scenario === id);
    t.ok(rows.length > 0, `${id} has rows`);
    t.ok(
      rows.some((r) => r.server === 'tessera'),
      `${id} measured Tessera`,
    );
    for (const r of rows) {
      t.ok(r.rps > 0, `${id} / ${r.server}${r.variant ? ` / ${r.variant}` : ''} / c=${r.c}: ${Math.round(r.rps)} req/s`);
      t.equal(r.errors + r.non2xx, 0);
    }
  }
  const servers = (id: string) => new Set(json.rows.filter((r) => r.scenario === id).map((r) => r.server));
  t.same([...servers('cc-one')].sort(), ['ceiling', 'floor', 'peer', 'tessera'], 'cc-one: Tessera, oidc-provider, the ceiling and the HTTP floor');
  t.same(
    json.rows
      .filter((r) => r.scenario === 'cc-conc' && r.server === 'tessera')
      .map((r) => r.c)
      .sort((a, b) => a - b),
    [2, 5],
    'cc-conc at each curve concurrency',
  );
  t.same(
    json.rows.filter((r) => r.scenario === 'cc-pop').map((r) => r.clients),
    [20, 50],
    'cc-pop at each client count, in order',
  );
  const verify = (server: string, variant?: string) => json.rows.find((r) => r.scenario === 'verify' && r.server === server && r.variant === variant);
  for (const server of ['tessera', 'local']) {
    t.ok(verify(server), `verify: ${server} without the revocation flow`);
    const flowing = verify(server, 'revoking');
    t.ok(flowing, `verify: ${server} with 50 revocations/s flowing`);
    // The bench fails the run (failures above) when a revocation failed or did not reach both verifiers.
    t.ok(flowing && flowing.revocationsPerSec !== null && flowing.revocationsPerSec > 0, `verify: ${server}: achieved revocation rate reported`);
  }
  t.equal(
    json.targets.filter((x) => x.name.includes('revocations/s flowing')).length,
    2,
    'a with/without target for /gateway/verify and for local verification',
  );
  const login = json.rows.find((r) => r.scenario === 'login');
  t.ok(login && login.pairsPerSec !== null && login.pairsPerSec > 0, 'login pairs counted');
  t.ok(json.meta.sign && json.meta.sign.perSecond > 0, 'the raw signing rate was measured');
  const pop = json.meta.population;
  t.ok(pop, 'population figures reported');
  t.equal(pop?.keys, 50);
  t.ok(pop && pop.coldStartSeconds > 0 && pop.rssEndBytes > 0 && pop.databaseBytes > 0, 'cold start, RSS and database size');
  t.ok(json.targets.length > 0 && json.targets.every((x) => ['met', 'not met', 'n/a'].includes(x.status) && x.command.startsWith('npm run bench')));
  const md = readFileSync(path.join(dir, 'smoke.md'), 'utf8');
  for (const heading of [
    '## Results',
    '## Growth curves',
    '## Targets',
    '## References',
    '## Population',
    '## Where the time goes',
    '## Validity',
    '## Verification with revocations flowing',
  ])
    t.match(md, heading);
  for (const chart of ['smoke-clients.svg', 'smoke-concurrency.svg']) {
    t.ok(existsSync(path.join(dir, chart)), `${chart} drawn`);
    t.match(readFileSync(path.join(dir, chart), 'utf8'), /^<svg/);
  }
});

t.test('BENCH_QUICK=1 --revocation-source http: the flow revokes through POST /oauth/revoke and reaches both verifiers', async (t) => {
  const { dir, code, stderr } = await quickBench(t, 'tessera-bench-smoke-http-', [
    '--scenarios',
    'verify',
    '--duration',
    '1',
    '--warmup',
    '0',
    '--runs',
    '1',
    '--connections',
    '2',
    '--clients',
    '2',
    '--sign-seconds',
    '0',
    '--out',
    'smoke-http',
    '--revocations-per-second',
    '20',
    '--revocation-source',
    'http',
  ]);
  if (code !== 0) t.comment(stderr.slice(-4000));
  t.equal(code, 0, 'the bench exits 0 (every response 2xx, every check passed)');
  t.match(stderr, 'revocations/s through POST /oauth/revoke', 'the flow revokes over HTTP');
  const json = JSON.parse(readFileSync(path.join(dir, 'smoke-http.json'), 'utf8')) as {
    rows: Array<Row & { runs: Array<{ flowProblems: string[] }> }>;
    failures: string[];
    meta: { revocationSource: string | null; revocationsPerSecond: number };
    targets: Array<{ name: string; command: string }>;
  };
  t.same(json.failures, [], 'no failed checks: no revocation failed, the last of each run was refused by both verifiers');
  t.equal(json.meta.revocationSource, 'http');
  t.equal(json.meta.revocationsPerSecond, 20);
  for (const server of ['tessera', 'local']) {
    const flowing = json.rows.find((r) => r.scenario === 'verify' && r.server === server && r.variant === 'revoking');
    t.ok(flowing && flowing.revocationsPerSec !== null && flowing.revocationsPerSec > 0, `${server}: revocations achieved while verifying`);
    t.same(
      flowing?.runs.flatMap((r) => r.flowProblems),
      [],
      `${server}: the flow reported no problem`,
    );
    t.ok(flowing && flowing.rps > 0 && flowing.errors + flowing.non2xx === 0, `${server}: verifications answered 2xx while revoking`);
  }
  // Every acknowledged revocation is a token_revoked security event (the bench counts them after the scenario).
  const counted = /revocation flow: (\d+) revocations acknowledged, security_events (\{.*\})/.exec(stderr);
  t.ok(counted, 'the acknowledged revocations were counted against security_events');
  const acknowledged = Number(counted?.[1] ?? 0);
  t.ok(acknowledged > 0, `${acknowledged} revocations acknowledged`);
  t.ok(((JSON.parse(counted?.[2] ?? '{}') as { token_revoked?: number }).token_revoked ?? 0) >= acknowledged, 'each one a token_revoked event');
  const md = readFileSync(path.join(dir, 'smoke-http.md'), 'utf8');
  t.match(md, '## Verification with revocations flowing');
  t.match(md, 'revocations/s requested from a separate process (POST /oauth/revoke)', 'the report names the source');
  const flowTargets = json.targets.filter((x) => x.name.includes('revocations/s flowing'));
  t.equal(flowTargets.length, 2);
  for (const x of flowTargets) t.match(x.command, '--revocation-source http', 'the command that measures a flow target alone uses the same source');
});
