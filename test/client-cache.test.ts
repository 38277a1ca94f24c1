import { sql } from 'kysely';
import t from 'tap';
import { findSdkKeysForAuth, recentSdkKeysForAuth } from '../src/oauth/sdk-keys.repository.js';
import { ClientCache, type ClientLoader } from '../src/oauth/client-cache.js';
import { countPoolConnections, handleOf, harness, type Harness } from './support/helper.js';
import { createSdkKey, getToken, type SdkKey } from './support/oauth-helper.js';

/** `n` SDK keys (two per user, the limit). */
async function keys(h: Harness, n: number): Promise<SdkKey[]> {
  const out: SdkKey[] = [];
  for (let i = 0; i < n; i += 2) {
    const u = await h.user();
    out.push(await createSdkKey(h, u));
    if (i + 1 < n) out.push(await createSdkKey(h, u));
  }
  return out;
}

/** The real repository functions, with every call recorded. */
function countingLoader(h: Harness) {
  const calls: { byClientIds: number[]; recent: number[] } = { byClientIds: [], recent: [] };
  const loader: ClientLoader = {
    byClientIds: (ids) => (calls.byClientIds.push(ids.length), findSdkKeysForAuth(h.db, ids)),
    recent: (limit) => (calls.recent.push(limit), recentSdkKeysForAuth(h.db, limit)),
  };
  return { loader, calls };
}

t.test('misses in the same turn of the event loop are read with one statement per batch', async (t) => {
  const h = await harness(t);
  const made = await keys(h, 12);
  const { loader, calls } = countingLoader(h);
  const cache = new ClientCache(loader, h.clock, { maxBatch: 5 });
  const unknown = 's_00000000-0000-4000-8000-000000000000';

  const ids = [...made.map((k) => k.client_id), unknown];
  const got = await Promise.all(ids.map((id) => cache.get(id)));
  t.same(calls.byClientIds, [5, 5, 3], '13 misses: three statements of at most 5 ids');
  t.same(
    got.map((e) => e?.clientId ?? null),
    [...made.map((k) => k.client_id), null],
    'each caller gets its own key, the unknown id null',
  );

  const again = await Promise.all(ids.map((id) => cache.get(id)));
  t.same(calls.byClientIds.length, 3, 'answered from memory afterwards (the unknown id too)');
  t.same(again, got);

  // The same id asked twice while its load is under way: one load.
  const other = new ClientCache(loader, h.clock);
  await Promise.all([other.get(made[0]!.client_id), other.get(made[0]!.client_id)]);
  t.same(calls.byClientIds.slice(3), [1]);
});

t.test('a load that raced an invalidation is answered but not kept', async (t) => {
  const h = await harness(t);
  const [key] = await keys(h, 1);
  const { loader, calls } = countingLoader(h);
  const cache = new ClientCache(loader, h.clock);
  const pending = cache.get(key!.client_id);
  cache.invalidate(key!.client_id);
  t.equal((await pending)?.clientId, key!.client_id);
  t.equal(cache.size, 0, 'not cached: it was read before the invalidation could be seen');
  await cache.get(key!.client_id);
  t.equal(calls.byClientIds.length, 2);
  t.equal(cache.size, 1);
});

t.test('a failed batch fails its callers and is not cached', async (t) => {
  const h = await harness(t);
  const [key] = await keys(h, 1);
  let fail = true;
  const cache = new ClientCache(
    {
      byClientIds: (ids) => (fail ? Promise.reject(new Error('connection refused')) : findSdkKeysForAuth(h.db, ids)),
      recent: (limit) => recentSdkKeysForAuth(h.db, limit),
    },
    h.clock,
  );
  await t.rejects(Promise.resolve(cache.get(key!.client_id)), /connection refused/);
  t.equal(cache.size, 0);
  fail = false;
  t.equal((await cache.get(key!.client_id))?.clientId, key!.client_id, 'the next request loads it');
});

t.test('warm() loads the most recently used keys in one statement', async (t) => {
  const h = await harness(t);
  const made = await keys(h, 6);
  // Two keys used (the older use first), the rest never.
  await sql`update sdk_keys set last_used_at = now() - interval '1 hour' where client_id = ${made[4]!.client_id}`.execute(h.db);
  await sql`update sdk_keys set last_used_at = now() where client_id = ${made[1]!.client_id}`.execute(h.db);
  const { loader, calls } = countingLoader(h);
  const cache = new ClientCache(loader, h.clock);

  t.equal(await cache.warm(3), 3);
  t.same(calls.recent, [3]);
  // Most recently used first, then the newest never-used key.
  for (const k of [made[1]!, made[4]!, made[5]!]) t.equal((await cache.get(k.client_id))?.clientId, k.client_id);
  t.same(calls.byClientIds, [], 'the warmed keys answer from memory');
  await cache.get(made[0]!.client_id);
  t.same(calls.byClientIds, [1], 'a key left out loads on demand');

  // A warm-up that races an invalidation keeps nothing.
  const fresh = new ClientCache(loader, h.clock);
  const warming = fresh.warm();
  fresh.clear();
  t.equal(await warming, 0);
  t.equal(fresh.size, 0);
});

t.test('a started instance warms its SDK-key cache: first token requests of known clients take no connection', async (t) => {
  const h = await harness(t);
  const made = await keys(h, 4);
  const b = await h.instance();
  // The warm-up runs in the background once the change listener is connected.
  const deadline = Date.now() + 10_000;
  while (b.oauth.clients.size < made.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  t.equal(b.oauth.clients.size, made.length);
  const connections = countPoolConnections(t, { handle: handleOf.get(b)! });
  for (const k of made) await getToken({ inject: (o) => b.inject(o) }, k);
  t.equal(connections(), 0);
});

t.test('entries are read again after 90-100% of the TTL, so a warm-up does not expire all at once', async (t) => {
  const h = await harness(t);
  const made = await keys(h, 4);
  const { loader, calls } = countingLoader(h);
  const cache = new ClientCache(loader, h.clock, { ttlMs: 100_000 });
  t.equal(await cache.warm(), 4);
  h.clock.advance(89);
  for (const k of made) await cache.get(k.client_id);
  t.same(calls.byClientIds, [], 'all still fresh at 89% of the TTL');
  h.clock.advance(12);
  await Promise.all(made.map((k) => cache.get(k.client_id)));
  t.same(calls.byClientIds, [4], 'all read again (in one statement) past the TTL');
});
