// Rotating an SDK key's secret with an overlap: both secrets authenticate until the chosen instant,
// on every instance; after it only the new one does, on every instance, whether or not a change
// notification reached it. Tokens already issued stay valid unless the owner revokes them.
import t from 'tap';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { bearer, harness, type Harness } from './support/helper.js';
import { basic, createSdkKey, oauthPost, type SdkKey } from './support/oauth-helper.js';

type Injector = { inject(o: InjectOptions): Promise<LightMyRequestResponse> };

const tokenWith = (app: Injector, clientId: string, secret: string) =>
  oauthPost(app, '/oauth/token', { grant_type: 'client_credentials' }, { authorization: basic(clientId, secret) });

async function works(app: Injector, clientId: string, secret: string): Promise<boolean> {
  const res = await tokenWith(app, clientId, secret);
  if (res.statusCode === 200) return true;
  if (res.statusCode !== 401 || res.json().error !== 'invalid_client') throw new Error(`unexpected ${res.statusCode} ${res.body}`);
  return false;
}

/** Waits (bounded) until a change notification has reached `app`: `check` holds there. */
async function reaches(app: Injector, check: (app: Injector) => Promise<boolean>): Promise<boolean> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (await check(app)) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function rotate(h: Harness, owner: string, clientId: string, body?: Record<string, unknown>) {
  return h.inject({
    method: 'POST',
    url: `/api/sdk-keys/${clientId}/secret`,
    headers: bearer(owner),
    ...(body === undefined ? {} : { payload: body }),
  });
}

const me = (app: Injector, token: string) => app.inject({ method: 'GET', url: '/api/users/me', headers: bearer(token) });

async function keyOf(h: Harness): Promise<{ key: SdkKey; owner: string }> {
  const u = await h.user();
  const owner = await h.apiToken(u, ['api', 'quantum_tokens']);
  const res = await h.inject({ method: 'POST', url: '/api/sdk-keys', headers: bearer(owner), payload: { name: 'rotating' } });
  t.equal(res.statusCode, 201);
  return { key: res.json(), owner };
}

t.test('default overlap: both secrets work for 24 h on every instance, then only the new one; issued tokens stay valid', async (t) => {
  const h = await harness(t);
  const b = await h.instance();
  const { key, owner } = await keyOf(h);
  t.equal(key.client_secret.length >= 43, true);
  t.ok(await works(b, key.client_id, key.client_secret), 'instance B caches the key with its first secret');
  const before = await tokenWith(h, key.client_id, key.client_secret);
  const issued = before.json().access_token as string;

  const res = await rotate(h, owner, key.client_id);
  t.equal(res.statusCode, 200);
  t.equal(res.headers['cache-control'], 'no-store');
  const rotated = res.json();
  const fresh = rotated.client_secret as string;
  t.not(fresh, key.client_secret);
  t.ok(fresh.length >= 43, 'at least 256 random bits');
  t.equal(rotated.previous_secret_expires_at, new Date(h.clock.now() + 86400_000).toISOString(), 'previous secret works for 24 h by default');

  t.ok(await reaches(b, (app) => works(app, key.client_id, fresh)), 'the new secret works on B once the change reached it');
  for (const [name, app] of [
    ['A', h],
    ['B', b],
  ] as const) {
    t.ok(await works(app, key.client_id, key.client_secret), `${name}: the previous secret works during the overlap`);
    t.ok(await works(app, key.client_id, fresh), `${name}: the new secret works`);
    t.equal((await me(app, issued)).statusCode, 200, `${name}: a token issued before the rotation stays valid`);
  }

  const shown = await h.inject({ method: 'GET', url: `/api/sdk-keys/${key.client_id}`, headers: bearer(owner) });
  t.equal(shown.json().previous_secret_expires_at, rotated.previous_secret_expires_at, 'the representation shows the overlap');
  t.notOk('client_secret' in shown.json(), 'never the secret again');

  h.clock.advance(86400 + 1);
  for (const [name, app] of [
    ['A', h],
    ['B', b],
  ] as const) {
    t.notOk(await works(app, key.client_id, key.client_secret), `${name}: invalid_client for the previous secret after the overlap`);
    t.ok(await works(app, key.client_id, fresh), `${name}: the new secret still works`);
  }
  const after = await h.inject({ method: 'GET', url: `/api/sdk-keys/${key.client_id}`, headers: bearer(owner) });
  t.equal(after.json().previous_secret_expires_at, null, 'no previous secret is shown once it expired');

  const audit = await h.db
    .selectFrom('audit_events')
    .selectAll()
    .where('action', '=', 'sdk_key.rotate_secret')
    .where('target_id', '=', key.client_id)
    .execute();
  t.equal(audit.length, 1, 'audited');
  t.same(audit[0]!.details, { previous_secret_expires_at: rotated.previous_secret_expires_at, revoke_issued_tokens: false });
  t.notMatch(JSON.stringify(audit), fresh, 'the audit row holds no secret');
  t.notMatch(JSON.stringify(audit), key.client_secret);
});

t.test('the expiry of the overlap is honoured by cached entries on every instance, with no notification', async (t) => {
  const h = await harness(t);
  const b = await h.instance();
  const { key, owner } = await keyOf(h);
  const res = await rotate(h, owner, key.client_id, { previous_secret_expires_in: 60 });
  const fresh = res.json().client_secret as string;
  t.ok(await reaches(b, (app) => works(app, key.client_id, fresh)), 'B has read the rotated key');
  t.ok(await works(b, key.client_id, key.client_secret), 'B accepts the previous secret during the overlap');
  t.ok(b.oauth.clients.size > 0, 'B holds the key in its cache');
  // Well inside the cache's five-minute re-read interval: only the entry's own expiry can refuse it.
  h.clock.advance(61);
  t.notOk(await works(b, key.client_id, key.client_secret), 'B refuses the previous secret once its overlap ended');
  t.notOk(await works(h, key.client_id, key.client_secret), 'so does A');
  t.ok(await works(b, key.client_id, fresh));
});

t.test('overlap 0 stops the previous secret at once; revoke_issued_tokens ends the tokens already issued', async (t) => {
  const h = await harness(t);
  const b = await h.instance();
  const { key, owner } = await keyOf(h);
  const issued = (await tokenWith(h, key.client_id, key.client_secret)).json().access_token as string;
  t.equal((await me(b, issued)).statusCode, 200, 'B verifies the token before the rotation');
  h.clock.advance(2);

  const res = await rotate(h, owner, key.client_id, { previous_secret_expires_in: 0, revoke_issued_tokens: true });
  t.equal(res.statusCode, 200);
  const fresh = res.json().client_secret as string;
  t.equal(res.json().previous_secret_expires_at, null);
  t.notOk(await works(h, key.client_id, key.client_secret), 'the previous secret stops at once');
  t.equal((await me(h, issued)).statusCode, 401, 'tokens issued before are refused');
  t.ok(await reaches(b, async (app) => (await me(app, issued)).statusCode === 401), 'on B too');
  t.notOk(await works(b, key.client_id, key.client_secret), 'B refuses the previous secret');
  const next = (await tokenWith(b, key.client_id, fresh)).json().access_token as string;
  t.equal((await me(h, next)).statusCode, 200, 'a token from the new secret works');
});

t.test('a second rotation ends the first overlap: at most two secrets ever work', async (t) => {
  const h = await harness(t);
  const { key, owner } = await keyOf(h);
  const second = (await rotate(h, owner, key.client_id)).json().client_secret as string;
  const third = (await rotate(h, owner, key.client_id, { previous_secret_expires_in: 3600 })).json().client_secret as string;
  t.notOk(await works(h, key.client_id, key.client_secret), 'the first secret stopped');
  t.ok(await works(h, key.client_id, second), 'the second is in the overlap');
  t.ok(await works(h, key.client_id, third));
});

t.test('who may rotate, and hostile options', async (t) => {
  const h = await harness(t);
  const { key, owner } = await keyOf(h);
  const stranger = await h.apiToken(await h.user(), ['api']);
  const notYours = await rotate(h, stranger, key.client_id);
  t.equal(notYours.statusCode, 404, "another user's key is not found");
  t.same(Object.keys(notYours.json()).sort(), ['error', 'message']);

  const other: SdkKey = await createSdkKey(h, await h.user());
  const jwt = (await tokenWith(h, other.client_id, other.client_secret)).json().access_token as string;
  t.equal((await rotate(h, jwt, other.client_id)).statusCode, 403, 'an SDK-key JWT cannot rotate secrets');

  const bad: unknown[] = [
    { previous_secret_expires_in: -1 },
    { previous_secret_expires_in: 7 * 86400 + 1 },
    { previous_secret_expires_in: 1e308 },
    { previous_secret_expires_in: 'NaN' },
    { previous_secret_expires_in: 1.5 },
    { previous_secret_expires_in: null },
    { revoke_issued_tokens: 'yes please' },
    { unknown: true },
    [],
  ];
  for (const payload of bad) {
    const res = await h.inject({ method: 'POST', url: `/api/sdk-keys/${key.client_id}/secret`, headers: bearer(owner), payload: payload as object });
    t.equal(res.statusCode, 400, `${JSON.stringify(payload)}: 400`);
    t.type(res.json().message, 'string');
  }
  const nan = await h.inject({
    method: 'POST',
    url: `/api/sdk-keys/${key.client_id}/secret`,
    headers: { ...bearer(owner), 'content-type': 'application/json' },
    payload: '{"previous_secret_expires_in": NaN}',
  });
  t.equal(nan.statusCode, 400, 'NaN is not JSON: 400');
  const text = await h.inject({ method: 'POST', url: `/api/sdk-keys/${key.client_id}/secret`, headers: bearer(owner), payload: 'x' });
  t.equal(text.statusCode, 415, 'not JSON: 415');
  t.ok(await works(h, key.client_id, key.client_secret), 'no refused request rotated the secret');
  t.equal((await rotate(h, owner, 's_00000000-0000-4000-8000-000000000000')).statusCode, 404);
  t.equal((await rotate(h, owner, 'not-a-client')).statusCode, 400);
  const max = await rotate(h, owner, key.client_id, { previous_secret_expires_in: 7 * 86400 });
  t.equal(max.statusCode, 200, 'the longest overlap is accepted');
});
