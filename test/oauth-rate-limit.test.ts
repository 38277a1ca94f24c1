import t from 'tap';
import { harness } from './helper.js';
import { basic, createSdkKey, FORM, form } from './oauth-helper.js';

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
    h.inject({ method: 'POST', url: '/oauth/token', remoteAddress: '10.0.0.9', headers: { 'content-type': FORM, authorization: auth, 'x-forwarded-for': xff }, payload: CC });
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
    h.inject({ method: 'POST', url: '/oauth/token', remoteAddress: '10.1.0.1', headers: { 'content-type': FORM, authorization: basic(k.client_id, k.client_secret) }, payload: CC });
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
