import t from 'tap';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { validate } from '@readme/openapi-parser';
import { contractApp } from '../src/scripts/contract-app.js';

const committed = readFileSync(new URL('../openapi.yaml', import.meta.url), 'utf8');
const METHODS = ['get', 'put', 'post', 'delete', 'patch'];

t.test('openapi.yaml is a valid OpenAPI 3.1 document', async (t) => {
  const result = await validate(parse(committed));
  t.ok(result.valid, `validator errors: ${JSON.stringify('errors' in result ? result.errors : [], null, 2).slice(0, 2000)}`);
});

t.test('openapi.yaml matches the routes the app serves, both ways', async (t) => {
  const { app, close } = await contractApp();
  t.teardown(close);
  const served = new Set(
    app.routeTable.filter((r) => !r.hidden).map((r) => `${r.method} ${r.url.replace(/:(\w+)/g, '{$1}')}`),
  );
  const spec = parse(committed) as { paths: Record<string, Record<string, unknown>> };
  const documented = new Set<string>();
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const m of METHODS) if (item[m]) documented.add(`${m.toUpperCase()} ${path}`);
  }
  const undocumented = [...served].filter((r) => !documented.has(r)).sort();
  const phantom = [...documented].filter((r) => !served.has(r)).sort();
  t.same(undocumented, [], 'every served route is in openapi.yaml (run npm run openapi)');
  t.same(phantom, [], 'every route in openapi.yaml is served');
  t.ok(served.size >= 4, 'the app serves routes');
  // Hidden routes are only the API reference's own static assets.
  const hidden = app.routeTable.filter((r) => r.hidden).map((r) => r.url);
  t.same(hidden.filter((u) => !u.startsWith('/docs/ui')), [], 'nothing but /docs/ui assets is hidden from the contract');
});

t.test('openapi.yaml is exactly what the route schemas generate (npm run openapi)', async (t) => {
  const { app, close } = await contractApp();
  t.teardown(close);
  t.equal(app.openapiYaml(), committed);
});

t.test('every operation has a summary, a tag and a success response', async (t) => {
  const spec = parse(committed) as { paths: Record<string, Record<string, { summary?: string; tags?: string[]; responses?: Record<string, unknown> }>> };
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const m of METHODS) {
      const op = item[m];
      if (!op) continue;
      t.ok(op.summary, `${m} ${path} has a summary`);
      t.ok(op.tags?.length, `${m} ${path} has a tag`);
      t.ok(Object.keys(op.responses ?? {}).some((s) => /^[23]/.test(s)), `${m} ${path} documents a success response`);
    }
  }
});

t.test('every tag an operation uses is declared with a description', async (t) => {
  const spec = parse(committed) as { tags: Array<{ name: string; description?: string }>; paths: Record<string, Record<string, { tags?: string[] }>> };
  const declared = new Map(spec.tags.map((x) => [x.name, x.description]));
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const m of METHODS) for (const tag of item[m]?.tags ?? []) t.ok(declared.get(tag), `${m} ${path}: tag ${tag} declared`);
  }
});
