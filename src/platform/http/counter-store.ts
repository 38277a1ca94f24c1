import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import type { FastifyBaseLogger, RouteOptions } from 'fastify';
import type { FastifyRateLimitStore, FastifyRateLimitStoreCtor } from '@fastify/rate-limit';
import { Counter, Gauge, type Registry } from 'prom-client';

/** A key's count in its current fixed window, and how long that window has left (0: none open). */
export interface WindowCount {
  count: number;
  ttlMs: number;
}

/**
 * Counters in fixed windows: the first hit on a key opens its window of `windowMs`; hits in it add
 * up; once it has passed, the key starts from zero. What every rate limit of Tessera counts in.
 * Neither method rejects: a store that cannot reach its backend answers from a fallback.
 */
export interface CounterStore {
  /** Adds one to `key`'s count; the count after it. */
  hit(key: string, windowMs: number): Promise<WindowCount>;
  /** `key`'s count without changing it (0 when no window is open). */
  peek(key: string, windowMs: number): Promise<WindowCount>;
}

/**
 * The counts in this instance's memory. Holds at most `maxKeys` keys (the oldest window forgotten
 * first), so a flood of distinct keys cannot grow it without bound.
 */
export class MemoryCounterStore implements CounterStore {
  private readonly windows = new Map<string, { count: number; startMs: number }>();

  constructor(private readonly opts: { now: () => number; maxKeys?: number }) {}

  private current(key: string, windowMs: number, now: number): { count: number; startMs: number } | undefined {
    const w = this.windows.get(key);
    if (w && (now - w.startMs >= windowMs || now < w.startMs)) {
      this.windows.delete(key);
      return undefined;
    }
    return w;
  }

  async hit(key: string, windowMs: number): Promise<WindowCount> {
    return this.hitNow(key, windowMs);
  }

  /** `hit`, synchronously. */
  hitNow(key: string, windowMs: number): WindowCount {
    const now = this.opts.now();
    let w = this.current(key, windowMs, now);
    if (w) {
      w.count++;
    } else {
      if (this.windows.size >= (this.opts.maxKeys ?? 10_000)) {
        const oldest = this.windows.keys().next().value;
        if (oldest !== undefined) this.windows.delete(oldest);
      }
      w = { count: 1, startMs: now };
      this.windows.set(key, w);
    }
    return { count: w.count, ttlMs: w.startMs + windowMs - now };
  }

  async peek(key: string, windowMs: number): Promise<WindowCount> {
    const now = this.opts.now();
    const w = this.current(key, windowMs, now);
    return w ? { count: w.count, ttlMs: w.startMs + windowMs - now } : { count: 0, ttlMs: 0 };
  }
}

// INCR and the window's expiry in one atomic step: a key never lives on without its expiry (a
// counter whose PEXPIRE was lost would refuse its key forever).
const HIT = `
local c = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {c, ttl}
`;
const PEEK = `
local c = redis.call('GET', KEYS[1])
if not c then return {0, 0} end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then ttl = 0 end
return {tonumber(c), ttl}
`;

type ScriptedRedis = Redis & {
  tesseraHit(key: string, windowMs: number): Promise<[number, number]>;
  tesseraPeek(key: string): Promise<[number, number]>;
};

/** What the rate limits count in, as `/readyz` and `/metrics` report it. */
export type CounterBackend = 'memory' | 'redis' | 'redis-unreachable';

/**
 * Where every rate limit of this instance counts. Without a Redis URL: in this instance's memory
 * (each instance allows the full limits). With one (Redis or Valkey): in Redis, shared by every
 * instance pointing at it, keys named `tessera:rl:<limit>:<SHA-256 of the key>` (no address, email
 * or client id stored in clear). When Redis does not answer, every count falls back to this
 * instance's memory at once (no queue of commands waits for a reconnect, each command gives up
 * after `commandTimeoutMs`), so requests are served with per-instance limits until it is back.
 */
export class SharedCounters {
  private readonly redis: ScriptedRedis | null;
  private reachable = false;
  private readonly fallbacks = new Counter({
    name: 'tessera_rate_limit_store_fallbacks_total',
    help: 'Rate-limit counts taken in this instance memory because Redis did not answer',
    registers: [],
  });
  private readonly log: FastifyBaseLogger;

  constructor(opts: { url: string | null; log: FastifyBaseLogger; connectTimeoutMs?: number; commandTimeoutMs?: number }) {
    this.log = opts.log;
    if (opts.url === null) {
      this.redis = null;
      return;
    }
    const redis = new Redis(opts.url, {
      lazyConnect: true,
      connectTimeout: opts.connectTimeoutMs ?? 1000,
      commandTimeout: opts.commandTimeoutMs ?? 500,
      // A command sent while disconnected fails at once instead of waiting for the reconnect.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      // Reconnect forever, at most every 2 s.
      retryStrategy: (times) => Math.min(100 * times, 2000),
    }) as ScriptedRedis;
    redis.defineCommand('tesseraHit', { numberOfKeys: 1, lua: HIT });
    redis.defineCommand('tesseraPeek', { numberOfKeys: 1, lua: PEEK });
    redis.on('ready', () => {
      if (!this.reachable) this.log.info('rate limits: Redis reachable; limits are shared by every instance');
      this.reachable = true;
    });
    redis.on('error', (err: Error) => this.down(err));
    redis.on('close', () => this.down(null));
    this.redis = redis;
  }

  private down(err: Error | null): void {
    if (this.reachable) {
      this.log.warn({ err: err ? { message: err.message } : undefined }, 'rate limits: Redis unreachable; limits are counted per instance until it is back');
    }
    this.reachable = false;
  }

  get backend(): CounterBackend {
    if (!this.redis) return 'memory';
    return this.reachable && this.redis.status === 'ready' ? 'redis' : 'redis-unreachable';
  }

  /** Connects (when a Redis URL is set), waiting at most `waitMs` for it; never fails. */
  async start(waitMs = 3000): Promise<void> {
    if (!this.redis || this.redis.status !== 'wait') return;
    await Promise.race([this.redis.connect().catch(() => undefined), new Promise((r) => setTimeout(r, waitMs).unref())]);
  }

  async close(): Promise<void> {
    if (!this.redis) return;
    this.reachable = false;
    this.redis.removeAllListeners('close');
    this.redis.disconnect();
  }

  /**
   * Null when Redis answers a PING (or none is configured); else what `/readyz` reports: the
   * instance stays ready (it serves requests), with limits per instance.
   */
  async degradation(): Promise<string | null> {
    if (!this.redis) return null;
    try {
      if (this.redis.status !== 'ready') throw new Error(`connection ${this.redis.status}`);
      await this.redis.ping();
      return null;
    } catch (err) {
      return `Redis unreachable (${(err as Error).message}): rate limits are counted per instance`;
    }
  }

  registerMetrics(registry: Registry): void {
    registry.registerMetric(this.fallbacks);
    const backend = () => this.backend;
    new Gauge({
      name: 'tessera_rate_limit_store_up',
      help: 'Where rate limits are counted: 1 for the backend in use (memory, redis, or redis-unreachable: per instance while Redis is down)',
      labelNames: ['backend'] as const,
      registers: [registry],
      collect() {
        const now = backend();
        for (const b of ['memory', 'redis', 'redis-unreachable'] as const) this.set({ backend: b }, b === now ? 1 : 0);
      },
    });
  }

  /** The counters of one limit (`name` separates its keys from the other limits'). */
  store(name: string, opts: { now: () => number; maxKeys?: number }): CounterStore {
    const local = new MemoryCounterStore(opts);
    const redis = this.redis;
    if (!redis) return local;
    const prefix = `tessera:rl:${name}:`;
    const keyOf = (key: string) => prefix + createHash('sha256').update(key).digest('base64url');
    const fallback = <T>(work: () => Promise<T>, instead: () => Promise<T>): Promise<T> => {
      if (!this.reachable || redis.status !== 'ready') {
        this.fallbacks.inc();
        return instead();
      }
      return work().catch((err: Error) => {
        this.fallbacks.inc();
        this.log.debug({ err: { message: err.message } }, 'rate limits: Redis command failed; counted in memory');
        return instead();
      });
    };
    return {
      hit: (key, windowMs) =>
        fallback(
          async () => {
            const [count, ttlMs] = await redis.tesseraHit(keyOf(key), windowMs);
            return { count, ttlMs };
          },
          () => local.hit(key, windowMs),
        ),
      peek: (key, windowMs) =>
        fallback(
          async () => {
            const [count, ttlMs] = await redis.tesseraPeek(keyOf(key));
            return { count, ttlMs };
          },
          () => local.peek(key, windowMs),
        ),
    };
  }

  /** `store(name)` when a Redis URL is set (counts shared by every instance); else null. */
  shared(name: string): CounterStore | null {
    return this.redis ? this.store(name, { now: Date.now }) : null;
  }

  /**
   * A store class for @fastify/rate-limit counting in `store(...)`: each route with its own limit
   * gets its own counters (named after the route), as with the plugin's own stores.
   */
  rateLimitStore(name = 'ip'): FastifyRateLimitStoreCtor {
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the class the plugin constructs reaches back to these counters.
    const counters = this;
    return class {
      constructor() {
        return new RateLimitStore(counters, name);
      }
    } as unknown as FastifyRateLimitStoreCtor;
  }
}

type Callback = (err: Error | null, res?: { current: number; ttl: number }) => void;

/** @fastify/rate-limit's store interface (incr, read, child) over a `CounterStore`. */
export class RateLimitStore implements FastifyRateLimitStore {
  private readonly counts: CounterStore;

  constructor(
    private readonly counters: SharedCounters,
    private readonly name: string,
  ) {
    this.counts = counters.store(name, { now: Date.now, maxKeys: 10_000 });
  }

  incr(key: string, cb: Callback, timeWindow: number): void {
    this.counts.hit(key, timeWindow).then(
      (r) => cb(null, { current: r.count, ttl: r.ttlMs }),
      (err: Error) => cb(err),
    );
  }

  read(key: string, cb: Callback, timeWindow: number): void {
    this.counts.peek(key, timeWindow).then(
      (r) => cb(null, { current: r.count, ttl: r.ttlMs }),
      (err: Error) => cb(err),
    );
  }

  child(routeOptions: RouteOptions & { path: string; prefix: string }): RateLimitStore {
    // At run time the plugin passes the route's merged limit options, the route itself as `routeInfo`.
    const info = (routeOptions as unknown as { routeInfo?: Partial<RouteOptions> }).routeInfo ?? {};
    const route = info.url ? `${String(info.method)} ${info.url}` : 'limiter';
    return new RateLimitStore(this.counters, `${this.name}:${route}`);
  }
}
