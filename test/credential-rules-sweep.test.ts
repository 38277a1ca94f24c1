// The credential-rules matrix, swept: every write route the app serves, tried with every kind of
// principal. A write route missing from MATRIX fails the test, so a new route has to be placed.
import t from 'tap';
import type { LightMyRequestResponse } from 'fastify';
import { bearer, harness, type Harness } from './support/helper.js';
import { getToken } from './support/oauth-helper.js';
import { issueApiToken } from '../src/api-tokens/api-tokens.service.js';
import { SDK_KEY_TOKEN_CANNOT_MANAGE } from '../src/platform/errors/api-error.js';
import type { User } from '../src/identity/users.repository.js';
import type { Organization } from '../src/identity/organizations.repository.js';

type Principal = 'api token, all scopes' | 'api token, scope api only' | 'api token with an expiry' | 'session' | 'SDK-key JWT' | 'admin api token';
const PRINCIPALS: Principal[] = ['api token, all scopes', 'api token, scope api only', 'api token with an expiry', 'session', 'SDK-key JWT', 'admin api token'];

interface Ctx {
  h: Harness;
  /** The caller's user: owner of `org`. */
  u: User;
  /** A member of `org`. */
  member: User;
  /** A user in no organization. */
  outsider: User;
  org: Organization;
  /** An operator-made API token of `u` (scopes api, quantum_tokens) to prepare targets with. */
  op: string;
  /** The credential under test. */
  cred: string;
}

type Send = (c: Ctx) => Promise<LightMyRequestResponse>;
type Case =
  /** Self-service: API tokens and sessions pass (with `ok`), SDK-key JWTs get 403. */
  | { kind: 'self-service'; ok: number; send: Send }
  /** Operators: only the admin token passes, SDK-key JWTs get the credential-manager 403, others lack `admin`. */
  | { kind: 'operator'; ok: number; send: Send }
  /** Not a bearer-authenticated write: why, and a check that an SDK-key JWT gains nothing there. */
  | { kind: 'not-bearer'; why: string };

const IONQ = { credential: { api_key: 'ionq-secret-value-123456' } };
const req = (c: Ctx, method: string, url: string, payload?: unknown) =>
  c.h.inject({ method: method as 'POST', url, headers: bearer(c.cred), ...(payload === undefined ? {} : { payload: payload as object }) });
const prepare = async (c: Ctx, method: string, url: string, payload?: unknown) => {
  const r = await c.h.inject({ method: method as 'POST', url, headers: bearer(c.op), ...(payload === undefined ? {} : { payload: payload as object }) });
  if (r.statusCode >= 300) throw new Error(`prepare ${method} ${url}: ${r.statusCode} ${r.body}`);
  return r;
};
let seq = 0;

/** An invitation for the caller's user to another organization, sent by that organization's owner. */
async function invitationForCaller(c: Ctx): Promise<string> {
  const owner = await c.h.user();
  const other = await c.h.org(undefined, [[owner, 'owner']]);
  const res = await c.h.inject({
    method: 'PUT',
    url: `/api/organizations/${other.id}/members/${c.u.id}`,
    headers: bearer(await c.h.apiToken(owner, ['api'])),
    payload: { role: 'member' },
  });
  if (res.statusCode !== 202) throw new Error(`invite: ${res.statusCode} ${res.body}`);
  return res.json().invitation.id;
}

const MATRIX: Record<string, Case> = {
  'POST /api/access-tokens': { kind: 'self-service', ok: 201, send: (c) => req(c, 'POST', '/api/access-tokens', { name: 'x', scopes: ['api'] }) },
  'DELETE /api/access-tokens/:id': {
    kind: 'self-service',
    ok: 204,
    send: async (c) => {
      const { row } = await issueApiToken(c.h.db, c.h.config.pepper, { userId: c.u.id, name: 'target', scopes: ['api'], expiresAt: null });
      return req(c, 'DELETE', `/api/access-tokens/${row.id}`);
    },
  },
  'POST /api/access-tokens/:id/regenerate': {
    kind: 'self-service',
    ok: 201,
    send: async (c) => {
      const expiresAt = new Date(c.h.clock.now() + 3600_000);
      const { row } = await issueApiToken(c.h.db, c.h.config.pepper, { userId: c.u.id, name: 'target', scopes: ['api'], expiresAt });
      return req(c, 'POST', `/api/access-tokens/${row.id}/regenerate`);
    },
  },
  'POST /api/sdk-keys/:clientId/secret': {
    kind: 'self-service',
    ok: 200,
    send: async (c) => {
      const key = (await prepare(c, 'POST', '/api/sdk-keys', { name: 'target' })).json();
      return req(c, 'POST', `/api/sdk-keys/${key.client_id}/secret`, { previous_secret_expires_in: 0 });
    },
  },
  'POST /api/sdk-keys': { kind: 'self-service', ok: 201, send: (c) => req(c, 'POST', '/api/sdk-keys', { name: 'x' }) },
  'PATCH /api/sdk-keys/:clientId': {
    kind: 'self-service',
    ok: 200,
    send: async (c) => {
      const key = (await prepare(c, 'POST', '/api/sdk-keys', { name: 'target' })).json();
      return req(c, 'PATCH', `/api/sdk-keys/${key.client_id}`, { status: 'disabled' });
    },
  },
  'DELETE /api/sdk-keys/:clientId': {
    kind: 'self-service',
    ok: 204,
    send: async (c) => {
      const key = (await prepare(c, 'POST', '/api/sdk-keys', { name: 'target' })).json();
      return req(c, 'DELETE', `/api/sdk-keys/${key.client_id}`);
    },
  },
  'PUT /api/provider-tokens/:provider': { kind: 'self-service', ok: 201, send: (c) => req(c, 'PUT', '/api/provider-tokens/ionq', IONQ) },
  'DELETE /api/provider-tokens/:provider': {
    kind: 'self-service',
    ok: 204,
    send: async (c) => {
      await prepare(c, 'PUT', '/api/provider-tokens/ionq', IONQ);
      return req(c, 'DELETE', '/api/provider-tokens/ionq');
    },
  },
  'PUT /api/organizations/:orgId/provider-tokens/:provider': {
    kind: 'self-service',
    ok: 201,
    send: (c) => req(c, 'PUT', `/api/organizations/${c.org.id}/provider-tokens/ionq`, IONQ),
  },
  'DELETE /api/organizations/:orgId/provider-tokens/:provider': {
    kind: 'self-service',
    ok: 204,
    send: async (c) => {
      await prepare(c, 'PUT', `/api/organizations/${c.org.id}/provider-tokens/ionq`, IONQ);
      return req(c, 'DELETE', `/api/organizations/${c.org.id}/provider-tokens/ionq`);
    },
  },
  // A non-member is invited (202), never added.
  'PUT /api/organizations/:orgId/members/:userId': {
    kind: 'self-service',
    ok: 202,
    send: (c) => req(c, 'PUT', `/api/organizations/${c.org.id}/members/${c.outsider.id}`, { role: 'member' }),
  },
  'DELETE /api/organizations/:orgId/members/:userId': {
    kind: 'self-service',
    ok: 204,
    send: (c) => req(c, 'DELETE', `/api/organizations/${c.org.id}/members/${c.member.id}`),
  },
  'DELETE /api/organizations/:orgId/invitations/:invitationId': {
    kind: 'self-service',
    ok: 204,
    send: async (c) => {
      const inv = (await prepare(c, 'PUT', `/api/organizations/${c.org.id}/members/${c.outsider.id}`, { role: 'member' })).json();
      return req(c, 'DELETE', `/api/organizations/${c.org.id}/invitations/${inv.invitation.id}`);
    },
  },
  'POST /api/users/me/invitations/:invitationId/accept': {
    kind: 'self-service',
    ok: 200,
    send: async (c) => req(c, 'POST', `/api/users/me/invitations/${await invitationForCaller(c)}/accept`),
  },
  'POST /api/users/me/invitations/:invitationId/decline': {
    kind: 'self-service',
    ok: 204,
    send: async (c) => req(c, 'POST', `/api/users/me/invitations/${await invitationForCaller(c)}/decline`),
  },
  'POST /admin/users': {
    kind: 'operator',
    ok: 201,
    send: (c) => req(c, 'POST', '/admin/users', { email: `sweep${++seq}@example.com`, name: 'Sweep' }),
  },
  'POST /admin/users/:id/suspend': { kind: 'operator', ok: 200, send: (c) => req(c, 'POST', `/admin/users/${c.outsider.id}/suspend`) },
  'POST /admin/users/:id/activate': { kind: 'operator', ok: 200, send: (c) => req(c, 'POST', `/admin/users/${c.outsider.id}/activate`) },
  'POST /admin/users/:id/invitations': { kind: 'operator', ok: 201, send: (c) => req(c, 'POST', `/admin/users/${c.outsider.id}/invitations`, {}) },
  // The browser console: a cookie session and a same-origin check; bearer credentials are not read there.
  ...Object.fromEntries(
    [
      '/console/sign-in/password',
      '/console/sign-in/token',
      '/console/passkey/sign-in/options',
      '/console/passkey/sign-in',
      '/console/sign-out',
      '/console/sign-out-everywhere',
      '/console/invitation/password',
      '/console/invitation/passkey/options',
      '/console/invitation/passkey',
      '/console/tokens',
      '/console/tokens/:id/revoke',
      '/console/tokens/:id/regenerate',
      '/console/sdk-keys',
      '/console/sdk-keys/:clientId/:action',
      '/console/password',
      '/console/passkeys/options',
      '/console/passkeys',
      '/console/passkeys/:id/rename',
      '/console/passkeys/:id/remove',
      '/console/sessions/:id/end',
      '/console/provider-tokens/:provider',
      '/console/provider-tokens/:provider/delete',
      '/console/admin/users/invite',
      '/console/organizations/:orgId/members',
      '/console/organizations/:orgId/members/:userId',
      '/console/organizations/:orgId/members/:userId/remove',
      '/console/organizations/:orgId/provider-tokens/:provider',
      '/console/organizations/:orgId/provider-tokens/:provider/delete',
      '/console/invitations/:id/:answer',
      '/console/admin/users/:id/:action',
      '/console/admin/keys/rotate',
      '/console/admin/keys/revoke',
      '/console/admin/organizations',
      '/console/admin/organizations/:orgId/members',
      '/console/admin/organizations/:orgId/members/:userId',
      '/console/admin/organizations/:orgId/members/:userId/remove',
    ].map((url) => [
      `POST ${url}`,
      { kind: 'not-bearer', why: 'browser console: cookie session, same-origin writes only; bearer tokens are not read' } as Case,
    ]),
  ),
  'POST /admin/organizations': { kind: 'operator', ok: 201, send: (c) => req(c, 'POST', '/admin/organizations', { name: 'Sweep' }) },
  'PUT /admin/organizations/:orgId/members/:userId': {
    kind: 'operator',
    ok: 201,
    send: (c) => req(c, 'PUT', `/admin/organizations/${c.org.id}/members/${c.outsider.id}`, { role: 'member' }),
  },
  'DELETE /admin/organizations/:orgId/members/:userId': {
    kind: 'operator',
    ok: 204,
    send: (c) => req(c, 'DELETE', `/admin/organizations/${c.org.id}/members/${c.member.id}`),
  },
  'POST /admin/keys/rotate': { kind: 'operator', ok: 200, send: (c) => req(c, 'POST', '/admin/keys/rotate', {}) },
  // An unknown kid: past the guard, 404 (revoking a real key would end every token of this run).
  'POST /admin/keys/:kid/revoke': { kind: 'operator', ok: 404, send: (c) => req(c, 'POST', '/admin/keys/no-such-kid/revoke') },
  'POST /oauth/token': { kind: 'not-bearer', why: 'SDK-key client authentication; mints short-lived JWTs that never outlive the key' },
  'POST /oauth/introspect': { kind: 'not-bearer', why: 'reads: whether a token is active' },
  'POST /oauth/revoke': { kind: 'not-bearer', why: 'an SDK key revokes its own JWTs (only ends credentials)' },
  'POST /api/users/loginWithToken': { kind: 'not-bearer', why: 'an API token in the body; the session never outlives it' },
  'POST /api/users/logout': { kind: 'not-bearer', why: 'ends the session sent (only ends credentials)' },
  'POST /events/poll': {
    kind: 'not-bearer',
    why: "reads security events (scope events:read or admin; an SDK key holding events:read is a receiver); acknowledgements move only the caller's own cursor",
  },
};

t.test('every write route is in the credential-rules matrix', async (t) => {
  const h = await harness(t);
  const served = new Set(h.app.routeTable.filter((r) => r.method !== 'GET').map((r) => `${r.method} ${r.url}`));
  t.same([...served].filter((r) => !(r in MATRIX)).sort(), [], 'write routes nobody placed in MATRIX');
  t.same(
    Object.keys(MATRIX)
      .filter((r) => !served.has(r))
      .sort(),
    [],
    'MATRIX routes the app does not serve',
  );
});

t.test('sweep: every credential-managing route with every kind of principal', async (t) => {
  const h = await harness(t);

  async function context(principal: Principal): Promise<Ctx> {
    const [u, member, outsider] = await Promise.all([h.user(), h.user(), h.user()]);
    const org = await h.org(undefined, [
      [u, 'owner'],
      [member, 'member'],
    ]);
    const op = await h.apiToken(u, ['api', 'quantum_tokens']);
    const c: Ctx = { h, u, member, outsider, org, op, cred: '' };
    switch (principal) {
      case 'api token, all scopes':
        c.cred = await h.apiToken(u, ['api', 'quantum_tokens', 'introspect']);
        break;
      case 'api token, scope api only':
        c.cred = await h.apiToken(u, ['api']);
        break;
      case 'api token with an expiry':
        c.cred = (
          await issueApiToken(h.db, h.config.pepper, {
            userId: u.id,
            name: 'expiring',
            scopes: ['api', 'quantum_tokens'],
            expiresAt: new Date(h.clock.now() + 86400_000),
          })
        ).token;
        break;
      case 'session': {
        const pat = await h.apiToken(u, ['api', 'quantum_tokens', 'introspect']);
        c.cred = (await h.inject({ method: 'POST', url: '/api/users/loginWithToken', payload: { apiToken: pat } })).json().id;
        break;
      }
      case 'SDK-key JWT': {
        const key = (await prepare(c, 'POST', '/api/sdk-keys', { name: 'jwt', scopes: ['api', 'quantum_tokens'] })).json();
        c.cred = await getToken(h, key);
        break;
      }
      case 'admin api token':
        c.cred = await h.apiToken(u, ['api', 'quantum_tokens', 'introspect', 'admin']);
        break;
    }
    return c;
  }

  const outcomes: string[] = [];
  for (const [route, cs] of Object.entries(MATRIX)) {
    if (cs.kind === 'not-bearer') continue;
    for (const principal of PRINCIPALS) {
      const c = await context(principal);
      const res = await cs.send(c);
      const what = `${route} as ${principal}`;
      const body = res.body ? res.json() : null;
      if (principal === 'SDK-key JWT') {
        t.equal(res.statusCode, 403, `${what}: 403`);
        t.same(body, { error: 'insufficient_scope', message: SDK_KEY_TOKEN_CANNOT_MANAGE }, `${what}: insufficient_scope, saying why`);
        t.match(res.headers['www-authenticate'], /^Bearer realm="tessera", error="insufficient_scope"/, `${what}: RFC 6750 challenge`);
      } else if (cs.kind === 'operator' && principal !== 'admin api token') {
        t.equal(res.statusCode, 403, `${what}: 403`);
        t.same(body, { error: 'insufficient_scope', message: 'this request needs scope: admin' }, `${what}: lacks admin`);
      } else {
        t.equal(res.statusCode, cs.ok, `${what}: ${cs.ok}${res.statusCode !== cs.ok ? ` (${res.body})` : ''}`);
      }
      outcomes.push(`${route} | ${principal} | ${res.statusCode}`);
    }
  }
  t.equal(outcomes.length, Object.values(MATRIX).filter((c) => c.kind !== 'not-bearer').length * PRINCIPALS.length, 'every pair tried');

  // The routes that are not bearer-authenticated writes: an SDK-key JWT sent as a bearer gains nothing there.
  const c = await context('SDK-key JWT');
  for (const [route, cs] of Object.entries(MATRIX)) {
    if (cs.kind !== 'not-bearer') continue;
    const [method, url] = route.split(' ') as [string, string];
    const form = url.startsWith('/oauth/');
    const res = await h.inject({
      method: method as 'POST',
      url,
      headers: { ...bearer(c.cred), ...(form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}) },
      payload: form ? `grant_type=client_credentials&token=${c.cred}` : url.endsWith('loginWithToken') ? { apiToken: c.cred } : undefined,
    });
    t.ok(res.statusCode >= 400, `${route} with an SDK-key JWT: ${res.statusCode} (${cs.why})`);
  }
  const created = await h.db.selectFrom('api_tokens').select(['id', 'parent_api_token_id', 'expires_at']).where('name', '=', 'x').execute();
  t.equal(created.length, 5, 'POST /api/access-tokens created one token for each API-token or session principal');
  t.ok(
    created.every((r) => r.parent_api_token_id !== null),
    'each with its parent recorded',
  );
});
