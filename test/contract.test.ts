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
  const served = new Set(app.routeTable.filter((r) => !r.hidden).map((r) => `${r.method} ${r.url.replace(/:(\w+)/g, '{$1}')}`));
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
  // Hidden routes are only the API reference's own static assets and the browser console's HTML
  // pages and assets (not API operations; their contract is test/console*.test.ts).
  const hidden = app.routeTable.filter((r) => r.hidden).map((r) => r.url);
  t.same(
    hidden.filter((u) => !u.startsWith('/docs/ui') && !/^\/console(\/|$)/.test(u)),
    [],
    'nothing but /docs/ui assets and /console/ pages is hidden from the contract',
  );
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
      t.ok(
        Object.keys(op.responses ?? {}).some((s) => /^[23]/.test(s)),
        `${m} ${path} documents a success response`,
      );
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

type Op = {
  operationId?: string;
  security?: Array<Record<string, string[]>>;
  responses: Record<string, { content?: Record<string, { schema?: { required?: string[]; properties?: Record<string, unknown> } }> }>;
};
const operationsOf = () => {
  const spec = parse(committed) as { paths: Record<string, Record<string, Op>> };
  const ops = new Map<string, Op>();
  for (const [path, item] of Object.entries(spec.paths)) for (const m of METHODS) if (item[m]) ops.set(`${m.toUpperCase()} ${path}`, item[m]);
  return ops;
};
const specKey = (method: string, url: string) => `${method} ${url.replace(/:(\w+)/g, '{$1}')}`;

t.test('every operation has a unique camelCase operationId', async (t) => {
  const seen = new Map<string, string>();
  for (const [key, op] of operationsOf()) {
    t.match(op.operationId, /^[a-z][A-Za-z0-9]*$/, `${key} has a camelCase operationId`);
    if (op.operationId) {
      t.notOk(seen.has(op.operationId), `${key}: operationId ${op.operationId} is unique`);
      seen.set(op.operationId, key);
    }
  }
});

t.test('security: a route with a bearer guard lists the bearer scheme; every operation declares security', async (t) => {
  const { app, close } = await contractApp();
  t.teardown(close);
  const ops = operationsOf();
  const routes = app.routeTable.filter((r) => !r.hidden);
  t.ok(
    routes.some((r) => r.facts.guarded),
    'some routes are guarded',
  );
  for (const r of routes) {
    const op = ops.get(specKey(r.method, r.url));
    if (!op) continue; // the route-table test reports it
    t.ok(Array.isArray(op.security), `${r.method} ${r.url} declares security (an empty list when public)`);
    if (r.facts.guarded)
      t.ok(
        op.security?.some((s) => 'bearer' in s),
        `${r.method} ${r.url} is guarded: security lists bearer`,
      );
  }
});

t.test('every operation documents the error statuses the shared machinery can answer for it, in its error format', async (t) => {
  const { app, close } = await contractApp();
  t.teardown(close);
  const { implicitErrorStatuses } = await import('../src/platform/http/contract.js');
  const ops = operationsOf();
  for (const r of app.routeTable.filter((x) => !x.hidden)) {
    const op = ops.get(specKey(r.method, r.url));
    if (!op) continue;
    const missing = implicitErrorStatuses(r.facts).filter((s) => !op.responses[String(s)]);
    t.same(missing, [], `${r.method} ${r.url} documents ${implicitErrorStatuses(r.facts).join(', ')}`);
    for (const [status, res] of Object.entries(op.responses)) {
      if (!/^[45]/.test(status)) continue;
      const schema = res.content?.['application/json']?.schema;
      t.ok(schema, `${r.method} ${r.url} ${status}: a JSON body`);
      const props = Object.keys(schema?.properties ?? {});
      if (!props.includes('error')) continue; // not an error body (the readiness report on /readyz 503)
      if (r.errorFormat === 'oauth') t.same(props.sort(), ['error', 'error_description'], `${r.method} ${r.url} ${status}: RFC 6749 error body`);
      else t.same(schema?.required, ['error', 'message'], `${r.method} ${r.url} ${status}: {error, message}`);
    }
  }
});

t.test('the contract rules run at registration: operationId required, security and statuses derived', async (t) => {
  const Fastify = (await import('fastify')).default;
  const { registerContractRules, markBearerGuard } = await import('../src/platform/http/contract.js');
  const guard = markBearerGuard(async () => undefined, ['api']);

  const bare = Fastify();
  registerContractRules(bare);
  t.throws(() => bare.get('/x', { schema: { summary: 'x' } }, async () => ''), /operationId/, 'no operationId: registration throws');
  t.throws(
    () => bare.get('/y', { schema: { operationId: 'getY', security: [{ clientBasic: [] }] }, preHandler: guard }, async () => ''),
    /bearer/,
    'a guarded route whose security omits bearer: registration throws',
  );
  bare.get('/z', { schema: { operationId: 'getZ' } }, async () => '');
  t.throws(() => bare.post('/z', { schema: { operationId: 'getZ' } }, async () => ''), /already used/, 'duplicate operationId throws');
  bare.get('/hidden', { schema: { hide: true } }, async () => '');

  let seen: Record<string, unknown> | undefined;
  const app = Fastify();
  registerContractRules(app);
  app.addHook('onRoute', (r) => {
    if (r.url === '/guarded' && r.method === 'PUT') seen = r.schema as Record<string, unknown>;
  });
  app.put('/guarded', { schema: { operationId: 'putGuarded', body: { type: 'object' } }, preHandler: guard }, async () => '');
  t.same(seen?.security, [{ bearer: [] }, { accessToken: [] }], 'security derived from the guard');
  t.same(Object.keys(seen?.response as object), ['400', '401', '403', '413', '415', '429', '500', '503'], 'implicit statuses added');
  await app.close();
  await bare.close();
});
