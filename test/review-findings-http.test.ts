// The outside review's scenarios, replayed as its scripts ran them: a listening Tessera on real
// Postgres, plain fetch over real sockets, one test per guarantee. The detailed cases live beside
// each feature (credential-rules, org-bound-keys, organization-invitations, oauth-rate-limit,
// oauth-sdk-keys, http-hardening; db-timeouts runs its stalled database over sockets already);
// these prove the guarantees hold end to end.
import t from 'tap';
import { harness, type Harness } from './support/helper.js';
import { basic, form } from './support/oauth-helper.js';

interface Http {
  (
    method: string,
    path: string,
    opts?: { token?: string; json?: unknown; body?: string; headers?: Record<string, string> },
  ): Promise<{
    status: number;
    headers: Headers;
    body: Record<string, unknown>;
  }>;
}

async function listen(h: Harness): Promise<Http> {
  await h.app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = h.app.server.address() as { port: number };
  return async (method, path, opts = {}) => {
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    let body = opts.body;
    if (opts.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(opts.json);
    }
    const res = await fetch(`http://127.0.0.1:${port}${path}`, { method, headers, ...(body === undefined ? {} : { body }) });
    const text = await res.text();
    return { status: res.status, headers: res.headers, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
  };
}

async function sdkKey(http: Http, token: string, extra: Record<string, unknown> = {}) {
  const res = await http('POST', '/api/sdk-keys', { token, json: { name: 'review', scopes: ['api', 'quantum_tokens'], ...extra } });
  if (res.status !== 201) throw new Error(`create key: ${res.status} ${JSON.stringify(res.body)}`);
  return { id: res.body.client_id as string, secret: res.body.client_secret as string };
}

async function jwt(http: Http, key: { id: string; secret: string }) {
  return http('POST', '/oauth/token', {
    headers: { authorization: basic(key.id, key.secret), 'content-type': 'application/x-www-form-urlencoded' },
    body: form({ grant_type: 'client_credentials' }),
  });
}

t.test('an SDK-key JWT manages no credential, and what a session creates dies with its API token', async (t) => {
  const h = await harness(t);
  const http = await listen(h);
  const user = await h.user();
  const pat = await h.apiToken(user, ['api', 'quantum_tokens']);
  const access = (await jwt(http, await sdkKey(http, pat))).body.access_token as string;

  for (const [method, path, json] of [
    ['POST', '/api/access-tokens', { name: 'forever', scopes: ['api'] }],
    ['POST', '/api/sdk-keys', { name: 'another' }],
    ['PUT', '/api/provider-tokens/ionq', { credential: { api_key: 'attacker-chosen-value-123456' } }],
  ] as const) {
    const res = await http(method, path, { token: access, json });
    t.equal(res.status, 403, `${method} ${path} with an SDK-key JWT: 403`);
    t.equal(res.body.error, 'insufficient_scope');
  }
  t.equal((await http('GET', '/api/users/me', { token: access })).status, 200, 'the JWT still reads');

  const session = (await http('POST', '/api/users/loginWithToken', { json: { apiToken: pat } })).body.id as string;
  const child = await http('POST', '/api/access-tokens', { token: session, json: { name: 'from a session', scopes: ['api'] } });
  t.equal(child.status, 201, 'a session creates an API token');
  const parentId = ((await http('GET', '/api/access-tokens', { token: pat })).body.access_tokens as Array<{ id: string; name: string }>).find(
    (x) => x.name === 'test',
  )!.id;
  t.equal((await http('DELETE', `/api/access-tokens/${parentId}`, { token: pat })).status, 204, 'the API token the session came from is revoked');
  t.equal((await http('GET', '/api/users/me', { token: child.body.token as string })).status, 401, 'the token the session made dies with it');
});

t.test('suspension is for good: reactivation revives neither old JWTs nor the SDK key', async (t) => {
  const h = await harness(t);
  const http = await listen(h);
  const operator = await h.apiToken(await h.user(), ['api', 'admin']);
  const user = await h.user();
  const key = await sdkKey(http, await h.apiToken(user, ['api', 'quantum_tokens']));
  const before = (await jwt(http, key)).body.access_token as string;
  t.equal((await http('POST', `/admin/users/${user.id}/suspend`, { token: operator })).status, 200);
  t.equal((await http('POST', `/admin/users/${user.id}/activate`, { token: operator })).status, 200);
  t.equal((await http('GET', '/gateway/verify', { token: before })).status, 401, 'a JWT minted before the suspension stays refused');
  const again = await jwt(http, key);
  t.equal(again.status, 401, 'the old SDK key mints nothing');
  t.equal(again.body.error, 'invalid_client');
});

t.test('an organization-bound key stops claiming the organization its owner left', async (t) => {
  const h = await harness(t);
  const http = await listen(h);
  const [owner, dev] = [await h.user(), await h.user()];
  const org = await h.org(undefined, [
    [owner, 'owner'],
    [dev, 'member'],
  ]);
  const devToken = await h.apiToken(dev, ['api', 'quantum_tokens']);
  const key = await sdkKey(http, devToken, { organization_id: org.id });
  const before = (await jwt(http, key)).body.access_token as string;
  t.equal((await http('GET', '/gateway/verify', { token: before })).headers.get('x-tessera-org-id'), org.id);
  t.equal((await http('DELETE', `/api/organizations/${org.id}/members/${dev.id}`, { token: devToken })).status, 204, 'the owner of the key leaves');
  const after = await jwt(http, key);
  t.equal(after.status, 400, 'no new token');
  t.equal(after.body.error, 'unauthorized_client');
  t.equal((await http('GET', '/gateway/verify', { token: before })).status, 401, 'the earlier token is refused');
});

t.test('nobody is put into an organization without consent: an invitation, and resolve ignores it', async (t) => {
  const h = await harness(t);
  const http = await listen(h);
  const [attacker, victim] = [await h.user(), await h.user()];
  const org = await h.org(undefined, [[attacker, 'owner']]);
  const attackerToken = await h.apiToken(attacker, ['api', 'quantum_tokens']);
  const victimToken = await h.apiToken(victim, ['api', 'quantum_tokens']);
  const stored = await http('PUT', `/api/organizations/${org.id}/provider-tokens/ionq`, {
    token: attackerToken,
    json: { credential: { api_key: 'attacker-controlled-key-0001' } },
  });
  t.equal(stored.status, 201);
  const add = await http('PUT', `/api/organizations/${org.id}/members/${victim.id}`, { token: attackerToken, json: { role: 'member' } });
  t.equal(add.status, 202, 'an invitation, not a membership');
  t.equal((await http('GET', '/api/provider-tokens/ionq/resolve', { token: victimToken })).status, 404, "the victim does not resolve the inviter's token");
  t.same((await http('GET', '/api/users/me/organizations', { token: victimToken })).body.organizations, [], 'nor is a member');
});

t.test('concurrent wrong secrets cannot outrun the failed-authentication limit', async (t) => {
  const h = await harness(t, { env: { TESSERA_RATE_LIMIT: 'true', TESSERA_RATE_LIMIT_FAILED_AUTH_PER_IP: '30' } });
  const http = await listen(h);
  const key = await sdkKey(http, await h.apiToken(await h.user(), ['api', 'quantum_tokens']));
  const answers = await Promise.all(Array.from({ length: 120 }, () => jwt(http, { id: key.id, secret: 'wrong-secret-wrong-secret-wrong-secret-00' })));
  const count = (s: number) => answers.filter((a) => a.status === s).length;
  t.equal(count(401), 30, 'exactly the limit is processed');
  t.equal(count(429), 90, 'the rest are refused before any work');
  t.ok(
    answers.filter((a) => a.status === 429).every((a) => a.headers.get('retry-after')),
    'with Retry-After',
  );
});

t.test('a token issued right after re-enabling a key is accepted at once', async (t) => {
  const h = await harness(t);
  const http = await listen(h);
  const pat = await h.apiToken(await h.user(), ['api', 'quantum_tokens']);
  const key = await sdkKey(http, pat);
  t.equal((await http('PATCH', `/api/sdk-keys/${key.id}`, { token: pat, json: { status: 'disabled' } })).status, 200);
  t.equal((await http('PATCH', `/api/sdk-keys/${key.id}`, { token: pat, json: { status: 'enabled' } })).status, 200);
  const fresh = (await jwt(http, key)).body.access_token as string;
  t.equal((await http('GET', '/gateway/verify', { token: fresh })).status, 200);
});

t.test('JSON routes take JSON only, without coercion; every answer says nosniff', async (t) => {
  const h = await harness(t);
  const http = await listen(h);
  const pat = await h.apiToken(await h.user(), ['api']);
  const asForm = await http('POST', '/api/access-tokens', {
    token: pat,
    body: 'name=x&scopes=api',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
  });
  t.equal(asForm.status, 415);
  t.equal(asForm.body.error, 'unsupported_media_type');
  const loose = await http('POST', '/api/access-tokens', { token: pat, json: { name: 12345, scopes: 'api' } });
  t.equal(loose.status, 400);
  t.equal(loose.body.error, 'invalid_request');
  for (const res of [asForm, loose, await http('GET', '/no/such/path'), await http('GET', '/healthz')]) {
    t.equal(res.headers.get('x-content-type-options'), 'nosniff');
  }
});
