// Bench options: environment variables, overridden by --flags of the same name
// (`--duration 5`, `--runs=5`, `--quick`, `--scenarios cc-one,jwks`).
import { parseArgs } from 'node:util';

export const SCENARIO_IDS = ['cc-one', 'cc-many', 'cc-conc', 'cc-pop', 'verify', 'login', 'jwks', 'dpop-token', 'dpop-verify'];

const HELP = `usage: npm run bench [-- options]      (each option also as an environment variable)
  --duration S      BENCH_DURATION     seconds per measured run (default 10; quick 2)
  --runs N          BENCH_RUNS         measured runs per server, alternating servers (default 3; quick 1)
  --warmup S        BENCH_WARMUP       seconds of warm-up per server before the runs (default 3; quick 1)
  --connections L   BENCH_CONNECTIONS  comma list of concurrencies (default 50,200; quick 10)
  --clients N       BENCH_CLIENTS      clients in the round-robin scenario (default 10000; quick 1000)
  --scenarios L     BENCH_SCENARIOS    comma list of ${SCENARIO_IDS.join(', ')} (default all)
  --curve-connections L  BENCH_CURVE_CONNECTIONS  concurrencies of cc-conc (default 10,50,200,1000; quick 10,50)
  --pop-clients L   BENCH_POP_CLIENTS  distinct clients of cc-pop, round-robin (default 1000,10000,100000,1000000; quick 200,1000)
  --pop-connections N  BENCH_POP_CONNECTIONS  concurrency of cc-pop (default 50; quick 10)
  --population N    BENCH_POPULATION   SDK keys in the population fixture (default: the largest of --pop-clients)
  --cache DIR       BENCH_CACHE        where population fixtures are kept between runs (default <tmp>/tessera-bench-cache)
  --sign-seconds S  BENCH_SIGN_SECONDS seconds of each raw rate measurement: Ed25519 signing, and with a DPoP scenario the
                                       proof signature check (default 5; quick 1; 0 skips them)
  --quick           BENCH_QUICK=1      smoke run: short, one run, results to bench/results/quick.*
  --out NAME        BENCH_OUT          results file stem in bench/results (default latest; quick: quick)
  --timeout S       BENCH_TIMEOUT      hard limit for the whole bench in seconds (default: estimate x 2 + 600)
  --require-all     BENCH_REQUIRE_ALL=1  fail when a scenario is not available on this build
  --keep            BENCH_KEEP=1       keep the throw-away data folder and server logs
  --revocations-per-second N  BENCH_REVOCATIONS_PER_SECOND  during the verify scenario, also measure /gateway/verify
                    and the local TypeScript verifier with N access-token revocations a second flowing into Tessera
                    (bench/tools/revocation-flow.mjs, a separate process) (default 0: without the flow only)
  --revocation-source S  BENCH_REVOCATION_SOURCE  how the flow revokes: sql (default: Tessera's own revokeTokens
                    straight into Postgres, in small batches) or http (RFC 7009 POST /oauth/revoke)
                    BENCH_RESULTS_DIR  write the results to this folder instead of bench/results`;

function truthy(v) {
  return v !== undefined && ['1', 'true', 'yes', 'on'].includes(String(v).toLowerCase());
}

function num(name, raw, def, min = 1) {
  if (raw === undefined || raw === '') return def;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min) throw new Error(`${name} must be a number >= ${min}, got "${raw}"`);
  return n;
}

export function loadOptions(argv = process.argv.slice(2), env = process.env) {
  const { values } = parseArgs({
    args: argv,
    options: {
      duration: { type: 'string' },
      runs: { type: 'string' },
      warmup: { type: 'string' },
      connections: { type: 'string' },
      clients: { type: 'string' },
      scenarios: { type: 'string' },
      'curve-connections': { type: 'string' },
      'pop-clients': { type: 'string' },
      'pop-connections': { type: 'string' },
      population: { type: 'string' },
      cache: { type: 'string' },
      'sign-seconds': { type: 'string' },
      quick: { type: 'boolean' },
      out: { type: 'string' },
      timeout: { type: 'string' },
      'require-all': { type: 'boolean' },
      keep: { type: 'boolean' },
      'revocations-per-second': { type: 'string' },
      'revocation-source': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(HELP + '\n');
    process.exit(0);
  }
  const quick = values.quick ?? truthy(env.BENCH_QUICK);
  const pick = (flag, name) => values[flag] ?? env[name];
  const scenarios = (pick('scenarios', 'BENCH_SCENARIOS') ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const unknown = scenarios.filter((s) => !SCENARIO_IDS.includes(s));
  if (unknown.length) throw new Error(`unknown scenario(s) ${unknown.join(', ')}; choose from ${SCENARIO_IDS.join(', ')}`);
  const connections = (pick('connections', 'BENCH_CONNECTIONS') ?? (quick ? '10' : '50,200')).split(',').map((c) => num('BENCH_CONNECTIONS', c.trim(), 0));
  const list = (flag, name, def) => (pick(flag, name) ?? def).split(',').map((c) => num(name, c.trim(), def, 1));
  const popClients = list('pop-clients', 'BENCH_POP_CLIENTS', quick ? '200,1000' : '1000,10000,100000,1000000');
  const opts = {
    quick,
    duration: num('BENCH_DURATION', pick('duration', 'BENCH_DURATION'), quick ? 2 : 10),
    runs: num('BENCH_RUNS', pick('runs', 'BENCH_RUNS'), quick ? 1 : 3),
    warmup: num('BENCH_WARMUP', pick('warmup', 'BENCH_WARMUP'), quick ? 1 : 3, 0),
    connections,
    clients: num('BENCH_CLIENTS', pick('clients', 'BENCH_CLIENTS'), quick ? 1000 : 10000, 2),
    scenarios: scenarios.length ? scenarios : SCENARIO_IDS,
    curveConnections: list('curve-connections', 'BENCH_CURVE_CONNECTIONS', quick ? '10,50' : '10,50,200,1000'),
    popClients,
    popConnections: num('BENCH_POP_CONNECTIONS', pick('pop-connections', 'BENCH_POP_CONNECTIONS'), quick ? 10 : 50),
    population: num('BENCH_POPULATION', pick('population', 'BENCH_POPULATION'), Math.max(...popClients), 2),
    cache: pick('cache', 'BENCH_CACHE') ?? null,
    signSeconds: num('BENCH_SIGN_SECONDS', pick('sign-seconds', 'BENCH_SIGN_SECONDS'), quick ? 1 : 5, 0),
    out: pick('out', 'BENCH_OUT') ?? (quick ? 'quick' : 'latest'),
    requireAll: values['require-all'] ?? truthy(env.BENCH_REQUIRE_ALL),
    keep: values.keep ?? truthy(env.BENCH_KEEP),
    timeout: num('BENCH_TIMEOUT', pick('timeout', 'BENCH_TIMEOUT'), 0, 0),
    revocationsPerSecond: num('BENCH_REVOCATIONS_PER_SECOND', pick('revocations-per-second', 'BENCH_REVOCATIONS_PER_SECOND'), 0, 0),
    revocationSource: pick('revocation-source', 'BENCH_REVOCATION_SOURCE') ?? 'sql',
  };
  if (!['sql', 'http'].includes(opts.revocationSource)) throw new Error(`BENCH_REVOCATION_SOURCE must be sql or http, got "${opts.revocationSource}"`);
  if (opts.population < Math.max(...opts.popClients)) throw new Error('BENCH_POPULATION must be at least the largest of BENCH_POP_CLIENTS');
  if (!/^[\w.-]+$/.test(opts.out)) throw new Error(`BENCH_OUT must be a plain file stem, got "${opts.out}"`);
  return opts;
}
