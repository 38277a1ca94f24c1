import t from 'tap';
import net from 'node:net';
import { randomUUID } from 'node:crypto';
import { harness, bearer } from './support/helper.js';

type Schema = { type?: string | string[]; format?: string; pattern?: string; properties?: Record<string, Schema> };

/** A value for a path parameter that passes its schema (so validation reaches the body). */
function paramValue(s: Schema | undefined): string {
  if (s?.format === 'uuid') return randomUUID();
  const candidates = [randomUUID(), `s_${randomUUID()}`, 'ionq', 'k1'];
  return candidates.find((c) => !s?.pattern || new RegExp(s.pattern, 'u').test(c)) ?? 'ionq';
}

function urlOf(route: { url: string; schema: Record<string, unknown> }): string {
  const params = (route.schema.params as Schema | undefined)?.properties;
  return route.url.replace(/:(\w+)/g, (_m, name: string) => paramValue(params?.[name]));
}

/** The same fields with a value of another type that a coercing validator would convert. */
function wrongTyped(body: Schema): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, s] of Object.entries(body.properties ?? {})) {
    const type = Array.isArray(s.type) ? s.type[0] : s.type;
    out[name] = type === 'string' ? 12345 : type === 'integer' || type === 'number' ? '7' : type === 'boolean' ? 'true' : 'api';
  }
  return out;
}

t.test('every JSON route refuses form and text bodies with 415 and wrong-typed JSON with 400 (no coercion)', async (t) => {
  const h = await harness(t);
  const routes = h.app.routeTable.filter((r) => !r.hidden && r.errorFormat === 'api' && ['POST', 'PUT', 'PATCH'].includes(r.method));
  t.ok(routes.filter((r) => r.schema.body).length >= 8, 'the JSON-bodied routes are enumerated from the route table');
  for (const r of routes) {
    const url = urlOf(r);
    for (const type of ['application/x-www-form-urlencoded', 'text/plain']) {
      const res = await h.inject({ method: r.method as 'POST', url, headers: { 'content-type': type }, payload: 'name=x&scopes=api' });
      t.equal(res.statusCode, 415, `${r.method} ${r.url} refuses ${type}`);
      t.equal(res.json().error, 'unsupported_media_type', `${r.method} ${r.url}: {error: unsupported_media_type}`);
      t.type(res.json().message, 'string');
    }
    const body = r.schema.body as Schema | undefined;
    if (!body?.properties || Object.keys(body.properties).length === 0) continue;
    const res = await h.inject({ method: r.method as 'POST', url, payload: wrongTyped(body) });
    t.equal(res.statusCode, 400, `${r.method} ${r.url} refuses a wrong-typed body`);
    t.match(
      res.json().message,
      /^invalid body: body\/\w+ must be (string|integer|number|boolean|array|object)/,
      `${r.method} ${r.url}: a type error, not a coerced value`,
    );
  }
});

t.test('POST /api/access-tokens: a form body is 415, {"name": 12345, "scopes": "api"} is 400, JSON is 201', async (t) => {
  const h = await harness(t);
  const token = await h.apiToken(await h.user());
  const form = await h.inject({
    method: 'POST',
    url: '/api/access-tokens',
    headers: { ...bearer(token), 'content-type': 'application/x-www-form-urlencoded' },
    payload: 'name=ci&scopes=api',
  });
  t.equal(form.statusCode, 415);
  t.same(Object.keys(form.json()).sort(), ['error', 'message']);
  t.equal(form.json().error, 'unsupported_media_type');
  const loose = await h.inject({ method: 'POST', url: '/api/access-tokens', headers: bearer(token), payload: { name: 12345, scopes: 'api' } });
  t.equal(loose.statusCode, 400);
  t.equal(loose.json().error, 'invalid_request');
  const ok = await h.inject({ method: 'POST', url: '/api/access-tokens', headers: bearer(token), payload: { name: 'ci', scopes: ['api'] } });
  t.equal(ok.statusCode, 201);
});

t.test('querystrings are still coerced from strings (?limit=10 is an integer)', async (t) => {
  const h = await harness(t);
  const admin = await h.apiToken(await h.user(), ['admin']);
  const res = await h.inject({ method: 'GET', url: '/admin/users?limit=10', headers: bearer(admin) });
  t.equal(res.statusCode, 200);
  const bad = await h.inject({ method: 'GET', url: '/admin/users?limit=ten', headers: bearer(admin) });
  t.equal(bad.statusCode, 400);
});

t.test('the OAuth routes still read form bodies', async (t) => {
  const h = await harness(t);
  const oauth = h.app.routeTable.filter((r) => !r.hidden && r.errorFormat === 'oauth' && r.method === 'POST');
  t.ok(oauth.length >= 3, 'token, introspect and revoke');
  for (const r of oauth) {
    const res = await h.inject({
      method: 'POST',
      url: r.url,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: 'token=x&grant_type=client_credentials',
    });
    t.not(res.statusCode, 415, `${r.url} parses the form`);
    t.ok([400, 401].includes(res.statusCode), `${r.url}: an OAuth error about the request, not its media type (${res.statusCode})`);
    t.type(res.json().error, 'string');
    t.notOk('message' in res.json(), 'RFC 6749 body');
  }
});

t.test('X-Content-Type-Options: nosniff on every response: success, error, 404, 405 and the HTTP parser errors', async (t) => {
  const h = await harness(t);
  const cases = [
    { method: 'GET', url: '/healthz' },
    { method: 'GET', url: '/.well-known/jwks.json' },
    { method: 'GET', url: '/api/users/me' },
    { method: 'GET', url: '/no/such/path' },
    { method: 'DELETE', url: '/healthz' },
    { method: 'POST', url: '/oauth/token' },
  ] as const;
  for (const c of cases) {
    const res = await h.inject(c);
    t.equal(res.headers['x-content-type-options'], 'nosniff', `${c.method} ${c.url} (${res.statusCode})`);
  }
  await h.app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = h.app.server.address() as net.AddressInfo;
  const raw = await new Promise<string>((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write('GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n'));
    let data = '';
    socket.on('data', (d) => (data += d.toString()));
    socket.on('end', () => resolve(data));
    socket.on('error', reject);
  });
  t.match(raw, /^HTTP\/1\.1 400 /);
  t.match(raw, /\r\nX-Content-Type-Options: nosniff\r\n/i, 'the raw parser-error response too');
});
