// Growth curves as SVG, drawn headless with vega-lite + vega (no canvas, no native code):
// tokens/s and p99 against distinct clients (cc-pop) and against concurrency (cc-conc).
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import * as vega from 'vega';
import { compile } from 'vega-lite';

const SERIES = { tessera: 'Tessera', ceiling: 'reference ceiling', floor: 'HTTP floor' };

function panel(values, x, xTitle, y, yTitle, withColor) {
  return {
    width: 420,
    height: 200,
    mark: { type: 'line', point: true },
    encoding: {
      x: { field: x, type: 'quantitative', title: xTitle, scale: { type: 'log' }, axis: { values: [...new Set(values.map((v) => v[x]))] } },
      y: { field: y, type: 'quantitative', title: yTitle, scale: { zero: true } },
      ...(withColor ? { color: { field: 'server', type: 'nominal', title: null } } : {}),
      tooltip: [{ field: x }, { field: y }],
    },
  };
}

async function svg(title, values, x, xTitle, withColor) {
  const spec = compile({
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    data: { values },
    hconcat: [panel(values, x, xTitle, 'rps', 'tokens/s', withColor), panel(values, x, xTitle, 'p99', 'p99 latency (ms)', withColor)],
    config: { font: 'sans-serif', background: 'white' },
  }).spec;
  return new vega.View(vega.parse(spec), { renderer: 'none' }).toSVG();
}

/** Writes `<out>-clients.svg` and `<out>-concurrency.svg` when their rows exist; returns their file names. */
export async function renderCharts(rows, dir, out) {
  const written = {};
  const pop = rows.filter((r) => r.scenario === 'cc-pop' && r.clients);
  if (pop.length) {
    const values = pop.map((r) => ({ clients: r.clients, rps: Math.round(r.rps), p99: r.p99, server: 'Tessera' }));
    const file = `${out}-clients.svg`;
    writeFileSync(
      path.join(dir, file),
      await svg(`client_credentials by distinct clients (round-robin, concurrency ${pop[0].c})`, values, 'clients', 'distinct clients', false),
    );
    written.clients = file;
  }
  const conc = rows.filter((r) => r.scenario === 'cc-conc');
  if (conc.length) {
    const values = conc.map((r) => ({ concurrency: r.c, rps: Math.round(r.rps), p99: r.p99, server: SERIES[r.server] ?? r.server }));
    const file = `${out}-concurrency.svg`;
    writeFileSync(path.join(dir, file), await svg('client_credentials, one client, by concurrency', values, 'concurrency', 'connections', true));
    written.concurrency = file;
  }
  return written;
}
