import t from 'tap';
import { randomBytes } from 'node:crypto';
import { bearer, harness } from './support/helper.js';

t.test('healthz answers without touching dependencies', async (t) => {
  const h = await harness(t);
  const res = await h.inject({ method: 'GET', url: '/healthz' });
  t.equal(res.statusCode, 200);
  t.same(res.json(), { status: 'ok' });
  t.match(res.headers['x-request-id'], /^[0-9a-f-]{36}$/);
});

t.test('a safe incoming x-request-id is echoed, a hostile one replaced', async (t) => {
  const h = await harness(t);
  const ok = await h.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'abc-123' } });
  t.equal(ok.headers['x-request-id'], 'abc-123');
  const bad = await h.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'a b\u0000<script>' } });
  t.not(bad.headers['x-request-id'], 'a b\u0000<script>');
});

t.test('readyz checks the database, migrations and the change listener', async (t) => {
  const h = await harness(t);
  const res = await h.inject({ method: 'GET', url: '/readyz' });
  t.equal(res.statusCode, 200);
  const body = res.json();
  t.equal(body.status, 'ok');
  t.equal(body.checks.database, 'ok');
  t.equal(body.checks.migrations, 'ok');
  t.equal(body.checks.change_listener, 'ok');

  // A failing check turns readiness off, with the reason.
  h.app.readinessChecks.set('probe', async () => 'probe says no');
  const down = await h.inject({ method: 'GET', url: '/readyz' });
  t.equal(down.statusCode, 503);
  t.equal(down.json().status, 'unavailable');
  t.equal(down.json().checks.probe, 'probe says no');
});

t.test('readyz reports pending migrations', async (t) => {
  const h = await harness(t);
  await h.db
    .deleteFrom('tessera_migrations' as never)
    .where('name' as never, '=', '0002_api_tokens' as never)
    .execute();
  const res = await h.inject({ method: 'GET', url: '/readyz' });
  t.equal(res.statusCode, 503);
  t.match(res.json().checks.migrations, /pending migrations: 0002_api_tokens/);
});

t.test('unknown paths get 404 and wrong methods 405 with Allow, both as JSON errors', async (t) => {
  const h = await harness(t);
  const nf = await h.inject({ method: 'GET', url: '/no/such/thing?x=1' });
  t.equal(nf.statusCode, 404);
  t.same(nf.json(), { error: 'not_found', message: 'no route GET /no/such/thing' });
  const na = await h.inject({ method: 'DELETE', url: '/healthz' });
  t.equal(na.statusCode, 405);
  t.equal(na.json().error, 'method_not_allowed');
  t.equal(na.headers.allow, 'GET, HEAD');
});

t.test('/docs leads to a rendered API reference and /openapi.yaml serves the contract', async (t) => {
  const h = await harness(t);
  const docs = await h.inject({ method: 'GET', url: '/docs' });
  t.equal(docs.statusCode, 302);
  t.equal(docs.headers.location, '/docs/ui/');
  const ui = await h.inject({ method: 'GET', url: '/docs/ui/' });
  t.equal(ui.statusCode, 200);
  t.match(ui.body, /swagger-ui/i);
  const spec = await h.inject({ method: 'GET', url: '/openapi.yaml' });
  t.equal(spec.statusCode, 200);
  t.match(spec.headers['content-type'], /yaml/);
  t.match(spec.body, /^openapi: 3\.1\.0/);
});

t.test('/metrics exposes Prometheus counters by route pattern, never raw URLs', async (t) => {
  const h = await harness(t);
  await h.inject({ method: 'GET', url: '/healthz' });
  await h.inject({ method: 'GET', url: '/no/such/secretvalue' });
  const res = await h.inject({ method: 'GET', url: '/metrics' });
  t.equal(res.statusCode, 200);
  t.match(res.headers['content-type'], /text\/plain/);
  t.match(res.body, /tessera_http_requests_total\{method="GET",route="\/healthz",status="200",service="tessera"\} 1/);
  t.match(res.body, /tessera_http_request_duration_seconds_bucket/);
  t.notMatch(res.body, /secretvalue/);
});

t.test('TESSERA_METRICS_TOKEN: /metrics wants that bearer token, and only that', async (t) => {
  const token = randomBytes(32).toString('base64url');
  const h = await harness(t, { env: { TESSERA_METRICS_TOKEN: token } });
  const none = await h.inject({ method: 'GET', url: '/metrics' });
  t.equal(none.statusCode, 401);
  t.equal(none.headers['www-authenticate'], 'Bearer realm="metrics"');
  t.match(none.json(), { error: 'invalid_token' });
  const wrong = await h.inject({ method: 'GET', url: '/metrics', headers: bearer(token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A')) });
  t.equal(wrong.statusCode, 401);
  t.match(wrong.headers['www-authenticate'], /error="invalid_token"/);
  t.notMatch(wrong.body, token.slice(0, 12));
  const basicAuth = await h.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Basic ${Buffer.from(`x:${token}`).toString('base64')}` } });
  t.equal(basicAuth.statusCode, 401, 'only as a bearer token');
  const ok = await h.inject({ method: 'GET', url: '/metrics', headers: bearer(token) });
  t.equal(ok.statusCode, 200);
  t.match(ok.body, /tessera_http_requests_total\{method="GET",route="\/metrics",status="401",service="tessera"\} 3/);
  // Everything else stays as it was: health checks need no token.
  t.equal((await h.inject({ method: 'GET', url: '/healthz' })).statusCode, 200);
});
