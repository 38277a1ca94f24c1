import t from 'tap';
import { findSdkKeysForAuth, recentSdkKeysForAuth } from '../src/oauth/sdk-keys.repository.js';
import { ClientCache, type ClientLoader } from '../src/oauth/client-cache.js';
import { loadConfig } from '../src/platform/config.js';
import { bearer, harness, type Harness } from './support/helper.js';
import { basic, FORM, form, type SdkKey } from './support/oauth-helper.js';

const CC = form({ grant_type: 'client_credentials' });

/** A user, an API token and an SDK key made with that token (kept to manage the key). */
async function keyWithToken(h: Harness): Promise<{ key: SdkKey; apiToken: string }> {
  const apiToken = await h.apiToken(await h.user(), ['api']);
  const res = await h.inject({ method: 'POST', url: '/api/sdk-keys', headers: bearer(apiToken), payload: { name: 'sdk' } });
  if (res.statusCode !== 201) throw new Error(`create sdk key: ${res.statusCode} ${res.body}`);
  return { key: res.json(), apiToken };
}

const token = (h: Harness, key: SdkKey) =>
  h.inject({ method: 'POST', url: '/oauth/token', headers: { 'content-type': FORM, authorization: basic(key.client_id, key.client_secret) }, payload: CC });

t.test('TESSERA_CLIENT_CACHE_MAX: a whole number of at least 1, 150,000 by default', async (t) => {
  const base = {
    DATABASE_URL: 'postgres://x@127.0.0.1/x',
    TESSERA_MASTER_KEY: Buffer.alloc(32, 1).toString('base64'),
    TESSERA_PEPPER: Buffer.alloc(32, 2).toString('base64'),
  };
  t.equal(loadConfig(base).config.clientCacheMaxEntries, 150_000);
  t.equal(loadConfig({ ...base, TESSERA_CLIENT_CACHE_MAX: '5000' }).config.clientCacheMaxEntries, 5000);
  t.throws(() => loadConfig({ ...base, TESSERA_CLIENT_CACHE_MAX: '0' }), /TESSERA_CLIENT_CACHE_MAX/);
  t.throws(() => loadConfig({ ...base, TESSERA_CLIENT_CACHE_MAX: 'lots' }), /TESSERA_CLIENT_CACHE_MAX/);
});

t.test('the cache never holds more than its bound and drops the least recently used entry', async (t) => {
  const h = await harness(t);
  const made: SdkKey[] = [];
  for (let i = 0; i < 4; i++) made.push((await keyWithToken(h)).key);
  const [a, b, c, d] = made.map((k) => k.client_id) as [string, string, string, string];
  const reads: string[][] = [];
  const loader: ClientLoader = {
    byClientIds: (ids) => (reads.push([...ids]), findSdkKeysForAuth(h.db, ids)),
    recent: (limit) => recentSdkKeysForAuth(h.db, limit),
  };
  const cache = new ClientCache(loader, h.clock, { maxEntries: 3 });
  for (const id of [a, b, c]) await cache.get(id);
  await cache.get(a); // a is now the most recently used; b the least
  t.same(reads.length, 3, 'a hit reads nothing');
  await cache.get(d);
  t.equal(cache.size, 3, 'bounded');
  await cache.get(a);
  await cache.get(c);
  t.equal(reads.length, 4, 'a and c stayed in memory');
  const again = await cache.get(b);
  t.equal(again?.clientId, b, 'the evicted key is read again, and is the same key');
  t.same(reads.at(-1), [b]);
  t.equal(cache.size, 3);
  const unknown = await cache.get('s_00000000-0000-4000-8000-000000000000');
  t.equal(unknown, null, 'unknown ids count against the bound too');
  t.equal(cache.size, 3);
});

t.test('with a bound of 2, evicted keys still authenticate and a key disabled while evicted is refused once reloaded', async (t) => {
  const h = await harness(t, { env: { TESSERA_CLIENT_CACHE_MAX: '2' } });
  const one = await keyWithToken(h);
  const two = await keyWithToken(h);
  const three = await keyWithToken(h);
  for (const k of [one, two, three]) t.equal((await token(h, k.key)).statusCode, 200, 'each key gets a token');
  t.ok(h.app.oauth.clients.size <= 2, 'the cache holds at most 2 entries');

  // `one` was evicted by `three`; it is read again and still authenticates, and only with its own secret.
  t.equal((await token(h, one.key)).statusCode, 200, 'an evicted key still authenticates');
  const wrong = await token(h, { ...one.key, client_secret: `${one.key.client_secret}x` });
  t.equal(wrong.statusCode, 401, 'and a wrong secret for it is refused');

  // `two` is now the least recently used: make it leave the cache, disable it, ask again.
  t.equal((await token(h, three.key)).statusCode, 200);
  t.equal((await token(h, one.key)).statusCode, 200);
  const off = await h.inject({ method: 'PATCH', url: `/api/sdk-keys/${two.key.client_id}`, headers: bearer(two.apiToken), payload: { status: 'disabled' } });
  t.equal(off.statusCode, 200);
  const refused = await token(h, two.key);
  t.equal(refused.statusCode, 401, 'the disabled key, read again from Postgres, is refused');
  t.equal(refused.json().error, 'invalid_client');
  // And it stays refused after being pushed out and read once more.
  t.equal((await token(h, three.key)).statusCode, 200);
  t.equal((await token(h, one.key)).statusCode, 200);
  t.equal((await token(h, two.key)).statusCode, 401, 'still refused after another eviction and reload');
  t.ok(h.app.oauth.clients.size <= 2);
});
