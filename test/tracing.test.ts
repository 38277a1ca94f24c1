// OpenTelemetry tracing as src/platform/telemetry.ts sets it up for the server, its spans kept in
// memory instead of exported: the app modules (pg, Fastify, http) are loaded before tracing starts,
// as they are when `tessera serve` starts it.
import t from 'tap';
import { Writable } from 'node:stream';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { trace } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { bearer, harness } from './support/helper.js';
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
