import t from 'tap';
import { bearer, harness, type Harness } from './support/helper.js';
import { membershipChangeDenied } from '../src/identity/memberships.service.js';
import type { Role } from '../src/identity/identity.table.js';

const roleOf = async (h: Harness, orgId: string, userId: string) =>
  (await h.db.selectFrom('memberships').select('role').where('organization_id', '=', orgId).where('user_id', '=', userId).executeTakeFirst())?.role ?? null;
const owners = async (h: Harness, orgId: string) =>
  (await h.db.selectFrom('memberships').select('user_id').where('organization_id', '=', orgId).where('role', '=', 'owner').execute()).map((r) => r.user_id);

const putRole = (h: Harness, token: string, orgId: string, userId: string, role: string, prefix = '/api') =>
  h.inject({ method: 'PUT', url: `${prefix}/organizations/${orgId}/members/${userId}`, headers: bearer(token), payload: { role } });
const remove = (h: Harness, token: string, orgId: string, userId: string, prefix = '/api') =>
  h.inject({ method: 'DELETE', url: `${prefix}/organizations/${orgId}/members/${userId}`, headers: bearer(token) });

t.test('the role matrix, as a pure rule', async (t) => {
  const roles: Array<Role | null> = [null, 'member', 'maintainer', 'owner'];
  // Owners may do anything (the last-owner rule is separate).
  for (const cur of roles) for (const next of roles) t.equal(membershipChangeDenied('owner', false, cur, next), null);
  // Nobody but owners grants owner, or touches an owner.
  for (const actor of ['maintainer', 'member'] as const) {
    for (const cur of roles) t.ok(membershipChangeDenied(actor, false, cur, 'owner'), `${actor} cannot grant owner`);
    for (const next of roles) t.ok(membershipChangeDenied(actor, false, 'owner', next), `${actor} cannot change an owner`);
    t.ok(membershipChangeDenied(actor, true, actor, 'owner'), `${actor} cannot make themselves owner`);
  }
  t.equal(membershipChangeDenied('maintainer', false, null, 'member'), null, 'maintainer adds a member');
  t.equal(membershipChangeDenied('maintainer', false, null, 'maintainer'), null, 'maintainer adds a maintainer');
  t.equal(membershipChangeDenied('maintainer', false, 'member', 'maintainer'), null, 'maintainer promotes a member');
  t.equal(membershipChangeDenied('maintainer', false, 'member', null), null, 'maintainer removes a member');
  t.ok(membershipChangeDenied('maintainer', false, 'maintainer', 'member'), 'maintainer cannot demote another maintainer');
  t.ok(membershipChangeDenied('maintainer', false, 'maintainer', null), 'maintainer cannot remove another maintainer');
  t.equal(membershipChangeDenied('maintainer', true, 'maintainer', 'member'), null, 'maintainer steps down');
  t.equal(membershipChangeDenied('maintainer', true, 'maintainer', null), null, 'maintainer leaves');
  t.equal(membershipChangeDenied('member', true, 'member', null), null, 'member leaves');
  t.ok(membershipChangeDenied('member', true, 'member', 'maintainer'), 'member cannot promote themselves');
  t.ok(membershipChangeDenied('member', false, null, 'member'), 'member cannot add');
  t.ok(membershipChangeDenied('member', false, 'member', null), 'member cannot remove others');
});

t.test('members list members; owners manage; maintainers add members but not owners; members cannot', async (t) => {
  const h = await harness(t);
  const [owner, maint, member, newbie, other, outsider] = await Promise.all([h.user(), h.user(), h.user(), h.user(), h.user(), h.user()]);
  const org = await h.org('Lab', [
    [owner, 'owner'],
    [maint, 'maintainer'],
    [member, 'member'],
  ]);
  const [ot, mt, mbt, xt] = await Promise.all([h.apiToken(owner), h.apiToken(maint), h.apiToken(member), h.apiToken(outsider)]);

  const list = await h.inject({ method: 'GET', url: `/api/organizations/${org.id}/members`, headers: bearer(mbt) });
  t.equal(list.statusCode, 200);
  t.same(
    list.json().members.map((m: { user_id: string; role: string }) => [m.user_id, m.role]),
    [
      [owner.id, 'owner'],
      [maint.id, 'maintainer'],
      [member.id, 'member'],
    ],
  );
  t.equal(list.json().members[0].email, owner.email);
  const outsiderList = await h.inject({ method: 'GET', url: `/api/organizations/${org.id}/members`, headers: bearer(xt) });
  t.equal(outsiderList.statusCode, 404);
  t.same(outsiderList.json(), { error: 'not_found', message: 'organization not found' });
  t.equal((await putRole(h, xt, org.id, outsider.id, 'member')).statusCode, 404, 'outsiders cannot add themselves, and learn nothing');

  // Maintainer adds a member (an invitation the user accepts), promotes nobody to owner (403).
  const invited = await putRole(h, mt, org.id, newbie.id, 'member');
  t.equal(invited.statusCode, 202);
  const added = await h.inject({
    method: 'POST',
    url: `/api/users/me/invitations/${invited.json().invitation.id}/accept`,
    headers: bearer(await h.apiToken(newbie)),
  });
  t.equal(added.statusCode, 200);
  t.same(added.json(), { organization_id: org.id, user_id: newbie.id, role: 'member', previous_role: null });
  const escalate = await putRole(h, mt, org.id, newbie.id, 'owner');
  t.equal(escalate.statusCode, 403);
  t.same(escalate.json(), { error: 'forbidden', message: 'only owners can make someone an owner' });
  const selfEscalate = await putRole(h, mt, org.id, maint.id, 'owner');
  t.equal(selfEscalate.statusCode, 403);
  const touchOwner = await putRole(h, mt, org.id, owner.id, 'member');
  t.equal(touchOwner.statusCode, 403);
  t.equal((await remove(h, mt, org.id, owner.id)).statusCode, 403);
  t.equal(await roleOf(h, org.id, owner.id), 'owner', 'owner untouched');

  // Member escalations and management: 403, nothing changes.
  const memberSelf = await putRole(h, mbt, org.id, member.id, 'maintainer');
  t.equal(memberSelf.statusCode, 403);
  t.same(memberSelf.json(), { error: 'forbidden', message: 'members cannot change their own role' });
  t.equal((await putRole(h, mbt, org.id, other.id, 'member')).statusCode, 403);
  t.equal((await remove(h, mbt, org.id, newbie.id)).statusCode, 403);
  t.equal(await roleOf(h, org.id, member.id), 'member');
  t.equal(await roleOf(h, org.id, other.id), null);

  // Owner promotes to owner, demotes, removes.
  const promoted = await putRole(h, ot, org.id, maint.id, 'owner');
  t.equal(promoted.statusCode, 200);
  t.same(promoted.json(), { organization_id: org.id, user_id: maint.id, role: 'owner', previous_role: 'maintainer' });
  t.equal((await putRole(h, ot, org.id, maint.id, 'maintainer')).statusCode, 200);
  t.equal((await remove(h, ot, org.id, newbie.id)).statusCode, 204);
  t.equal(await roleOf(h, org.id, newbie.id), null);
  t.equal((await remove(h, ot, org.id, newbie.id)).statusCode, 404, 'removing a non-member is 404');
  const ghost = await putRole(h, ot, org.id, '00000000-0000-4000-8000-000000000000', 'member');
  t.equal(ghost.statusCode, 404);
  t.same(ghost.json(), { error: 'not_found', message: 'user not found' });
  const badRole = await putRole(h, ot, org.id, member.id, 'admin');
  t.equal(badRole.statusCode, 400);

  // A member leaves.
  t.equal((await remove(h, mbt, org.id, member.id)).statusCode, 204);
  t.equal((await h.inject({ method: 'GET', url: `/api/organizations/${org.id}/members`, headers: bearer(mbt) })).statusCode, 404);

  const events = await h.db
    .selectFrom('audit_events')
    .selectAll()
    .where('organization_id', '=', org.id)
    .where('action', 'like', 'membership.%')
    .orderBy('id')
    .execute();
  t.same(
    events.map((e) => [e.action, e.target_id, e.details.role, e.details.previous_role]),
    [
      ['membership.set', newbie.id, 'member', null],
      ['membership.set', maint.id, 'owner', 'maintainer'],
      ['membership.set', maint.id, 'maintainer', 'owner'],
      ['membership.remove', newbie.id, null, 'member'],
      ['membership.remove', member.id, null, 'member'],
    ],
    'every change audited, refusals not',
  );
});

t.test('the last owner cannot be removed or demoted, by themselves or an operator', async (t) => {
  const h = await harness(t);
  const [owner, maint, op] = await Promise.all([h.user(), h.user(), h.user()]);
  const org = await h.org('Solo', [
    [owner, 'owner'],
    [maint, 'maintainer'],
  ]);
  const ot = await h.apiToken(owner);
  const opt = await h.apiToken(op, ['admin']);
  const msg = { error: 'conflict', message: 'the last owner of an organization cannot be removed or demoted; make another member owner first' };

  const demote = await putRole(h, ot, org.id, owner.id, 'member');
  t.equal(demote.statusCode, 409);
  t.same(demote.json(), msg);
  t.same((await remove(h, ot, org.id, owner.id)).json(), msg);
  t.same((await putRole(h, opt, org.id, owner.id, 'maintainer', '/admin')).json(), msg);
  t.same((await remove(h, opt, org.id, owner.id, '/admin')).json(), msg);
  t.same(await owners(h, org.id), [owner.id]);
  t.equal((await putRole(h, ot, org.id, owner.id, 'owner')).statusCode, 200, 'owner -> owner is a no-op, allowed');

  // With a second owner, the first may step down.
  t.equal((await putRole(h, ot, org.id, maint.id, 'owner')).statusCode, 200);
  t.equal((await putRole(h, ot, org.id, owner.id, 'member')).statusCode, 200);
  t.same(await owners(h, org.id), [maint.id]);
});

t.test('two owners demoted at once leave one owner (organization row lock), many times over', async (t) => {
  const h = await harness(t);
  const op = await h.user();
  const opt = await h.apiToken(op, ['admin']);
  for (let round = 0; round < 9; round++) {
    const [a, b] = await Promise.all([h.user(), h.user()]);
    const org = await h.org(`Race ${round}`, [
      [a, 'owner'],
      [b, 'owner'],
    ]);
    const [at, bt] = await Promise.all([h.apiToken(a), h.apiToken(b)]);
    const variant = round % 3;
    const [r1, r2] =
      variant === 0
        ? // An operator demotes both owners concurrently.
          await Promise.all([putRole(h, opt, org.id, a.id, 'member', '/admin'), putRole(h, opt, org.id, b.id, 'member', '/admin')])
        : variant === 1
          ? // Both owners leave concurrently.
            await Promise.all([remove(h, at, org.id, a.id), remove(h, bt, org.id, b.id)])
          : // Each owner demotes the other concurrently: the loser is no longer an owner when its turn comes.
            await Promise.all([putRole(h, at, org.id, b.id, 'member'), putRole(h, bt, org.id, a.id, 'member')]);
    const statuses = [r1.statusCode, r2.statusCode].sort();
    t.equal((await owners(h, org.id)).length, 1, `round ${round}: exactly one owner left`);
    t.same(
      statuses,
      [
        [200, 409],
        [204, 409],
        [200, 403],
      ][variant],
      `round ${round}: one change wins, the other is refused`,
    );
  }
});

t.test('operators create, list and read organizations and manage members (scope admin)', async (t) => {
  const h = await harness(t);
  const [op, alice, bob] = await Promise.all([h.user(), h.user(), h.user()]);
  const opt = await h.apiToken(op, ['admin']);
  const aliceApi = await h.apiToken(alice, ['api']);

  const refused = await h.inject({ method: 'POST', url: '/admin/organizations', headers: bearer(aliceApi), payload: { name: 'X' } });
  t.equal(refused.statusCode, 403);
  t.equal(refused.json().error, 'insufficient_scope');

  const created = await h.inject({ method: 'POST', url: '/admin/organizations', headers: bearer(opt), payload: { name: 'Quantum Lab', owner_id: alice.id } });
  t.equal(created.statusCode, 201);
  const org = created.json();
  t.equal(org.name, 'Quantum Lab');
  t.equal(org.member_count, 1);
  t.same(await owners(h, org.id), [alice.id]);
  const noOwner = await h.inject({ method: 'POST', url: '/admin/organizations', headers: bearer(opt), payload: { name: 'Empty' } });
  t.equal(noOwner.statusCode, 201);
  const ghostOwner = await h.inject({
    method: 'POST',
    url: '/admin/organizations',
    headers: bearer(opt),
    payload: { name: 'G', owner_id: '00000000-0000-4000-8000-000000000000' },
  });
  t.equal(ghostOwner.statusCode, 404);
  t.equal((await h.inject({ method: 'POST', url: '/admin/organizations', headers: bearer(opt), payload: { name: '  ' } })).statusCode, 400);

  // An operator changes roles without being a member, including granting owner.
  t.equal((await putRole(h, opt, org.id, bob.id, 'owner', '/admin')).statusCode, 201);
  t.equal((await putRole(h, opt, org.id, alice.id, 'member', '/admin')).statusCode, 200);
  t.equal((await remove(h, opt, org.id, alice.id, '/admin')).statusCode, 204);
  t.same(await owners(h, org.id), [bob.id]);

  const one = await h.inject({ method: 'GET', url: `/admin/organizations/${org.id}`, headers: bearer(opt) });
  t.equal(one.statusCode, 200);
  t.same(
    one.json().members.map((m: { user_id: string; role: string }) => [m.user_id, m.role]),
    [[bob.id, 'owner']],
  );
  t.equal((await h.inject({ method: 'GET', url: '/admin/organizations/00000000-0000-4000-8000-000000000000', headers: bearer(opt) })).statusCode, 404);

  const page1 = await h.inject({ method: 'GET', url: '/admin/organizations?limit=1', headers: bearer(opt) });
  t.equal(page1.statusCode, 200);
  t.equal(page1.json().organizations.length, 1);
  t.ok(page1.json().next_after);
  const page2 = await h.inject({ method: 'GET', url: `/admin/organizations?limit=1&after=${page1.json().next_after}`, headers: bearer(opt) });
  t.equal(page2.json().organizations.length, 1);
  t.not(page2.json().organizations[0].id, page1.json().organizations[0].id);
  const all = await h.inject({ method: 'GET', url: '/admin/organizations', headers: bearer(opt) });
  t.equal(all.json().organizations.length, 2);
  t.equal(all.json().next_after, null);

  const audit = await h.db.selectFrom('audit_events').selectAll().where('actor_user_id', '=', op.id).orderBy('id').execute();
  t.same(
    audit.map((e) => e.action),
    ['organization.create', 'membership.set', 'organization.create', 'membership.set', 'membership.set', 'membership.remove'],
  );
  t.ok(audit.every((e) => e.actor_credential?.startsWith('api_token:')));
});
