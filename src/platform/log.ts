import pino, { type LoggerOptions } from 'pino';

/** Query parameters whose values never reach a log line. */
const SENSITIVE_PARAM = /secret|token|password|assertion|code|key|credential/i;

/** `/oauth/token?client_secret=abc` -> `/oauth/token?client_secret=[redacted]` */
export function redactUrl(url: string): string {
  const q = url.indexOf('?');
  if (q < 0) return url;
  const params = url
    .slice(q + 1)
    .split('&')
    .map((pair) => {
      const eq = pair.indexOf('=');
      const name = eq < 0 ? pair : pair.slice(0, eq);
      return eq >= 0 && SENSITIVE_PARAM.test(name) ? `${name}=[redacted]` : pair;
    });
  return `${url.slice(0, q)}?${params.join('&')}`;
}

/** Every secret-bearing field Tessera knows of, at the depths logs put them. */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers["proxy-authorization"]',
  'req.headers["x-access-token"]',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
  ...[
    'client_secret',
    'clientSecret',
    'apiToken',
    'api_token',
    'access_token',
    'refresh_token',
    'token',
    'secret',
    'password',
    'credential',
    'credentials',
    'privateKey',
    'private_key',
    'masterKey',
    'pepper',
    'authorization',
    // Quantum provider credentials (src/platform/provider-catalog.ts secretFields).
    'api_key',
    'apiKey',
    'secret_access_key',
    'session_token',
    'body',
  ].flatMap((f) => [f, `*.${f}`, `*.*.${f}`]),
  '*.headers.authorization',
  '*.headers["x-access-token"]',
];

let traceFields: (() => object) | null = null;

/**
 * With tracing on (src/platform/telemetry.ts), every line logged inside a traced request carries
 * its `trace_id` and `span_id`; loggers created before this was called, or with tracing off, add nothing.
 */
export function setLogTraceFields(fields: (() => object) | null): void {
  traceFields = fields;
}

export function loggerOptions(level: string): LoggerOptions {
  const fields = traceFields;
  return {
    level,
    ...(fields ? { mixin: () => fields() } : {}),
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    serializers: {
      req(req: { method: string; url: string; ip?: string; headers?: Record<string, unknown>; id?: string }) {
        return { method: req.method, url: redactUrl(req.url), remoteAddress: req.ip, reqId: req.id };
      },
    },
  };
}

/** The process logger: stdout for the server, stderr (fd 2) for CLI commands so their stdout stays data. */
export function createLogger(level: string, fd: 1 | 2 = 1) {
  return pino(loggerOptions(level), pino.destination({ fd, sync: fd === 2 }));
}

/* eslint-disable @typescript-eslint/no-explicit-any -- the lazy logger stands in for pino's and Fastify's loggers, whose child types it passes through untyped. */
type Bindings = Record<string, unknown>;
type LevelName = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
interface ParentLogger {
  child(bindings: Bindings, options?: object): any;
  isLevelEnabled?(level: string): boolean;
  level: string;
}

/**
 * Fastify's per-request logger (`request.log`), made only when something is logged at an enabled
 * level: pino's `child()` runs the redaction stringifier over its bindings, work wasted on the hot
 * paths, which log nothing at `warn`. The child is the same pino child Fastify would make (same
 * bindings, same lines), just made on first use.
 */
class LazyChildLogger {
  private real: any = null;
  constructor(
    private readonly parent: ParentLogger,
    private readonly bindingsOf: Bindings,
  ) {}
  private get log(): any {
    return (this.real ??= this.parent.child(this.bindingsOf));
  }
  private emit(level: LevelName, args: unknown[]): void {
    if (this.real || this.parent.isLevelEnabled!(level)) this.log[level](...args);
  }
  get level(): string {
    return this.real ? this.real.level : this.parent.level;
  }
  set level(value: string) {
    this.log.level = value;
  }
  isLevelEnabled(level: string): boolean {
    return (this.real ?? this.parent).isLevelEnabled(level);
  }
  bindings(): Bindings {
    return this.log.bindings();
  }
  child(bindings: Bindings, options?: object): any {
    return this.log.child(bindings, options);
  }
  fatal(...args: unknown[]): void {
    this.emit('fatal', args);
  }
  error(...args: unknown[]): void {
    this.emit('error', args);
  }
  warn(...args: unknown[]): void {
    this.emit('warn', args);
  }
  info(...args: unknown[]): void {
    this.emit('info', args);
  }
  debug(...args: unknown[]): void {
    this.emit('debug', args);
  }
  trace(...args: unknown[]): void {
    this.emit('trace', args);
  }
  silent(): void {}
}

/** Fastify `childLoggerFactory`: a {@link LazyChildLogger} unless the route asks for child options. */
export function lazyChildLoggerFactory(logger: ParentLogger, bindings: Bindings, options: object): any {
  if (typeof logger.isLevelEnabled !== 'function' || (options && Object.keys(options).length > 0)) return logger.child(bindings, options);
  return new LazyChildLogger(logger, bindings);
}
/* eslint-enable @typescript-eslint/no-explicit-any */
