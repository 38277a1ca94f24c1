// The client SDK (src/client) against a real listening Tessera: client_credentials with caching,
// single flight, renewal, retries and typed errors; credential and organization resolution;
// token login.
import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  ClientCredentials,
  ClientCredentialsAuth,
  TesseraConfigError,
  TesseraNetworkError,
  TesseraOAuthError,
  TokenLogin,
  resolveCredentials,
} from '../src/client/index.js';
import { freePort } from './support/helper.js';
import { claimsOf, createSdkKey } from './support/oauth-helper.js';
import { liveTessera, ManualClock, recordingSleep } from './support/client-helper.js';

const TOKEN = '/oauth/token';
const DISCOVERY = '/.well-known/oauth-authorization-server';

t.test('client_credentials: one request for 100 concurrent callers, cached, renewed 20 s before expiry', async (t) => {
  const live = await liveTessera(t, { TESSERA_ACCESS_TOKEN_TTL: '60s' });
  const key = await createSdkKey(live.h, await live.h.user());
  const clock = new ManualClock();
  const cc = new ClientCredentials({ issuer: live.issuer, clientId: key.client_id, clientSecret: key.client_secret, now: clock.now, env: {} });

  const tokens = await Promise.all(Array.from({ length: 100 }, () => cc.getToken()));
  t.equal(live.count(TOKEN), 1, 'exactly one token request');
  t.equal(live.count(DISCOVERY), 1, 'one discovery request');
  t.equal(new Set(tokens).size, 1, 'every caller got the same token');
  t.equal(claimsOf(tokens[0]!).client_id, key.client_id);

  clock.advance(29); // 31 s left: still outside the 30 s window
  t.equal(await cc.getToken(), tokens[0], 'cached while more than 30 s remain');
  t.equal(live.count(TOKEN), 1);

  clock.advance(11); // 20 s left
  const renewed = await Promise.all(Array.from({ length: 10 }, () => cc.getToken()));
  t.equal(live.count(TOKEN), 2, 'renewed once, for all concurrent callers');
  t.equal(new Set(renewed).size, 1);
  t.not(renewed[0], tokens[0], 'a new token');
  t.not(claimsOf(renewed[0]!).jti, claimsOf(tokens[0]!).jti);
  t.equal(live.count(DISCOVERY), 1, 'discovery is not repeated');

  const at = await cc.getAccessToken();
  t.equal(at.expiresIn, 60);
  t.equal(at.tokenType, 'Bearer');
  t.equal(at.expiresAt, clock.ms + 60_000);

  // The fetch wrapper and headers() carry the token to Tessera's API.
  const auth = new ClientCredentialsAuth(cc);
  t.same(await auth.headers(), { authorization: `Bearer ${renewed[0]}` });
  const me = await auth.fetch(`${live.issuer}/api/users/me`);
  t.equal(me.status, 200);
  t.equal(((await me.json()) as { credential: { kind: string } }).credential.kind, 'client');
});

t.test('client_credentials: refused keys and scopes fail at once with a typed error, no retry', async (t) => {
  const live = await liveTessera(t);
  const key = await createSdkKey(live.h, await live.h.user(), { name: 'sdk', scopes: ['api'] });
  const { sleep, delays } = recordingSleep();
  const wrong = new ClientCredentials({ issuer: live.issuer, clientId: key.client_id, clientSecret: 'not-the-secret', sleep, env: {} });
  const err = await wrong.getToken().catch((e: unknown) => e);
  t.type(err, TesseraOAuthError);
  t.match(err, { code: 'invalid_client', status: 401, retryable: false, description: 'client authentication failed' });
  t.equal(live.count(TOKEN), 1, 'one request: no retry');
  t.same(delays, [], 'never slept');

  const scoped = new ClientCredentials({
    issuer: live.issuer,
    clientId: key.client_id,
    clientSecret: key.client_secret,
    scope: 'quantum_tokens',
    sleep,
    env: {},
  });
  await t.rejects(scoped.getToken(), { name: 'TesseraOAuthError', code: 'invalid_scope', status: 400 });
  t.equal(live.count(TOKEN), 2, 'one more request');
  t.same(delays, []);

  // Concurrent callers share the one failure.
  const results = await Promise.allSettled(Array.from({ length: 5 }, () => wrong.getToken()));
  t.ok(results.every((r) => r.status === 'rejected' && (r.reason as TesseraOAuthError).code === 'invalid_client'));
  t.equal(live.count(TOKEN), 3, 'single flight for failures too');
});

t.test('client_credentials: 503s are retried with backoff honouring Retry-After, then succeed', async (t) => {
  const live = await liveTessera(t);
  const key = await createSdkKey(live.h, await live.h.user());
  const { sleep, delays } = recordingSleep();
  const cc = new ClientCredentials({
    issuer: live.issuer,
    clientId: key.client_id,
    clientSecret: key.client_secret,
    sleep,
    random: () => 0.5,
    retry: { maxRetries: 3, baseDelayMs: 100 },
    env: {},
  });
  live.failNext(DISCOVERY, 1, '0');
  live.failNext(TOKEN, 2, '2');
  const token = await cc.getToken();
  t.equal(claimsOf(token).client_id, key.client_id, 'succeeded');
  t.equal(live.count(DISCOVERY), 2, 'discovery retried once');
  t.equal(live.count(TOKEN), 3, 'token request retried twice');
  t.same(delays, [50, 2000, 2000], 'jittered backoff, then at least Retry-After (2 s) for the token endpoint');

  // Retries run out: the last 503 surfaces as a retryable typed error.
  cc.invalidate();
  live.failNext(TOKEN, 10, '0');
  delays.length = 0;
  await t.rejects(cc.getToken(), { name: 'TesseraOAuthError', code: 'temporarily_unavailable', status: 503, retryable: true });
  t.equal(live.count(TOKEN), 3 + 4, 'first attempt and 3 retries');
  t.same(delays, [50, 100, 200], 'exponential backoff (jitter 0.5)');
});

t.test('client_credentials: network errors are retried; a dead server ends in TesseraNetworkError', async (t) => {
  const live = await liveTessera(t);
  const key = await createSdkKey(live.h, await live.h.user());
  const { sleep, delays } = recordingSleep();
  let calls = 0;
  const flaky = async (input: string | URL, init?: RequestInit) => {
    calls++;
    if (calls <= 2) throw new TypeError('fetch failed');
    return fetch(input, init);
  };
  const cc = new ClientCredentials({ issuer: live.issuer, clientId: key.client_id, clientSecret: key.client_secret, fetch: flaky, sleep, env: {} });
  t.ok(await cc.getToken());
  t.equal(delays.length, 2, 'two retries');
  t.equal(live.count(DISCOVERY), 1);
  t.equal(live.count(TOKEN), 1);

  // Nothing listens on this port: a real connection refusal.
  const dead = `http://127.0.0.1:${await freePort()}`;
  const r2 = recordingSleep();
  const cc2 = new ClientCredentials({
    issuer: dead,
    clientId: key.client_id,
    clientSecret: key.client_secret,
    sleep: r2.sleep,
    retry: { maxRetries: 2 },
    env: {},
  });
  await t.rejects(cc2.getToken(), TesseraNetworkError);
  t.equal(r2.delays.length, 2, 'retried twice before giving up');
});

t.test('credential resolution: options, then the key file, then TESSERA_CLIENT_ID/SECRET', async (t) => {
  const live = await liveTessera(t);
  const key = await createSdkKey(live.h, await live.h.user());
  const dir = mkdtempSync(path.join(tmpdir(), 'tessera-key-'));
  const file = path.join(dir, 'key.json');
  writeFileSync(file, JSON.stringify({ client_id: key.client_id, client_secret: key.client_secret, issuer: live.issuer }));
  const envVars = { TESSERA_CLIENT_ID: 's_env', TESSERA_CLIENT_SECRET: 'env-secret' };

  t.match(resolveCredentials({ clientId: 'a', clientSecret: 'b', env: { TESSERA_SDK_KEY: file, ...envVars } }), { clientId: 'a', source: 'options' });
  t.match(resolveCredentials({ env: { TESSERA_SDK_KEY: file, ...envVars } }), { clientId: key.client_id, source: 'key_file', issuer: live.issuer });
  t.match(resolveCredentials({ env: envVars }), { clientId: 's_env', clientSecret: 'env-secret', source: 'environment' });
  t.throws(() => resolveCredentials({ env: {} }), TesseraConfigError);
  t.throws(() => resolveCredentials({ env: { TESSERA_CLIENT_ID: 'x' } }), TesseraConfigError);
  t.throws(() => resolveCredentials({ clientId: 'x', env: {} }), TesseraConfigError);
  t.throws(() => resolveCredentials({ env: { TESSERA_SDK_KEY: path.join(dir, 'missing.json') } }), /cannot read the SDK key file/);
  writeFileSync(path.join(dir, 'bad.json'), '{"client_id": 1}');
  t.throws(() => resolveCredentials({ env: { TESSERA_SDK_KEY: path.join(dir, 'bad.json') } }), /must hold/);

  // The key file alone is enough: credentials and issuer.
  const cc = new ClientCredentials({ env: { TESSERA_SDK_KEY: file } });
  t.equal(cc.issuer, live.issuer);
  t.equal(claimsOf(await cc.getToken()).client_id, key.client_id);
  t.throws(() => new ClientCredentials({ env: envVars }), /no Tessera URL/);
});

t.test('organization: explicit, TESSERA_ORGANIZATION_ID, the key binding, else discovered with a warning when several', async (t) => {
  const live = await liveTessera(t);
  const u = await live.h.user();
  const a = await live.h.org('Alpha', [[u, 'member']]);
  const b = await live.h.org('Beta', [[u, 'owner']]);
  const key = await createSdkKey(live.h, u);
  const warnings: string[] = [];
  const base = { issuer: live.issuer, clientId: key.client_id, clientSecret: key.client_secret, logger: { warn: (m: string) => void warnings.push(m) } };

  t.equal(await new ClientCredentials({ ...base, organizationId: b.id, env: {} }).organizationId(), b.id);
  t.equal(await new ClientCredentials({ ...base, env: { TESSERA_ORGANIZATION_ID: a.id } }).organizationId(), a.id);
  t.equal(live.count('/api/users/me/organizations'), 0, 'nothing asked');
  t.same(warnings, []);

  const discovered = new ClientCredentials({ ...base, env: {} });
  const org = await discovered.organizationId();
  t.ok(org === a.id || org === b.id, 'one of the two');
  t.equal(await discovered.organizationId(), org, 'resolved once');
  t.equal(live.count('/api/users/me/organizations'), 1);
  t.equal(warnings.length, 1, 'one warning');
  t.match(warnings[0], /belongs to 2 organizations/);
  t.match(warnings[0], /TESSERA_ORGANIZATION_ID/);

  // A key bound to an organization: its tokens say which.
  const bound = await createSdkKey(live.h, u, { name: 'bound', organization_id: b.id });
  const cc = new ClientCredentials({ ...base, clientId: bound.client_id, clientSecret: bound.client_secret, env: {} });
  t.equal(await cc.organizationId(), b.id);
  t.equal(live.count('/api/users/me/organizations'), 1, 'no discovery needed');

  // One organization: no warning.
  const solo = await live.h.user();
  const c = await live.h.org('Gamma', [[solo, 'member']]);
  const soloKey = await createSdkKey(live.h, solo);
  warnings.length = 0;
  t.equal(await new ClientCredentials({ ...base, clientId: soloKey.client_id, clientSecret: soloKey.client_secret, env: {} }).organizationId(), c.id);
  t.same(warnings, []);
});

t.test('TokenLogin: login, use, logout; a second logout is a typed invalid_token', async (t) => {
  const live = await liveTessera(t);
  const u = await live.h.user();
  const apiToken = await live.h.apiToken(u, ['api']);
  const clock = new ManualClock();
  const login = new TokenLogin({ env: { TESSERA_URL: live.issuer, TESSERA_API_TOKEN: apiToken }, now: clock.now });

  const [x, y] = await Promise.all([login.getToken(), login.getToken()]);
  t.equal(x, y);
  t.match(x, /^tsr_ses_/);
  t.equal(live.count('/api/users/loginWithToken'), 1, 'one login for concurrent callers');
  const headers = await login.headers();
  t.same(headers, { 'x-access-token': x });
  const me = await fetch(`${live.issuer}/api/users/me`, { headers });
  t.equal(me.status, 200);
  t.equal(((await me.json()) as { id: string }).id, u.id);

  clock.advance(3600 - 20); // default session TTL 1 h: 20 s left
  const renewed = await login.getToken();
  t.not(renewed, x, 'logged in again before expiry');
  t.equal(live.count('/api/users/loginWithToken'), 2);

  await login.logout(x);
  t.equal((await fetch(`${live.issuer}/api/users/me`, { headers })).status, 401, 'the old session is over');
  await t.rejects(login.logout(x), { name: 'TesseraOAuthError', code: 'invalid_token', status: 401 });
  await login.logout();
  t.equal((await fetch(`${live.issuer}/api/users/me`, { headers: { 'x-access-token': renewed } })).status, 401);

  const bad = new TokenLogin({ issuer: live.issuer, env: {} });
  await t.rejects(bad.login('tsr_pat_nope'), { code: 'invalid_token', status: 401 });
  await t.rejects(bad.getToken(), TesseraConfigError);
});
