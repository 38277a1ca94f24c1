// The counter store every rate limit counts in, against Debian's real redis-server: two stores on
// one Redis stand for two instances. Skipped (with the reason) when redis-server is not installed.
import t from 'tap';
import pino from 'pino';
import type { FastifyBaseLogger } from 'fastify';
import { Registry } from 'prom-client';
import { MemoryCounterStore, SharedCounters } from '../src/platform/http/counter-store.js';
import { SignInLimiter } from '../src/people/sign-in-limiter.js';
import { freePort, testConfig } from './support/helper.js';
import { ConfigError } from '../src/platform/config.js';
import { binary, startRedis } from './support/cluster-helper.js';

const log = pino({ level: 'silent' }) as unknown as FastifyBaseLogger;
const redisServer = binary('redis-server', '--version');

t.test('TESSERA_REDIS_URL: unset means per instance; a redis:// or rediss:// URL, anything else refused', async (t) => {
  const db = 'postgres://u@127.0.0.1:1/db';
  t.equal(testConfig(db).redisUrl, null);
  t.equal(testConfig(db, { TESSERA_REDIS_URL: ' ' }).redisUrl, null);
  t.equal(testConfig(db, { TESSERA_REDIS_URL: 'redis://valkey:6379/0' }).redisUrl, 'redis://valkey:6379/0');
  t.equal(testConfig(db, { TESSERA_REDIS_URL: 'rediss://cache.example:6380' }).redisUrl, 'rediss://cache.example:6380');
  t.throws(() => testConfig(db, { TESSERA_REDIS_URL: 'http://valkey:6379' }), ConfigError);
  t.throws(() => testConfig(db, { TESSERA_REDIS_URL: 'valkey:6379' }), /TESSERA_REDIS_URL must be a redis:\/\/ or rediss:\/\/ URL/);
});

t.test('in memory: fixed windows per key, forgotten once past', async (t) => {
  let now = 1_000_000;
  const store = new MemoryCounterStore({ now: () => now, maxKeys: 2 });
  t.same(await store.hit('a', 1000), { count: 1, ttlMs: 1000 });
  now += 400;
  t.same(await store.hit('a', 1000), { count: 2, ttlMs: 600 });
  t.same(await store.peek('a', 1000), { count: 2, ttlMs: 600 });
  t.same(await store.peek('b', 1000), { count: 0, ttlMs: 0 });
  now += 600;
  t.same(await store.peek('a', 1000), { count: 0, ttlMs: 0 }, 'the window has passed');
  await store.hit('a', 1000);
  await store.hit('b', 1000);
  await store.hit('c', 1000);
  t.equal((await store.peek('a', 1000)).count, 0, 'the oldest key is forgotten past maxKeys');
  t.equal((await store.peek('c', 1000)).count, 1);
  const none = new SharedCounters({ url: null, log });
  t.equal(none.backend, 'memory');
  t.equal(none.shared('x'), null, 'no shared store without Redis');
  t.equal(await none.degradation(), null);
});

t.test('with Redis', { skip: redisServer ? false : 'redis-server is not installed (apt-get install -y redis-server)' }, async (t) => {
  const redis = await startRedis(t, redisServer!);
  const open = async () => {
    const c = new SharedCounters({ url: redis.url, log });
    t.teardown(() => c.close());
    await c.start();
    return c;
  };
  const [one, two] = [await open(), await open()];
  t.equal(one.backend, 'redis');

  await t.test('failed sign-ins are counted once across instances', async (t) => {
    const limiter = (c: SharedCounters) => new SignInLimiter({ max: 10, windowMs: 15 * 60_000, store: c.store('sign-in-account', { now: Date.now }) });
    const [a, b] = [limiter(one), limiter(two)];
    for (let n = 0; n < 5; n++) await a.fail('account:ada@example.com');
    for (let n = 0; n < 4; n++) await b.fail('account:ada@example.com');
    t.equal(await a.allows('account:ada@example.com'), true, '9 failures: one left');
    await b.fail('account:ada@example.com');
    t.equal(await a.allows('account:ada@example.com'), false, 'the 10th, on the other instance, closes it here');
    t.equal(await b.allows('account:ada@example.com'), false);
    t.equal(await a.allows('account:bob@example.com'), true, 'other accounts are not affected');
    const other = new SignInLimiter({ max: 10, windowMs: 15 * 60_000, store: one.store('sign-in-ip', { now: Date.now }) });
    t.equal(await other.allows('account:ada@example.com'), true, 'each limit has its own counts');
  });

  await t.test('the window expires in Redis with its key', async (t) => {
    const s = one.store('short', { now: Date.now });
    t.equal((await s.hit('k', 60_000)).count, 1);
    const r = await s.hit('k', 60_000);
    t.equal(r.count, 2);
    t.ok(r.ttlMs > 0 && r.ttlMs <= 60_000, 'the window has its expiry');
    t.equal((await two.store('short', { now: Date.now }).peek('k', 60_000)).count, 2, 'seen by the other instance');
  });

  await t.test('Redis down: counts fall back to each instance, the degradation is reported; back: shared again', async (t) => {
    const registry = new Registry();
    one.registerMetrics(registry);
    const s1 = one.store('outage', { now: Date.now });
    const s2 = two.store('outage', { now: Date.now });
    await redis.stop();
    await until(() => one.backend === 'redis-unreachable');
    t.match(await one.degradation(), /^Redis unreachable \(.*\): rate limits are counted per instance$/);
    t.equal((await s1.hit('k', 60_000)).count, 1, 'counted in memory');
    t.equal((await s1.hit('k', 60_000)).count, 2);
    t.equal((await s2.peek('k', 60_000)).count, 0, 'the other instance has its own counts');
    const text = await registry.metrics();
    t.match(text, /tessera_rate_limit_store_up\{backend="redis-unreachable"\} 1/);
    t.match(text, /tessera_rate_limit_store_fallbacks_total \d+/);
    t.notMatch(text, /tessera_rate_limit_store_fallbacks_total 0\n/);

    await redis.start();
    await until(async () => (await one.degradation()) === null && (await two.degradation()) === null);
    t.equal(one.backend, 'redis');
    await s1.hit('k', 60_000);
    t.equal((await s2.peek('k', 60_000)).count, 1, 'shared again (the outage counts stayed in memory)');
    t.match(await registry.metrics(), /tessera_rate_limit_store_up\{backend="redis"\} 1/);
  });

  await t.test('Redis not there at start: requests are counted in memory until it appears', async (t) => {
    const port = await freePort();
    const late = new SharedCounters({ url: `redis://127.0.0.1:${port}/0`, log, connectTimeoutMs: 200 });
    t.teardown(() => late.close());
    await late.start(500);
    t.equal(late.backend, 'redis-unreachable');
    t.equal((await late.store('x', { now: Date.now }).hit('k', 60_000)).count, 1, 'served from memory at once');
    t.match(await late.degradation(), /^Redis unreachable/);
    await startRedis(t, redisServer!, port);
    await until(async () => (await late.degradation()) === null);
    t.equal(late.backend, 'redis', 'it connects once Redis is there');
    t.equal((await late.store('x', { now: Date.now }).hit('k', 60_000)).count, 1, 'and counts there');
  });
});

async function until(check: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('gave up waiting');
}
