// Bench options: environment variables, overridden by --flags of the same name
// (`--duration 5`, `--runs=5`, `--quick`, `--scenarios cc-one,jwks`).
import { parseArgs } from 'node:util';

export const SCENARIO_IDS = ['cc-one', 'cc-many', 'verify', 'login', 'jwks', 'dpop-token', 'dpop-verify'];

const HELP = `usage: npm run bench [-- options]      (each option also as an environment variable)
  --duration S      BENCH_DURATION     seconds per measured run (default 10; quick 2)
  --runs N          BENCH_RUNS         measured runs per server, alternating servers (default 3; quick 1)
  --warmup S        BENCH_WARMUP       seconds of warm-up per server before the runs (default 3; quick 1)
  --connections L   BENCH_CONNECTIONS  comma list of concurrencies (default 50,200; quick 10)
  --clients N       BENCH_CLIENTS      clients in the round-robin scenario (default 10000; quick 1000)
  --scenarios L     BENCH_SCENARIOS    comma list of ${SCENARIO_IDS.join(', ')} (default all)
  --quick           BENCH_QUICK=1      smoke run: short, one run, results to bench/results/quick.*
  --out NAME        BENCH_OUT          results file stem in bench/results (default latest; quick: quick)
  --timeout S       BENCH_TIMEOUT      hard limit for the whole bench in seconds (default: estimate x 2 + 600)
  --require-all     BENCH_REQUIRE_ALL=1  fail when a scenario is not available on this build
  --keep            BENCH_KEEP=1       keep the throw-away data folder and server logs`;

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
      quick: { type: 'boolean' },
      out: { type: 'string' },
      timeout: { type: 'string' },
      'require-all': { type: 'boolean' },
      keep: { type: 'boolean' },
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
  const opts = {
    quick,
    duration: num('BENCH_DURATION', pick('duration', 'BENCH_DURATION'), quick ? 2 : 10),
    runs: num('BENCH_RUNS', pick('runs', 'BENCH_RUNS'), quick ? 1 : 3),
    warmup: num('BENCH_WARMUP', pick('warmup', 'BENCH_WARMUP'), quick ? 1 : 3, 0),
    connections,
    clients: num('BENCH_CLIENTS', pick('clients', 'BENCH_CLIENTS'), quick ? 1000 : 10000, 2),
    scenarios: scenarios.length ? scenarios : SCENARIO_IDS,
    out: pick('out', 'BENCH_OUT') ?? (quick ? 'quick' : 'latest'),
    requireAll: values['require-all'] ?? truthy(env.BENCH_REQUIRE_ALL),
    keep: values.keep ?? truthy(env.BENCH_KEEP),
    timeout: num('BENCH_TIMEOUT', pick('timeout', 'BENCH_TIMEOUT'), 0, 0),
  };
  if (!/^[\w.-]+$/.test(opts.out)) throw new Error(`BENCH_OUT must be a plain file stem, got "${opts.out}"`);
  return opts;
}
