// The bench's per-request header (each DPoP proof, each client's credentials) reaches a real HTTP
// server through autocannon as a well-formed request: once per request, the next value each time,
// beside the request's fixed headers and body.
import t, { type Test } from 'tap';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
type Req = { method: string; path: string; headers?: Record<string, string>; body?: string };
const each = (await import(pathToFileURL(path.join(root, 'bench/lib/header-each.mjs')).href)) as {
  withHeaderEach(r: Req, name: string, next: () => string): Req;
  setupClientFor(rs: Req[]): ((client: unknown) => void) | undefined;
  roundRobin(values: string[]): () => string;
};
const autocannon = createRequire(import.meta.url)('autocannon') as (opts: object) => Promise<{ requests: { total: number }; non2xx: number; errors: number }>;

interface Seen {
  method: string;
  url: string;
  raw: string[];
  body: string;
}

async function serve(t: Test): Promise<{ port: number; seen: Seen[] }> {
  const seen: Seen[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      seen.push({ method: req.method!, url: req.url!, raw: req.rawHeaders, body });
      res.end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return { port: (server.address() as AddressInfo).port, seen };
}

const valuesOf = (s: Seen, name: string) => {
  const out: string[] = [];
  for (let i = 0; i < s.raw.length; i += 2) if (s.raw[i]!.toLowerCase() === name) out.push(s.raw[i + 1]!);
  return out;
};

t.test('each request carries the next value once, with the fixed headers and the body intact', async (t) => {
  const { port, seen } = await serve(t);
  let n = 0;
  const requests = [
    each.withHeaderEach(
      {
        method: 'POST',
        path: '/oauth/token',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: 'Basic abc' },
        body: 'grant_type=client_credentials',
      },
      'dpop',
      () => `proof-${n++}`,
    ),
  ];
  const r = await autocannon({ url: `http://127.0.0.1:${port}`, connections: 4, amount: 200, requests, setupClient: each.setupClientFor(requests) });
  t.equal(r.non2xx, 0);
  t.equal(r.errors, 0);
  t.ok(seen.length >= 200, `the server got every request (${seen.length})`);
  const proofs = seen.map((s) => valuesOf(s, 'dpop'));
  t.ok(
    proofs.every((p) => p.length === 1),
    'one dpop header per request',
  );
  const flat = proofs.map((p) => p[0]!);
  t.equal(new Set(flat).size, flat.length, 'no value sent twice');
  t.same(
    [...flat].sort((a, b) => Number(a.slice(6)) - Number(b.slice(6))),
    Array.from({ length: flat.length }, (_, i) => `proof-${i}`),
    'the values are the source’s, from its first on',
  );
  // Every request as sent, the varying header aside: one shape for all of them.
  const shapes = new Set(
    seen.map((s) => JSON.stringify([s.method, s.url, valuesOf(s, 'authorization'), valuesOf(s, 'content-type'), valuesOf(s, 'content-length'), s.body])),
  );
  t.same(
    [...shapes].map((x) => JSON.parse(x) as unknown),
    [['POST', '/oauth/token', ['Basic abc'], ['application/x-www-form-urlencoded'], ['29'], 'grant_type=client_credentials']],
    'the fixed headers and the body arrive intact in every request',
  );
});

t.test('round-robin credentials: every value in turn, a GET without a body', async (t) => {
  const { port, seen } = await serve(t);
  const creds = ['Basic a', 'Basic b', 'Basic c'];
  const requests = [each.withHeaderEach({ method: 'GET', path: '/gateway/verify' }, 'authorization', each.roundRobin(creds))];
  await autocannon({ url: `http://127.0.0.1:${port}`, connections: 3, amount: 90, requests, setupClient: each.setupClientFor(requests) });
  const counts = new Map<string, number>();
  for (const s of seen) {
    const v = valuesOf(s, 'authorization');
    counts.set(v.join(' | '), (counts.get(v.join(' | ')) ?? 0) + 1);
  }
  t.notOk(
    seen.some((s) => s.body !== ''),
    'no body',
  );
  t.same([...counts.keys()].sort(), creds);
  const sent = [...counts.values()];
  t.ok(Math.max(...sent) - Math.min(...sent) <= 1, `taken in turn (${sent.join(', ')})`);
});

t.test('a request that already has the header, or several requests, are refused; an unmarked list needs no client set-up', async (t) => {
  t.throws(() => each.withHeaderEach({ method: 'GET', path: '/', headers: { DPoP: 'x' } }, 'dpop', () => 'y'), /already has a dpop header/);
  const marked = each.withHeaderEach({ method: 'GET', path: '/' }, 'dpop', () => 'y');
  t.throws(() => each.setupClientFor([marked, { method: 'GET', path: '/b' }]), /one request per scenario target/);
  t.equal(each.setupClientFor([{ method: 'GET', path: '/' }]), undefined);
});
