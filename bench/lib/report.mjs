// Markdown for bench/results/<out>.md.

const SERVER_NAMES = { tessera: 'Tessera', peer: 'oidc-provider', ceiling: 'reference ceiling', floor: 'HTTP floor', local: 'local verifier' };
const MB = (b) => (b === null || b === undefined || !Number.isFinite(b) ? '-' : `${Math.round(b / 2 ** 20).toLocaleString('en-US')} MB`);

const int = (n) => Math.round(n).toLocaleString('en-US');
// autocannon records latencies in whole milliseconds; a median of runs may end in .5.
const ms = (n) => (n === null || n === undefined ? '-' : Number.isInteger(n) ? String(n) : n.toFixed(1));
const cpu = (n) => (n === null || n === undefined ? '-' : n.toFixed(3));

/** The row of one scenario, server, variant (undefined: the plain one) and concurrency. */
export const rowAt = (rows, scenario, server, variant, c = 50) =>
  rows.find((r) => r.scenario === scenario && r.server === server && r.variant === variant && r.c === c);

export function median(values) {
  const v = values.filter((x) => x !== null && x !== undefined && Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return null;
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

export function renderMarkdown({ meta, rows, targets, unavailable, failures, notes }) {
  const L = [];
  L.push('# Tessera benchmark results', '');
  if (meta.quick) {
    L.push('> **Smoke run (BENCH_QUICK)**: short runs at low concurrency to check the harness, not a measurement.', '');
  }
  L.push(`Command: \`${meta.command}\` — ${meta.date}, commit \`${meta.commit}\`.`, '');
  L.push(
    `Machine: ${meta.cpus} x ${meta.cpuModel}, ${meta.memGb} GB RAM, Linux ${meta.kernel}, Node ${meta.node}. ` +
      `Load average before the run: ${meta.loadBefore}.`,
    '',
  );
  L.push(
    'The load generator (autocannon, one process, 127.0.0.1) and all servers share these cores; nothing is pinned. ' +
      `Each server and scenario: ${meta.warmup} s warm-up, then ${meta.runs} run(s) of ${meta.duration} s, the servers alternating ` +
      `(the order rotates each run); medians of the runs are reported. Concurrency: ${meta.connections.join(', ')} connections, no pipelining. ` +
      'Latencies come from autocannon in whole milliseconds.',
    '',
  );
  L.push(
    'CPU s / 1k req: user + system CPU seconds per 1,000 completed requests, from /proc/<pid>/stat before and after each run; ' +
      "for Postgres, summed over Tessera's embedded cluster (postmaster, its live backends, and those that exited: cutime/cstime).",
    '',
  );
  L.push('## Results', '');
  L.push('| scenario | server | conc. | req/s | p50 ms | p99 ms | errors / non-2xx | CPU s / 1k req, server | CPU s / 1k req, Postgres |');
  L.push('|---|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    const rate = r.pairs ? `${int(r.rps)} (${int(r.pairsPerSec)} pairs/s)` : int(r.rps);
    const label = r.revocationsPerSec !== null && r.revocationsPerSec !== undefined ? `${r.label} (${int(r.revocationsPerSec)} achieved)` : r.label;
    L.push(
      `| ${r.scenarioTitle} | ${label} | ${r.c} | ${rate} | ${ms(r.p50)} | ${ms(r.p99)} | ${r.errors} / ${r.non2xx} | ${cpu(r.cpuServer)} | ${r.server === 'tessera' ? cpu(r.cpuPg) : '-'} |`,
    );
  }
  L.push('');
  if (meta.charts?.clients || meta.charts?.concurrency) {
    L.push('## Growth curves', '');
    if (meta.charts.clients) L.push(`![tokens/s and p99 by distinct clients](${meta.charts.clients})`, '');
    if (meta.charts.concurrency) L.push(`![tokens/s and p99 by concurrency](${meta.charts.concurrency})`, '');
  }
  const flowRows = rows.filter((r) => r.scenario === 'verify' && r.variant === 'revoking');
  if (flowRows.length) {
    L.push('## Verification with revocations flowing', '');
    L.push(
      `Each verification measured without and with ${int(meta.revocationsPerSecond)} revocations/s requested from a separate process ` +
        `(${meta.revocationSource === 'http' ? 'POST /oauth/revoke' : "Tessera's revokeTokens straight into Postgres"}), ` +
        'in the same run, the order rotating; medians of the runs.',
      '',
    );
    L.push('| verification | conc. | req/s without | req/s with | with / without | p99 ms without / with | revocations/s achieved |');
    L.push('|---|---:|---:|---:|---:|---:|---:|');
    for (const on of flowRows) {
      const off = rowAt(rows, 'verify', on.server, undefined, on.c);
      if (!off) continue;
      const what = on.server === 'local' ? "local: createVerifier (revocations: 'stream'), in-process" : 'Tessera GET /gateway/verify, JWT';
      L.push(
        `| ${what} | ${on.c} | ${int(off.rps)} | ${int(on.rps)} | ${(on.rps / off.rps).toFixed(2)}x | ${ms(off.p99)} / ${ms(on.p99)} | ${int(on.revocationsPerSec ?? 0)} |`,
      );
    }
    L.push('');
  }
  L.push('## Targets', '');
  L.push('| target | conc. | measured | goal | status | measured alone by |');
  L.push('|---|---:|---:|---:|---|---|');
  for (const t of targets)
    L.push(`| ${t.name} | ${t.c} | ${t.measured ?? '-'} | ${t.goal} | ${t.status === 'met' ? '**met**' : t.status} | \`${t.command}\` |`);
  L.push('');
  L.push('## References', '');
  if (meta.sign) {
    L.push(
      `Raw Ed25519 signing rate of this machine, ${meta.sign.threads} threads (every CPU), nothing else in them: ` +
        `**${int(meta.sign.perSecond)} signatures/s** (per thread: ${meta.sign.perThread.map(int).join(', ')}), ` +
        `i.e. ${cpu(cpuPer1k(meta.sign))} CPU s per 1,000 signatures.`,
      '',
    );
  }
  if (meta.proofCheck) {
    const pc = meta.proofCheck;
    L.push(
      `Raw DPoP proof signature checks (${pc.alg}), ${pc.threads} threads: **${int(pc.perSecond)} checks/s** (per thread: ${pc.perThread.map(int).join(', ')}), ` +
        `i.e. ${cpu(cpuPer1k(pc))} CPU s per 1,000 checks.`,
      '',
    );
  }
  L.push('| scenario | Tessera target | conc. | Tessera / oidc-provider | Tessera / ceiling | Tessera / HTTP floor |');
  L.push('|---|---|---:|---:|---:|---:|');
  for (const r of meta.ratios) L.push(`| ${r.scenario} | ${r.label} | ${r.c} | ${r.peer ?? '-'} | ${r.ceiling ?? '-'} | ${r.floor ?? '-'} |`);
  L.push('');
  if (meta.population) {
    const p = meta.population;
    L.push('## Population', '');
    L.push(
      '| SDK keys | users | fixture | cold start to /readyz | Tessera RSS after start | RSS at the end | peak RSS | Postgres database | sdk_keys (with indexes) |',
    );
    L.push('|---:|---:|---|---:|---:|---:|---:|---:|---:|');
    L.push(
      `| ${int(p.keys)} | ${int(p.users)} | ${p.method}, ${p.reused ? `reused (built in ${p.buildSeconds.toFixed(1)} s)` : `built in ${p.buildSeconds.toFixed(1)} s`} | ` +
        `${p.coldStartSeconds.toFixed(2)} s | ${MB(p.rssAfterStartBytes)} | ${MB(p.rssEndBytes)} | ${MB(p.rssPeakBytes)} | ${MB(p.databaseBytes)} | ${MB(p.sdkKeysBytes)} |`,
    );
    L.push('');
  }
  L.push(...whereTheTimeGoes(meta, rows, targets));
  if (unavailable.length) {
    L.push('## Not available on this build', '');
    for (const u of unavailable) L.push(`- ${u}`);
    L.push('');
  }
  L.push('## Validity', '');
  if (failures.length) {
    L.push('**INVALID RUN**: non-2xx responses, errors or failed checks:', '');
    for (const f of failures) L.push(`- ${f}`);
  } else {
    L.push('Every response of every run (warm-ups included) was 2xx; no socket errors or timeouts.');
  }
  L.push('');
  L.push('## Set-up', '');
  for (const n of notes) L.push(`- ${n}`);
  L.push('');
  return L.join('\n');
}

/** CPU seconds 1,000 operations of a raw rate cost (a signature, a proof check), from the all-core rate (every thread busy on its own core). */
function cpuPer1k(rate) {
  return (rate.threads / rate.perSecond) * 1000;
}

/**
 * Where the time goes, from this run's own figures: CPU per 1,000 requests of the HTTP floor, of a bare
 * signature, of the ceiling and of Tessera (server and Postgres), and for each missed target the figures
 * that explain it.
 */
function whereTheTimeGoes(meta, rows, targets) {
  const L = ['## Where the time goes', ''];
  const cc = rows.filter((r) => (r.scenario === 'cc-one' || r.scenario === 'cc-conc') && r.server === 'tessera');
  if (cc.length) {
    L.push(
      'client_credentials, one client, CPU seconds per 1,000 tokens. The HTTP floor is what parsing, routing and answering a request costs; ' +
        "a signature's share is the raw rate's; the ceiling adds the client look-up, the HMAC and the signature to the floor; Tessera's remainder " +
        "over the ceiling is its own work (the key's status and expiry checks, scopes and claims, usage stamps, metrics).",
      '',
    );
    L.push(
      '| scenario | conc. | HTTP floor | + one signature | ceiling | Tessera server | Tessera Postgres | Tessera - ceiling | load generator (per 1k, Tessera run) |',
    );
    L.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const r of cc) {
      const floor = rowAt(rows, r.scenario, 'floor', undefined, r.c);
      const ceiling = rowAt(rows, r.scenario, 'ceiling', undefined, r.c);
      const sig = meta.sign ? cpuPer1k(meta.sign) : null;
      const sum = floor?.cpuServer != null && sig !== null ? floor.cpuServer + sig : null;
      const diff = ceiling?.cpuServer != null && r.cpuServer != null ? r.cpuServer - ceiling.cpuServer : null;
      L.push(
        `| ${r.scenario} | ${r.c} | ${cpu(floor?.cpuServer)} | ${cpu(sum)} | ${cpu(ceiling?.cpuServer)} | ${cpu(r.cpuServer)} | ${cpu(r.cpuPg)} | ${cpu(diff)} | ${cpu(r.cpuLoadGen)} |`,
      );
    }
    L.push('');
  }
  const pop = rows.filter((r) => r.scenario === 'cc-pop');
  if (pop.length) {
    L.push('By distinct clients: CPU per 1,000 tokens on the server and in Postgres (a miss of the client cache is a batched read of Postgres).', '');
    L.push('| distinct clients | tokens/s | p99 ms | CPU s / 1k, server | CPU s / 1k, Postgres |');
    L.push('|---:|---:|---:|---:|---:|');
    for (const r of pop) L.push(`| ${int(r.clients)} | ${int(r.rps)} | ${ms(r.p99)} | ${cpu(r.cpuServer)} | ${cpu(r.cpuPg)} |`);
    L.push('');
  }
  const missed = targets.filter((t) => t.status === 'not met');
  if (missed.length) {
    L.push('Missed targets:', '');
    for (const t of missed) {
      const beyond = beyondThisMachine(t, meta, rows);
      L.push(`- ${t.name} (${t.measured}, goal ${t.goal}): ${explain(t, meta, rows)}${beyond ? ` **Beyond this machine as measured:** ${beyond}` : ''}`);
    }
    L.push('');
  }
  return L;
}

function explain(t, meta, rows) {
  const p = meta.population;
  const one = rows.find((r) => r.scenario === 'cc-one' && r.server === 'tessera' && r.c === 50);
  if (/RSS/.test(t.name) && p)
    return `RSS ${MB(p.rssAfterStartBytes)} after start, ${MB(p.rssEndBytes)} at the end (peak ${MB(p.rssPeakBytes)}); the client cache holds at most TESSERA_CLIENT_CACHE_MAX=${p.clientCacheMax} entries of ~1 KB.`;
  if (/cold start/.test(t.name) && p)
    return `${p.coldStartSeconds.toFixed(2)} s from spawn to /readyz, embedded Postgres start included; see the Tessera population log with BENCH_KEEP=1 for the phases.`;
  if (/distinct clients/.test(t.name)) {
    const n = Number(/([\d,]+) distinct/.exec(t.name)?.[1].replace(/,/g, ''));
    const r = rows.find((x) => x.scenario === 'cc-pop' && x.clients === n);
    if (r && one)
      return `server CPU ${cpu(r.cpuServer)} s / 1k (one client: ${cpu(one.cpuServer)}), Postgres ${cpu(r.cpuPg)} s / 1k (one client: ${cpu(one.cpuPg)}): the difference is the client-cache misses read from Postgres.`;
  }
  if (/flowing/.test(t.name)) return explainFlow(t, meta, rows);
  if (/DPoP/.test(t.name)) {
    const { bearer, dpop } = dpopRows(t, rows);
    if (bearer && dpop) {
      const text =
        `CPU s / 1k requests, Bearer then DPoP: Tessera server ${cpu(bearer.cpuServer)} then ${cpu(dpop.cpuServer)}, Postgres ${cpu(bearer.cpuPg)} then ${cpu(dpop.cpuPg)} ` +
        `(each proof's jti is one row of the shared replay record), load generator ${cpu(bearer.cpuLoadGen)} then ${cpu(dpop.cpuLoadGen)}. ` +
        'A fresh proof per request is one more signature check, its claims, and that row: work no cache can skip.';
      const f = dpopFloor(t, meta, rows);
      if (!f) return text;
      return (
        `${text} The least a DPoP request can cost here is the Bearer request's server CPU, one raw ${f.alg} check (${cpu(f.check)}, see References), ` +
        `its row's Postgres work and its load generator: ${cpu(f.floor)} CPU s / 1k. At the ${f.bearerCores.toFixed(2)} cores the Bearer side used in this run, ` +
        `that floor allows at most ${f.ratioAtBearerCores.toFixed(2)}x; Tessera's DPoP path spent ${cpu(f.extra)} CPU s / 1k more than the Bearer path and the raw check ` +
        "(the proof parsed and its claims checked, the check handed to the thread pool and back, the replay statement's client work)."
      );
    }
  }
  const scenario = /verify/.test(t.name) ? 'verify' : /login/.test(t.name) ? 'login' : /one client/.test(t.name) ? 'cc-one' : null;
  const r =
    scenario && rows.find((x) => x.scenario === scenario && x.server === 'tessera' && x.c === 50 && (!/session/.test(t.name) || x.variant === 'session'));
  if (r) return `Tessera server ${cpu(r.cpuServer)} CPU s / 1k, Postgres ${cpu(r.cpuPg)}, load generator ${cpu(r.cpuLoadGen)} (see the tables above).`;
  return 'no figures of this run explain it; see the tables above.';
}

/**
 * For a missed target, the bound this run's own figures put on it, when its goal (`t.limit`) lies
 * past it:
 * - a ratio to oidc-provider above what the reference ceiling (the same work done the cheapest
 *   known way, in the same run) reached against oidc-provider;
 * - a rate whose Postgres work, HTTP floor and load generator alone (measured per request) need
 *   more CPU than the machine has;
 * - a ratio with revocations flowing above what is left of the cores once the flow's own
 *   processes took their measured share, for the cores the verifications used without it;
 * - a DPoP rate (the goal's share of the Bearer rate) whose floor per request (see dpopFloor)
 *   needs more CPU than the machine has.
 * Latency goals get no bound: autocannon's latencies leave out the time a request waits in the
 * load generator, so Little's law bounds them only loosely. Null when this run's figures do not
 * rule the goal out.
 */
export function beyondThisMachine(t, meta, rows) {
  const goal = t.limit;
  if (typeof goal !== 'number' || !Number.isFinite(goal)) return null;
  if (/one client: Tessera \/ oidc-provider/.test(t.name)) {
    const peer = rowAt(rows, 'cc-one', 'peer');
    const ceiling = rowAt(rows, 'cc-one', 'ceiling');
    if (!peer || !ceiling || ceiling.rps >= goal * peer.rps) return null;
    return (
      `${goal}x oidc-provider is ${int(goal * peer.rps)} tokens/s; the reference ceiling, the same work done the cheapest known way, reached ` +
      `${int(ceiling.rps)} (${(ceiling.rps / peer.rps).toFixed(2)}x) in this run.`
    );
  }
  if (/login/.test(t.name)) {
    const r = rowAt(rows, 'login', 'tessera');
    const floor = rowAt(rows, 'cc-one', 'floor');
    if (!r || !floor || r.cpuPg == null || r.cpuLoadGen == null || floor.cpuServer == null) return null;
    const perRequest = floor.cpuServer + r.cpuPg + r.cpuLoadGen;
    const cores = (2 * goal * perRequest) / 1000;
    if (cores <= meta.cpus) return null;
    return (
      `${int(goal)} pairs/s is ${int(2 * goal)} requests/s; with only the HTTP floor's CPU per request (${cpu(floor.cpuServer)} s / 1k) ` +
      `and this run's Postgres (${cpu(r.cpuPg)}) and load generator (${cpu(r.cpuLoadGen)}) per request, that is ${cores.toFixed(2)} cores of ${meta.cpus}.`
    );
  }
  if (/DPoP/.test(t.name)) {
    const f = dpopFloor(t, meta, rows);
    if (!f) return null;
    const cores = (goal * f.bearer.rps * f.floor) / 1000;
    if (cores <= meta.cpus) return null;
    return (
      `${goal}x the Bearer rate is ${int(goal * f.bearer.rps)} req/s; at the floor of ${cpu(f.floor)} CPU s / 1k DPoP requests (see the explanation) ` +
      `that is ${cores.toFixed(2)} cores of ${meta.cpus}.`
    );
  }
  if (/flowing/.test(t.name)) {
    const f = flowShare(t, rows);
    // A process whose CPU could not be read is left out of the flow's share, which only loosens the bound.
    if (!f || f.base.cpuServer == null || f.base.cpuLoadGen == null) return null;
    const used = (f.base.rps * (f.base.cpuServer + (f.base.cpuPg ?? 0) + f.base.cpuLoadGen)) / 1000;
    const bound = (meta.cpus - f.cores) / used;
    if (bound >= goal) return null;
    return (
      `without the flow the verifications and their load generator used ${used.toFixed(2)} cores; the flow's processes took ${f.cores.toFixed(2)} of ${meta.cpus}, ` +
      `leaving at most ${bound.toFixed(2)}x of that.`
    );
  }
  return null;
}

/** The Bearer and DPoP rows of a DPoP target's scenario at its concurrency. */
function dpopRows(t, rows) {
  const id = /issuance/.test(t.name) ? 'dpop-token' : 'dpop-verify';
  return { bearer: rowAt(rows, id, 'tessera', undefined, t.c), dpop: rowAt(rows, id, 'tessera', 'dpop', t.c) };
}

/**
 * The least CPU a DPoP request of this run can cost (CPU s / 1k requests): what the Bearer request of
 * the same scenario cost Tessera, plus one raw proof signature check (the rate of
 * bench/tools/sign-rate.mjs proof-check, every core busy), plus the DPoP request's own Postgres and
 * load-generator work; and the ratio that floor allows at the cores the Bearer side used. Null
 * without the figures.
 */
function dpopFloor(t, meta, rows) {
  const { bearer, dpop } = dpopRows(t, rows);
  const pc = meta.proofCheck;
  if (!bearer || !dpop || !pc || bearer.cpuServer == null || bearer.cpuLoadGen == null || dpop.cpuServer == null || dpop.cpuLoadGen == null) return null;
  const check = cpuPer1k(pc);
  const floor = bearer.cpuServer + check + (dpop.cpuPg ?? 0) + dpop.cpuLoadGen;
  const bearerCores = (bearer.rps * (bearer.cpuServer + (bearer.cpuPg ?? 0) + bearer.cpuLoadGen)) / 1000;
  return {
    alg: pc.alg,
    bearer,
    check,
    floor,
    bearerCores,
    ratioAtBearerCores: (bearerCores * 1000) / floor / bearer.rps,
    extra: dpop.cpuServer - bearer.cpuServer - check,
  };
}

/**
 * A verification rate with revocations flowing against the same rate without: what the flow cost
 * each process per revocation (its CPU during the flowing run, less what the verifications
 * themselves cost at the rate reached), and the share of the machine's cores that took.
 */
function explainFlow(t, meta, rows) {
  const f = flowShare(t, rows);
  if (!f) return 'no figures of this run explain it; see the tables above.';
  const { base, flowing, revs, parts, cores } = f;
  const each = parts.map(([name, c]) => `${name} ${((c / revs) * 1000).toFixed(2)} ms`);
  return (
    `${int(base.rps)} req/s without the flow, ${int(flowing.rps)} with it; the measured process spent ${cpu(base.cpuServer)} then ${cpu(flowing.cpuServer)} CPU s / 1k verifications. ` +
    `CPU per revocation while ${int(revs)} a second flowed: ${each.join(', ')}` +
    `: ${cores.toFixed(2)} of this machine's ${meta.cpus} cores went to the flow, taken from the verifications and the load generator that share them.`
  );
}

/**
 * What the flow of revocations cost each process while it ran (CPU seconds a second, less what the
 * verifications themselves cost at the rate reached; a process whose CPU could not be read is left
 * out) and their sum in cores; null without the figures.
 */
function flowShare(t, rows) {
  const server = /local verification/.test(t.name) ? 'local' : 'tessera';
  const base = rowAt(rows, 'verify', server);
  const flowing = rowAt(rows, 'verify', server, 'revoking');
  const per = flowing?.flowCpuPerSec;
  const revs = flowing?.revocationsPerSec;
  if (!base || !flowing || !per || !revs) return null;
  // CPU seconds per second the verifications themselves took at the flowing run's rate.
  const own = (perK) => ((perK ?? 0) * flowing.rps) / 1000;
  const less = (total, perK) => (total === null || total === undefined ? null : total - own(perK));
  const parts = [];
  const add = (name, cpuPerSec) => {
    if (cpuPerSec !== null && cpuPerSec !== undefined && Number.isFinite(cpuPerSec)) parts.push([name, Math.max(0, cpuPerSec)]);
  };
  add('Tessera', server === 'tessera' ? less(per.tessera, base.cpuServer) : per.tessera);
  add('Postgres', server === 'tessera' ? less(per.postgres, base.cpuPg) : per.postgres);
  add('the revocation writer', per.flow);
  if (server === 'local') add('the verifier', own(flowing.cpuServer) - own(base.cpuServer));
  return { base, flowing, revs, parts, cores: parts.reduce((a, [, c]) => a + c, 0) };
}

export { SERVER_NAMES };
