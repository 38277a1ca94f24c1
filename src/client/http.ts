import { PERMANENT_OAUTH_ERRORS, TesseraConfigError, TesseraNetworkError, TesseraOAuthError } from './errors.js';

/** The `fetch` the client uses (global fetch by default; inject one for proxies or tests). */
export type FetchLike = (input: string | URL, init?: RequestInit) => Promise<Response>;

/** Where warnings go (a pino logger or `console` fit). */
export interface ClientLogger {
  warn(message: string): void;
}

export interface RetryOptions {
  /** Retries after the first attempt (default 3). */
  maxRetries?: number;
  /** First backoff delay in ms (default 200); doubles on each retry, with full jitter. */
  baseDelayMs?: number;
  /** Largest backoff delay in ms (default 5000). */
  maxDelayMs?: number;
  /** Largest `Retry-After` honoured, in ms (default 30000); longer waits are capped. */
  maxRetryAfterMs?: number;
}

/** Plumbing shared by every client class; all optional. */
export interface TransportOptions {
  fetch?: FetchLike;
  /** Per-request timeout in ms (default 10000). */
  timeoutMs?: number;
  retry?: RetryOptions;
  /** Waits between retries (default setTimeout); tests record delays instead of sleeping. */
  sleep?: (ms: number) => Promise<void>;
  /** Random number in [0, 1) for jitter (default Math.random). */
  random?: () => number;
  /** Clock in ms since the epoch (default Date.now): token expiry and caches follow it. */
  now?: () => number;
  logger?: ClientLogger;
}

export interface Transport {
  fetch: FetchLike;
  timeoutMs: number;
  retry: Required<RetryOptions>;
  sleep: (ms: number) => Promise<void>;
  random: () => number;
  now: () => number;
  logger: ClientLogger;
}

const defaultLogger: ClientLogger = { warn: (m) => process.emitWarning(m, 'TesseraWarning') };

export function transport(o: TransportOptions = {}): Transport {
  return {
    fetch: o.fetch ?? ((input, init) => fetch(input, init)),
    timeoutMs: o.timeoutMs ?? 10_000,
    retry: { maxRetries: 3, baseDelayMs: 200, maxDelayMs: 5_000, maxRetryAfterMs: 30_000, ...o.retry },
    sleep: o.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms))),
    random: o.random ?? Math.random,
    now: o.now ?? Date.now,
    logger: o.logger ?? defaultLogger,
  };
}

/** A base URL without a trailing slash; http(s) only. */
export function normaliseIssuer(issuer: string): string {
  let u: URL;
  try {
    u = new URL(issuer);
  } catch {
    throw new TesseraConfigError(`issuer is not a URL: ${issuer}`);
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new TesseraConfigError(`issuer must be http(s): ${issuer}`);
  return issuer.replace(/\/+$/, '');
}

/** `Retry-After` (RFC 9110 §10.2.3: seconds or an HTTP date) in ms, or null. */
export function retryAfterMs(value: string | null, nowMs: number): number | null {
  if (value === null || value.trim() === '') return null;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const date = Date.parse(v);
  return Number.isNaN(date) ? null : Math.max(0, date - nowMs);
}

interface ErrorBody {
  error?: unknown;
  error_description?: unknown;
  message?: unknown;
}

/** The typed error for a non-2xx answer (RFC 6749 §5.2 body or Tessera's API body). */
export async function errorFromResponse(res: Response): Promise<TesseraOAuthError> {
  let body: ErrorBody = {};
  try {
    body = (await res.json()) as ErrorBody;
  } catch {
    /* not JSON */
  }
  const code = typeof body.error === 'string' && body.error ? body.error : res.status >= 500 ? 'server_error' : 'http_error';
  const description = typeof body.error_description === 'string' ? body.error_description : typeof body.message === 'string' ? body.message : undefined;
  return new TesseraOAuthError(code, res.status, description, isRetryableStatus(res.status, code));
}

function isRetryableStatus(status: number, code: string): boolean {
  if ((PERMANENT_OAUTH_ERRORS as readonly string[]).includes(code)) return false;
  return status >= 500 || status === 429 || code === 'temporarily_unavailable';
}

/** A request, or a function that builds it anew for every attempt (single-use proofs and assertions). */
export type RequestInitSource = RequestInit | (() => Promise<RequestInit> | RequestInit);

/**
 * One HTTP exchange with retries: network errors (and timeouts), 5xx and 429 are retried with
 * exponential backoff and full jitter, waiting at least what `Retry-After` asks; any other answer
 * is returned as is (the caller decides what a 4xx means). After the last retry, a retryable
 * status is returned too, and a network failure throws `TesseraNetworkError`. When `init` is a
 * function it is called for every attempt, so a DPoP proof or a client assertion (whose `jti` the
 * server accepts once, even when it then failed to answer) is never sent twice.
 */
export async function requestWithRetry(t: Transport, url: string, init: RequestInitSource): Promise<Response> {
  const { maxRetries, baseDelayMs, maxDelayMs, maxRetryAfterMs } = t.retry;
  for (let attempt = 0; ; attempt++) {
    let res: Response | null = null;
    let failure: unknown = null;
    try {
      const request = typeof init === 'function' ? await init() : init;
      res = await t.fetch(url, { ...request, signal: AbortSignal.timeout(t.timeoutMs) });
    } catch (err) {
      failure = err;
    }
    const retryable = res === null || res.status >= 500 || res.status === 429;
    if (!retryable) return res!;
    if (attempt >= maxRetries) {
      if (res) return res;
      throw new TesseraNetworkError(`cannot reach ${new URL(url).origin}: ${(failure as Error)?.message ?? failure}`, { cause: failure });
    }
    const backoff = Math.min(maxDelayMs, baseDelayMs * 2 ** attempt);
    let delay = Math.floor(t.random() * backoff);
    const asked = res ? retryAfterMs(res.headers.get('retry-after'), t.now()) : null;
    if (asked !== null) delay = Math.max(delay, Math.min(asked, maxRetryAfterMs));
    if (res) await res.body?.cancel().catch(() => undefined);
    await t.sleep(delay);
  }
}

/** GET a JSON document with retries; non-2xx becomes a typed error. */
export async function getJson<T>(t: Transport, url: string, headers: Record<string, string> = {}): Promise<T> {
  const res = await requestWithRetry(t, url, { method: 'GET', headers: { accept: 'application/json', ...headers } });
  if (!res.ok) throw await errorFromResponse(res);
  return (await res.json()) as T;
}

/** RFC 8414 metadata, the members the client uses. */
export interface ServerMetadata {
  issuer: string;
  token_endpoint: string;
  jwks_uri: string;
  introspection_endpoint?: string;
  revocation_endpoint?: string;
  [member: string]: unknown;
}

/** Fetches `/.well-known/oauth-authorization-server` and checks that it names the same issuer. */
export async function discover(t: Transport, issuer: string): Promise<ServerMetadata> {
  const md = await getJson<ServerMetadata>(t, `${issuer}/.well-known/oauth-authorization-server`);
  if (md.issuer !== issuer) {
    throw new TesseraConfigError(`discovery names issuer ${String(md.issuer)}, expected ${issuer} (RFC 8414 §3.3)`);
  }
  if (typeof md.token_endpoint !== 'string' || typeof md.jwks_uri !== 'string') {
    throw new TesseraConfigError('discovery document lacks token_endpoint or jwks_uri');
  }
  return md;
}

/** Runs `fn` once for every group of concurrent callers (single flight). */
export class SingleFlight<T> {
  private inFlight: Promise<T> | null = null;
  /** The call in progress, if any. */
  get current(): Promise<T> | null {
    return this.inFlight;
  }
  run(fn: () => Promise<T>): Promise<T> {
    if (!this.inFlight) {
      this.inFlight = fn().finally(() => {
        this.inFlight = null;
      });
    }
    return this.inFlight;
  }
}
