import t, { type Test } from 'tap';
import type { FastifyInstance } from 'fastify';
import { bearer, harness, type Harness } from './support/helper.js';
import { basic, claimsOf, createSdkKey, getToken, oauthPost, type SdkKey } from './support/oauth-helper.js';
import { nextTokensValidAfter } from '../src/oauth/access-token.js';

async function until(what: string, fn: () => Promise<boolean> | boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const BINDING = {
  error: 'unauthorized_client',
  error_description: "this SDK key's organization binding is no longer valid: its owner is not a member of that organization",
};

type Target = Pick<Harness, 'inject'>;
const on = (app: FastifyInstance): Target => ({ inject: (o) => app.inject(o) });
const tokenRequest = (x: Target, key: SdkKey) =>
  oauthPost(x, '/oauth/token', { grant_type: 'client_credentials' }, { authorization: basic(key.client_id, key.client_secret) });
const verify = (x: Target, token: string) => x.inject({ method: 'GET', url: '/gateway/verify', headers: bearer(token) });
const introspect = (x: Target, token: string, admin: string) => oauthPost(x, '/oauth/introspect', { token }, bearer(admin));

/** Alice, a member of Lab (owned by Olga), with an SDK key bound to Lab and a token of it verified on two instances. */
async function setup(t: Test) {
  const h = await harness(t);
  const [olga, alice, op] = await Promise.all([h.user(), h.user(), h.user()]);
  const lab = await h.org('Lab', [
    [olga, 'owner'],
    [alice, 'member'],
  ]);
  const key = await createSdkKey(h, alice, { name: 'lab job', organization_id: lab.id });
  const other = await h.instance();
  const admin = await h.apiToken(op, ['admin']);
  const token = await getToken(h, key);
  t.equal(claimsOf(token).org_id, lab.id);
  for (const x of [h, on(other)]) {
    const ok = await verify(x, token);
    t.equal(ok.statusCode, 200, 'verified before (and cached)');
    t.equal(ok.headers['x-tessera-org-id'], lab.id);
    t.equal((await introspect(x, token, admin)).json().active, true);
  }
  // Later than the token's iat (whole seconds).
  h.clock.advance(2);
  return { h, olga, alice, op, lab, key, other, admin, token };
}

async function assertCutOff(t: Test, s: Awaited<ReturnType<typeof setup>>) {
  const { h, other, key, token, admin, alice, lab } = s;
  for (const [name, x] of [
    ['this instance', h],
    ['another instance', on(other)],
  ] as const) {
    await until(`${name} refuses the key`, async () => (await tokenRequest(x, key)).statusCode === 400);
    const refused = await tokenRequest(x, key);
    t.same(refused.json(), BINDING, `${name}: no token`);
    t.equal(refused.headers['cache-control'], 'no-store');
    const v = await verify(x, token);
    t.equal(v.statusCode, 401, `${name}: /gateway/verify refuses the earlier token`);
    t.equal(v.headers['x-tessera-org-id'], undefined);
    t.same((await introspect(x, token, admin)).json(), { active: false }, `${name}: introspection says inactive`);
  }
  const row = await h.db.selectFrom('sdk_keys').select('tokens_valid_after').where('client_id', '=', key.client_id).executeTakeFirstOrThrow();
  t.equal(
    row.tokens_valid_after?.getTime(),
    nextTokensValidAfter(null, h.clock.now()),
    'tokens_valid_after stamped: the next whole second, after every iat issued so far',
  );
  const audit = await h.db.selectFrom('audit_events').selectAll().where('action', '=', 'sdk_key.tokens_revoked').execute();
  t.same(
    audit.map((a) => [a.target_id, a.organization_id, a.details.user_id]),
    [[key.client_id, lab.id, alice.id]],
  );
}

t.test('a key whose owner left its organization gets no token and its earlier tokens are refused by /gateway/verify and introspection', async (t) => {
  const s = await setup(t);
  const aliceApi = await s.h.apiToken(s.alice);
  const left = await s.h.inject({ method: 'DELETE', url: `/api/organizations/${s.lab.id}/members/${s.alice.id}`, headers: bearer(aliceApi) });
  t.equal(left.statusCode, 204);
  await assertCutOff(t, s);

  // Rejoining (an operator adds her back) makes the binding valid again; earlier tokens stay refused.
  const opt = s.admin;
  const back = await s.h.inject({
    method: 'PUT',
    url: `/admin/organizations/${s.lab.id}/members/${s.alice.id}`,
    headers: bearer(opt),
    payload: { role: 'member' },
  });
  t.equal(back.statusCode, 201);
  s.h.clock.advance(1);
  await until('another instance sees the membership', async () => (await tokenRequest(on(s.other), s.key)).statusCode === 200);
  const fresh = await getToken(s.h, s.key);
  t.equal(claimsOf(fresh).org_id, s.lab.id);
  t.equal((await verify(on(s.other), fresh)).statusCode, 200);
  t.equal((await verify(on(s.other), s.token)).statusCode, 401, 'the token from before the departure stays refused');
});

t.test('a key whose owner was removed by an owner of its organization is cut off the same way', async (t) => {
  const s = await setup(t);
  const olgaApi = await s.h.apiToken(s.olga);
  const removed = await s.h.inject({ method: 'DELETE', url: `/api/organizations/${s.lab.id}/members/${s.alice.id}`, headers: bearer(olgaApi) });
  t.equal(removed.statusCode, 204);
  await assertCutOff(t, s);
});

t.test('a key whose owner was removed by an operator is cut off the same way', async (t) => {
  const s = await setup(t);
  const removed = await s.h.inject({ method: 'DELETE', url: `/admin/organizations/${s.lab.id}/members/${s.alice.id}`, headers: bearer(s.admin) });
  t.equal(removed.statusCode, 204);
  await assertCutOff(t, s);
});

t.test("a key bound to nothing loses the org_id of its owner's only organization when they leave it: earlier tokens refused", async (t) => {
  const h = await harness(t);
  const [olga, bob] = await Promise.all([h.user(), h.user()]);
  const lab = await h.org('Lab', [
    [olga, 'owner'],
    [bob, 'member'],
  ]);
  const key = await createSdkKey(h, bob, { name: 'unbound' });
  const other = await h.instance();
  const before = await getToken(h, key);
  t.equal(claimsOf(before).org_id, lab.id, "the owner's only organization");
  t.equal((await verify(on(other), before)).headers['x-tessera-org-id'], lab.id);
  h.clock.advance(2);
  const bobApi = await h.apiToken(bob);
  t.equal((await h.inject({ method: 'DELETE', url: `/api/organizations/${lab.id}/members/${bob.id}`, headers: bearer(bobApi) })).statusCode, 204);
  await until('another instance refuses the earlier token', async () => (await verify(on(other), before)).statusCode === 401);
  t.equal((await verify(h, before)).statusCode, 401);
  h.clock.advance(1);
  const after = await getToken(on(other), key);
  t.equal(claimsOf(after).org_id, null, 'new tokens carry no organization');
  const v = await verify(on(other), after);
  t.equal(v.statusCode, 200);
  t.equal(v.headers['x-tessera-org-id'], '');
});

t.test('accepting an invitation refreshes the organization a key acts in, on every instance', async (t) => {
  const h = await harness(t);
  const [olga, carl] = await Promise.all([h.user(), h.user()]);
  const lab = await h.org('Lab', [[olga, 'owner']]);
  const key = await createSdkKey(h, carl, { name: 'unbound' });
  const other = await h.instance();
  t.equal(claimsOf(await getToken(on(other), key)).org_id, null, 'cached on the other instance: no organization');
  const inv = (
    await h.inject({
      method: 'PUT',
      url: `/api/organizations/${lab.id}/members/${carl.id}`,
      headers: bearer(await h.apiToken(olga)),
      payload: { role: 'member' },
    })
  ).json().invitation;
  t.equal(claimsOf(await getToken(on(other), key)).org_id, null, 'an invitation changes nothing');
  const carlApi = await h.apiToken(carl);
  t.equal((await h.inject({ method: 'POST', url: `/api/users/me/invitations/${inv.id}/accept`, headers: bearer(carlApi) })).statusCode, 200);
  await until('the other instance sees the membership', async () => claimsOf(await getToken(on(other), key)).org_id === lab.id);
});
