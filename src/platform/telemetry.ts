import { createRequire } from 'node:module';
import type { SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { redactUrl, setLogTraceFields } from './log.js';

/** A started tracer provider: `shutdown()` flushes the spans still buffered. */
export interface Telemetry {
  shutdown(): Promise<void>;
}

/** Tracing is on when an OTLP endpoint is configured the standard way and the SDK is not disabled. */
export function tracingEnabled(env: NodeJS.ProcessEnv): boolean {
  if ((env.OTEL_SDK_DISABLED ?? '').trim().toLowerCase() === 'true') return false;
  return Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim() || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim());
}

// Attributes the HTTP instrumentation fills from the request line: their query string is redacted
// the way log lines are (a `client_secret=...` sent in a URL never reaches a span).
const URL_ATTRIBUTES = ['http.url', 'http.target', 'url.full', 'url.query'];

/**
 * OpenTelemetry tracing for the server (HTTP, Fastify and pg spans), exported over OTLP as the
 * standard OTEL_* variables configure it (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_HEADERS,
 * OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER...). Off (null, nothing loaded) unless `tracingEnabled`
 * or `spanProcessors` are given (tests). Call it before the app is built: it patches the pg
 * client's prototype and http's server, and Fastify instances created afterwards get the
 * @fastify/otel plugin.
 *
 * What spans carry: method, route, status, the request id (`http.request.id`), SQL text with its
 * placeholders (never the parameter values: `enhancedDatabaseReporting` stays off), the database's
 * name, host and port. No header is recorded (Authorization, DPoP and Cookie included), and query
 * strings are redacted.
 */
export async function startTelemetry(env: NodeJS.ProcessEnv, opts: { spanProcessors?: SpanProcessor[] } = {}): Promise<Telemetry | null> {
  if (!opts.spanProcessors && !tracingEnabled(env)) return null;
  const [{ NodeSDK }, { OTLPTraceExporter }, { HttpInstrumentation }, { PgInstrumentation }, { FastifyOtelInstrumentation }, api] = await Promise.all([
    import('@opentelemetry/sdk-node'),
    import('@opentelemetry/exporter-trace-otlp-proto'),
    import('@opentelemetry/instrumentation-http'),
    import('@opentelemetry/instrumentation-pg'),
    import('@fastify/otel'),
    import('@opentelemetry/api'),
  ]);
  const sdk = new NodeSDK({
    serviceName: env.OTEL_SERVICE_NAME?.trim() || 'tessera',
    ...(opts.spanProcessors ? { spanProcessors: opts.spanProcessors } : { traceExporter: new OTLPTraceExporter() }),
    instrumentations: [
      new HttpInstrumentation({
        // Only the requests Tessera serves: its own outgoing calls (none on the request path) are not traced.
        disableOutgoingRequestInstrumentation: true,
        requestHook: (span) => {
          const attributes = (span as unknown as { attributes?: Record<string, unknown> }).attributes ?? {};
          for (const name of URL_ATTRIBUTES) {
            const value = attributes[name];
            if (typeof value !== 'string') continue;
            span.setAttribute(name, name === 'url.query' ? redactUrl(`?${value}`).slice(1) : redactUrl(value));
          }
        },
      }),
      new FastifyOtelInstrumentation({
        registerOnInitialization: true,
        requestHook: (span, request) => {
          span.setAttribute('http.request.id', request.id);
          // The path only (the plugin records the whole request target).
          span.setAttribute('url.path', request.url.split('?')[0] ?? '');
        },
      }),
      // Statements outside a request (the change listener, jobs) make no traces of their own.
      new PgInstrumentation({ enhancedDatabaseReporting: false, requireParentSpan: true }),
    ],
  });
  sdk.start();
  // pg and http were imported by ES modules, which the require hook does not see: requiring them
  // once here hands the already loaded modules to the instrumentations (which patch their
  // prototypes, shared with every importer).
  const require = createRequire(import.meta.url);
  for (const name of ['pg', 'http', 'https']) require(name);
  setLogTraceFields(() => {
    const span = api.trace.getActiveSpan();
    if (!span) return {};
    const { traceId, spanId } = span.spanContext();
    return { trace_id: traceId, span_id: spanId };
  });
  return {
    async shutdown() {
      setLogTraceFields(null);
      await sdk.shutdown();
    },
  };
}
