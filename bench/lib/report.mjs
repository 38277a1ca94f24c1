// Markdown for bench/results/<out>.md.

const SERVER_NAMES = { tessera: 'Tessera', peer: 'oidc-provider', ceiling: 'reference ceiling' };

const int = (n) => Math.round(n).toLocaleString('en-US');
// autocannon records latencies in whole milliseconds; a median of runs may end in .5.
const ms = (n) => (n === null || n === undefined ? '-' : Number.isInteger(n) ? String(n) : n.toFixed(1));
const cpu = (n) => (n === null || n === undefined ? '-' : n.toFixed(3));

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
    L.push(
      `| ${r.scenarioTitle} | ${r.label} | ${r.c} | ${rate} | ${ms(r.p50)} | ${ms(r.p99)} | ${r.errors} / ${r.non2xx} | ${cpu(r.cpuServer)} | ${r.server === 'tessera' ? cpu(r.cpuPg) : '-'} |`,
    );
  }
  L.push('');
  L.push('## Targets', '');
  L.push('| target | conc. | measured | goal | status |');
  L.push('|---|---:|---:|---:|---|');
  for (const t of targets) L.push(`| ${t.name} | ${t.c} | ${t.measured ?? '-'} | ${t.goal} | ${t.status === 'met' ? '**met**' : t.status} |`);
  L.push('');
  L.push('## Ratios', '');
  L.push('| scenario | Tessera target | conc. | Tessera / oidc-provider | Tessera / ceiling |');
  L.push('|---|---|---:|---:|---:|');
  for (const r of meta.ratios) L.push(`| ${r.scenario} | ${r.label} | ${r.c} | ${r.peer ?? '-'} | ${r.ceiling ?? '-'} |`);
  L.push('');
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

export { SERVER_NAMES };
