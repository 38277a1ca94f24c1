// OpenTelemetry tracing as src/platform/telemetry.ts sets it up for the server, its spans kept in
// memory instead of exported: the app modules (pg, Fastify, http) are loaded before tracing starts,
// as they are when `tessera serve` starts it.
import t from 'tap';
import { Writable } from 'node:stream';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { trace } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { createServer } from 'node:http';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { bearer, freePort, freshDatabase, harness } from './support/helper.js';
import { startServer, waitReady } from './support/process-helper.js';
import { root } from './support/cluster-helper.js';
import { basic, createSdkKey } from './support/oauth-helper.js';
import { startTelemetry, tracingEnabled } from '../src/platform/telemetry.js';
import { loggerOptions } from '../src/platform/log.js';

t.test('off unless an OTLP endpoint is configured', async (t) => {
  t.equal(tracingEnabled({}), false);
  t.equal(tracingEnabled({ OTEL_EXPORTER_OTLP_ENDPOINT: '' }), false);
  t.equal(tracingEnabled({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }), true);
  t.equal(tracingEnabled({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://collector:4318/v1/traces' }), true);
  t.equal(tracingEnabled({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_SDK_DISABLED: 'true' }), false);
  t.equal(await startTelemetry({}), null, 'nothing is started');
});

t.test('a token request is one trace with its HTTP, Fastify and Postgres spans, no secret in any attribute; logs carry the trace id', async (t) => {
  const exporter = new InMemorySpanExporter();
  const telemetry = await startTelemetry({}, { spanProcessors: [new SimpleSpanProcessor(exporter)] });
  t.ok(telemetry);
  t.teardown(() => telemetry?.shutdown());

  const h = await harness(t);
  const u = await h.user();
  const apiToken = await h.apiToken(u, ['api', 'quantum_tokens']);
  // A second instance, started before the SDK key exists: its token request reads the key from Postgres.
  const other = await h.instance();
  const key = await createSdkKey(h, u);
  await other.listen({ port: 0, host: '127.0.0.1' });
  const base = `http://127.0.0.1:${(other.server.address() as AddressInfo).port}`;
  exporter.reset();

  const authorization = basic(key.client_id, key.client_secret);
  const res = await fetch(`${base}/oauth/token`, {
    method: 'POST',
    headers: { authorization, 'content-type': 'application/x-www-form-urlencoded', 'x-request-id': 'trace-test-1' },
    body: 'grant_type=client_credentials',
  });
  t.equal(res.status, 200);
  const accessToken = ((await res.json()) as { access_token: string }).access_token;
  // The same secret in a query string, and a bearer token on an API route.
  const inUrl = await fetch(`${base}/oauth/token?client_secret=${encodeURIComponent(key.client_secret)}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-request-id': 'trace-test-2' },
    body: `grant_type=client_credentials&client_id=${encodeURIComponent(key.client_id)}`,
  });
  t.ok(inUrl.status >= 400 && inUrl.status < 500, 'the query-string secret is refused');
  t.equal((await fetch(`${base}/api/users/me`, { headers: { ...bearer(apiToken), 'x-request-id': 'trace-test-3' } })).status, 200);

  // Log lines written inside a span carry its ids (the server's logger is made after tracing starts, as this one).
  const lines: string[] = [];
  const out = new Writable({
    write(chunk, _enc, done) {
      lines.push(String(chunk));
      done();
    },
  });
  const log = pino(loggerOptions('info'), out);
  log.info('outside');
  let ids = { traceId: '', spanId: '' };
  trace.getTracer('test').startActiveSpan('work', (span) => {
    ids = span.spanContext();
    log.info('inside');
    span.end();
  });
  const [outside, inside] = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  t.notOk(outside!.trace_id, 'no trace, no id in the log line');
  t.equal(inside!.trace_id, ids.traceId, 'the log line has the trace id');
  t.equal(inside!.span_id, ids.spanId, 'and the span id');

  // Taken before the shutdown (which empties the in-memory exporter).
  const spans = exporter.getFinishedSpans().filter((s) => s.name !== 'work');
  await telemetry!.shutdown().catch(() => undefined);
  const scope = (s: ReadableSpan) => s.instrumentationScope.name;
  const fastifyOf = (id: string) => spans.find((s) => scope(s) === '@fastify/otel' && s.attributes['http.request.id'] === id);
  const first = fastifyOf('trace-test-1');
  t.ok(first, 'the Fastify request span carries the request id');
  const traceId = first!.spanContext().traceId;
  const inTrace = spans.filter((s) => s.spanContext().traceId === traceId);
  const http = inTrace.filter((s) => scope(s) === '@opentelemetry/instrumentation-http');
  t.equal(http.length, 1, 'one HTTP server span');
  t.equal(http[0]!.parentSpanContext, undefined, 'the HTTP span is the root of the trace');
  t.equal(http[0]!.attributes['http.method'] ?? http[0]!.attributes['http.request.method'], 'POST');
  t.ok(inTrace.filter((s) => scope(s) === '@fastify/otel').length >= 2, 'Fastify request and handler spans');
  const pgSpans = inTrace.filter((s) => scope(s) === '@opentelemetry/instrumentation-pg');
  t.ok(pgSpans.length >= 1, `Postgres spans in the trace (${pgSpans.map((s) => s.name).join(', ')})`);
  t.ok(
    pgSpans.some((s) => /sdk_keys/.test(String(s.attributes['db.query.text'] ?? s.attributes['db.statement']))),
    'the SDK-key look-up',
  );
  t.ok(fastifyOf('trace-test-2') && fastifyOf('trace-test-3'), 'the other requests are traced too');

  // Every attribute of every span, and every span name and event.
  const haystack = JSON.stringify(
    spans.map((s) => ({ name: s.name, attributes: s.attributes, events: s.events, resource: s.resource.attributes, links: s.links })),
  );
  t.ok(haystack.length > 1000, 'there is something to search');
  for (const [what, secret] of [
    ['client secret', key.client_secret],
    ['issued access token', accessToken],
    ['Authorization header value', authorization],
    ['its base64 credentials', authorization.slice('Basic '.length)],
    ['API token', apiToken],
    ['pepper', h.config.pepper.toString('base64')],
  ] as const) {
    t.notOk(haystack.includes(secret), `no ${what} in any span`);
  }
  t.notOk(/authorization|cookie|dpop/i.test(JSON.stringify(spans.map((s) => Object.keys(s.attributes)))), 'no header recorded');
  t.match(haystack, /client_secret=\[redacted\]/, 'the query string is redacted');
});

t.test('tessera serve with OTEL_EXPORTER_OTLP_ENDPOINT exports its spans over OTLP, without the secrets sent to it', async (t) => {
  // A collector's OTLP/HTTP endpoint: what arrives at /v1/traces.
  const received: Array<{ type: string; body: Buffer }> = [];
  const collector = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.url === '/v1/traces') received.push({ type: String(req.headers['content-type']), body: Buffer.concat(chunks) });
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    });
  });
  await new Promise<void>((r) => collector.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => collector.close(() => r())));
  const collectorPort = (collector.address() as AddressInfo).port;

  const port = await freePort();
  const server = startServer(
    {
      DATABASE_URL: await freshDatabase(t),
      PORT: String(port),
      TESSERA_HOST: '127.0.0.1',
      TESSERA_MASTER_KEY: randomBytes(32).toString('base64'),
      TESSERA_PEPPER: randomBytes(32).toString('base64'),
      TESSERA_LOG_LEVEL: 'info',
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${collectorPort}`,
      OTEL_SERVICE_NAME: 'tessera-under-test',
      OTEL_BSP_SCHEDULE_DELAY: '100',
    },
    root,
    path.join(root, 'dist', 'src', 'cli.js'),
  );
  t.teardown(async () => {
    if (server.child.exitCode === null) {
      server.child.kill('SIGTERM');
      await server.exited;
    }
  });
  await waitReady(port, 60_000);
  const secret = randomBytes(32).toString('base64url');
  const inQuery = randomBytes(32).toString('base64url');
  const res = await fetch(`http://127.0.0.1:${port}/api/users/me?access_token=${inQuery}`, {
    headers: { authorization: `Bearer ${secret}`, 'x-request-id': 'otlp-test-1' },
  });
  t.equal(res.status, 401);
  for (let i = 0; i < 200 && !received.some((r) => r.body.includes('otlp-test-1')); i++) await new Promise((r) => setTimeout(r, 50));
  const batch = received.find((r) => r.body.includes('otlp-test-1'));
  t.ok(batch, 'the spans of the request reached the collector');
  t.equal(batch!.type, 'application/x-protobuf');
  t.ok(batch!.body.includes('tessera-under-test'), 'service name from OTEL_SERVICE_NAME');
  t.ok(batch!.body.includes('/api/users/me'), 'the route');
  const all = Buffer.concat(received.map((r) => r.body));
  t.notOk(all.includes(secret), 'no Authorization value in any exported span');
  t.notOk(all.includes(inQuery), 'no query-string token');
  t.match(server.output(), /"trace_id":"[0-9a-f]{32}"/, 'log lines carry the trace id');
});
