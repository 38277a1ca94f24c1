import t from 'tap';
import { randomUUID } from 'node:crypto';
import { harness } from './support/helper.js';
import { basic, createSdkKey, FORM, form } from './support/oauth-helper.js';

const CC = form({ grant_type: 'client_credentials' });

t.test('failed client authentications are limited per IP, stricter than requests', async (t) => {
  const h = await harness(t, { env: { TESSERA_RATE_LIMIT: 'true', TESSERA_RATE_LIMIT_FAILED_AUTH_PER_IP: '3' } });
  const key = await createSdkKey(h, await h.user());
  const post = (auth: string, ip: string, headers: Record<string, string> = {}) =>
    h.inject({ method: 'POST', url: '/oauth/token', remoteAddress: ip, headers: { 'content-type': FORM, authorization: auth, ...headers }, payload: CC });
  const wrong = basic(key.client_id, 'wrong');
  const right = basic(key.client_id, key.client_secret);
  for (let i = 0; i < 3; i++) t.equal((await post(wrong, '10.0.0.1')).statusCode, 401);
  const blocked = await post(right, '10.0.0.1');
  t.equal(blocked.statusCode, 429, 'even the right secret is refused from that IP now');
  t.equal(blocked.json().error, 'temporarily_unavailable');
  t.ok(Number(blocked.headers['retry-after']) > 0, 'Retry-After');
  t.equal((await post(right, '10.0.0.2')).statusCode, 200, 'other IPs are not affected');

  // X-Forwarded-For is not trusted by default: spoofing it does not escape the limit.
  const spoofed = await post(right, '10.0.0.1', { 'x-forwarded-for': '203.0.113.9' });
  t.equal(spoofed.statusCode, 429);
});

t.test('X-Forwarded-For decides the client IP only when trusted', async (t) => {
  const h = await harness(t, { env: { TESSERA_RATE_LIMIT: 'true', TESSERA_RATE_LIMIT_FAILED_AUTH_PER_IP: '2', TESSERA_TRUST_PROXY: 'true' } });
  const key = await createSdkKey(h, await h.user());
  const post = (auth: string, xff: string) =>
    h.inject({
      method: 'POST',
      url: '/oauth/token',
      remoteAddress: '10.0.0.9',
      headers: { 'content-type': FORM, authorization: auth, 'x-forwarded-for': xff },
      payload: CC,
    });
  const wrong = basic(key.client_id, 'wrong');
  for (let i = 0; i < 2; i++) t.equal((await post(wrong, '198.51.100.1')).statusCode, 401);
  t.equal((await post(wrong, '198.51.100.1')).statusCode, 429);
  t.equal((await post(basic(key.client_id, key.client_secret), '198.51.100.2')).statusCode, 200, 'another forwarded client');
});

t.test('token requests are limited per client and per IP', async (t) => {
  const h = await harness(t, {
    env: { TESSERA_RATE_LIMIT: 'true', TESSERA_RATE_LIMIT_TOKEN_PER_CLIENT: '4', TESSERA_RATE_LIMIT_TOKEN_PER_IP: '6' },
  });
  const a = await createSdkKey(h, await h.user());
  const b = await createSdkKey(h, await h.user());
  const post = (k: { client_id: string; client_secret: string }) =>
    h.inject({
      method: 'POST',
      url: '/oauth/token',
      remoteAddress: '10.1.0.1',
      headers: { 'content-type': FORM, authorization: basic(k.client_id, k.client_secret) },
      payload: CC,
    });
  for (let i = 0; i < 4; i++) t.equal((await post(a)).statusCode, 200);
  const perClient = await post(a);
  t.equal(perClient.statusCode, 429);
  t.match(perClient.json().error_description, /this client/);
  t.ok(Number(perClient.headers['retry-after']) > 0);
  t.equal((await post(b)).statusCode, 200, 'another client from the same IP');
  const perIp = await post(b);
  t.equal(perIp.statusCode, 429, 'the IP has used its 6 requests');
  t.ok(Number(perIp.headers['retry-after']) > 0);
  t.equal(perIp.json().error, 'temporarily_unavailable');
});

t.test('concurrent failed authentications cannot outrun the per-IP limit: the rest get 429 before any look-up or hash', async (t) => {
  const h = await harness(t, { env: { TESSERA_RATE_LIMIT: 'true', TESSERA_RATE_LIMIT_FAILED_AUTH_PER_IP: '30' } });
  const key = await createSdkKey(h, await h.user());
  let worked = 0;
  const checks = h.app.oauth.clientAuth.checks;
  const hash = checks.hash;
  checks.hash = (secret) => {
    worked++;
    return hash(secret);
  };
  const looked = new Set<string>();
  const get = h.app.oauth.clients.get.bind(h.app.oauth.clients);
  h.app.oauth.clients.get = (id: string) => {
    looked.add(id);
    return get(id);
  };
  const post = (url: string, auth: string, ip: string, payload = CC) =>
    h.inject({ method: 'POST', url, remoteAddress: ip, headers: { 'content-type': FORM, authorization: auth }, payload });

  const same = await Promise.all(Array.from({ length: 120 }, () => post('/oauth/token', basic(key.client_id, 'wrong'), '10.2.0.1')));
  const count = (rs: Array<{ statusCode: number }>, s: number) => rs.filter((r) => r.statusCode === s).length;
  t.equal(count(same, 401), 30, 'exactly the limit is worked on');
  t.equal(count(same, 429), 90, 'the rest are refused');
  t.equal(worked, 30, 'no hash for the refused ones');
  const refused = same.find((r) => r.statusCode === 429)!;
  t.equal(refused.json().error, 'temporarily_unavailable');
  t.ok(Number(refused.headers['retry-after']) > 0, 'Retry-After');

  // Unknown (well-formed) client ids each cost a look-up: only the limit's worth are looked up.
  worked = 0;
  looked.clear();
  const ids = Array.from({ length: 120 }, () => `s_${randomUUID()}`);
  const unknown = await Promise.all(ids.map((id) => post('/oauth/token', basic(id, 'x'), '10.2.0.2')));
  t.equal(count(unknown, 401), 30);
  t.equal(count(unknown, 429), 90);
  t.equal(looked.size, 30, 'at most the limit of client ids reach the cache or Postgres');

  // Introspection and revocation authenticate the same way, with the same budget.
  worked = 0;
  const token = form({ token: 'x' });
  const mixed = await Promise.all(
    Array.from({ length: 60 }, (_, i) => post(i % 2 ? '/oauth/introspect' : '/oauth/revoke', basic(key.client_id, 'wrong'), '10.2.0.3', token)),
  );
  t.equal(count(mixed, 401), 30);
  t.equal(count(mixed, 429), 30);
  t.equal(worked, 30);
  t.equal((await post('/oauth/token', basic(key.client_id, key.client_secret), '10.2.0.4')).statusCode, 200, 'other IPs unaffected');
});

t.test('successful authentications give their slot back: they never use up the failed-authentication budget', async (t) => {
  const h = await harness(t, { env: { TESSERA_RATE_LIMIT: 'true', TESSERA_RATE_LIMIT_FAILED_AUTH_PER_IP: '3' } });
  const key = await createSdkKey(h, await h.user());
  const post = (auth: string) =>
    h.inject({ method: 'POST', url: '/oauth/token', remoteAddress: '10.3.0.1', headers: { 'content-type': FORM, authorization: auth }, payload: CC });
  const ok = await Promise.all(Array.from({ length: 20 }, () => post(basic(key.client_id, key.client_secret))));
  t.same([...new Set(ok.map((r) => r.statusCode))], [200], 'twenty concurrent successes, limit 3');
  for (let i = 0; i < 3; i++) t.equal((await post(basic(key.client_id, 'wrong'))).statusCode, 401);
  t.equal((await post(basic(key.client_id, key.client_secret))).statusCode, 429, 'three failures use the budget up');
  h.clock.advance(61);
  t.equal((await post(basic(key.client_id, key.client_secret))).statusCode, 200, 'a new window after a minute');
});
