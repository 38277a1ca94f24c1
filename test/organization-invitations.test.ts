import t, { type Test } from 'tap';
import { bearer, harness, type Harness, cliOnHarness } from './support/helper.js';
import { main } from '../src/cli.js';

const put = (h: Harness, token: string, url: string, payload: unknown) =>
  h.inject({ method: 'PUT', url, headers: bearer(token), payload: payload as Record<string, unknown> });
const get = (h: Harness, token: string, url: string) => h.inject({ method: 'GET', url, headers: bearer(token) });
const post = (h: Harness, token: string, url: string) => h.inject({ method: 'POST', url, headers: bearer(token) });
const del = (h: Harness, token: string, url: string) => h.inject({ method: 'DELETE', url, headers: bearer(token) });
const putRole = (h: Harness, token: string, orgId: string, userId: string, role: string) =>
  put(h, token, `/api/organizations/${orgId}/members/${userId}`, { role });
const roleOf = async (h: Harness, orgId: string, userId: string) =>
  (await h.db.selectFrom('memberships').select('role').where('organization_id', '=', orgId).where('user_id', '=', userId).executeTakeFirst())?.role ?? null;
const invitationNotFound = { error: 'not_found', message: 'invitation not found' };

/** An attacker owning their own organization (with a provider credential) and a victim in none. */
async function attackSetup(t: Test) {
  const h = await harness(t);
  const [mallory, victim] = await Promise.all([h.user(), h.user()]);
  const evil = await h.org('Evil', [[mallory, 'owner']]);
  const [mt, vt] = await Promise.all([h.apiToken(mallory, ['api', 'quantum_tokens']), h.apiToken(victim, ['api', 'quantum_tokens'])]);
  const stored = await put(h, mt, `/api/organizations/${evil.id}/provider-tokens/ionq`, { credential: { api_key: 'attacker-key' } });
  t.equal(stored.statusCode, 201);
  return { h, mallory, victim, evil, mt, vt };
}

t.test('an owner of another organization cannot make a user a member: it is an invitation', async (t) => {
  const { h, mallory, victim, evil, mt, vt } = await attackSetup(t);
  const res = await putRole(h, mt, evil.id, victim.id, 'member');
  t.equal(res.statusCode, 202);
  const inv = res.json().invitation;
  t.match(inv, { organization_id: evil.id, organization_name: 'Evil', user_id: victim.id, role: 'member', invited_by: mallory.id });
  t.equal(Date.parse(inv.expires_at) - Date.parse(inv.created_at), 7 * 24 * 3600_000, 'expires in 7 days');
  t.equal(await roleOf(h, evil.id, victim.id), null, 'no membership');
  t.same((await get(h, vt, '/api/users/me/organizations')).json(), { organizations: [] }, 'not among my organizations');
  const members = (await get(h, mt, `/api/organizations/${evil.id}/members`)).json().members;
  t.same(
    members.map((m: { user_id: string }) => m.user_id),
    [mallory.id],
    'not listed as a member',
  );
  // The invited user cannot act as a member either.
  t.equal((await get(h, vt, `/api/organizations/${evil.id}/members`)).statusCode, 404);
  t.equal((await get(h, vt, `/api/organizations/${evil.id}/provider-tokens`)).statusCode, 404);
  // An SDK key cannot be bound to an organization the user was only invited to.
  const key = await h.inject({ method: 'POST', url: '/api/sdk-keys', headers: bearer(vt), payload: { name: 'k', organization_id: evil.id } });
  t.equal(key.statusCode, 403);

  const listed = await get(h, vt, '/api/users/me/invitations');
  t.equal(listed.statusCode, 200);
  t.same(listed.json(), { invitations: [inv] });
  const orgList = await get(h, mt, `/api/organizations/${evil.id}/invitations`);
  t.same(orgList.json(), { invitations: [inv] });

  const audit = await h.db.selectFrom('audit_events').selectAll().where('action', '=', 'invitation.create').execute();
  t.equal(audit.length, 1);
  t.match(audit[0], { actor_user_id: mallory.id, target_id: victim.id, organization_id: evil.id });

  // Inviting again renews the one invitation (one pending invitation per user and organization).
  const again = await putRole(h, mt, evil.id, victim.id, 'maintainer');
  t.equal(again.statusCode, 202);
  t.equal(again.json().invitation.role, 'maintainer');
  t.not(again.json().invitation.id, inv.id, 'a renewed invitation has a new id');
  t.equal((await get(h, vt, '/api/users/me/invitations')).json().invitations.length, 1);
  t.same(await post(h, vt, `/api/users/me/invitations/${inv.id}/accept`).then((r) => r.json()), invitationNotFound, 'the replaced id is gone');
});

t.test('resolve ignores pending invitations; the 409 ambiguity is not triggered by an unaccepted invitation', async (t) => {
  const { h, victim, evil, mt, vt } = await attackSetup(t);
  t.equal((await putRole(h, mt, evil.id, victim.id, 'member')).statusCode, 202);
  const bare = await get(h, vt, '/api/provider-tokens/ionq/resolve');
  t.equal(bare.statusCode, 404);
  t.same(bare.json(), { error: 'not_found', message: 'ionq credential of yours not found' });
  const named = await get(h, vt, `/api/provider-tokens/ionq/resolve?organization_id=${evil.id}`);
  t.equal(named.statusCode, 404);
  t.same(named.json(), { error: 'not_found', message: 'organization not found' });

  // A victim in one organization keeps resolving it (no 409) while an invitation is pending.
  const own = await h.org('Home', [[victim, 'member']]);
  const owner = await h.user();
  await h.db.insertInto('memberships').values({ organization_id: own.id, user_id: owner.id, role: 'owner' }).execute();
  const ot = await h.apiToken(owner, ['api']);
  t.equal((await put(h, ot, `/api/organizations/${own.id}/provider-tokens/ionq`, { credential: { api_key: 'home-key' } })).statusCode, 201);
  const home = await get(h, vt, '/api/provider-tokens/ionq/resolve');
  t.equal(home.statusCode, 200);
  t.same(home.json().credential, { api_key: 'home-key' });
  t.equal(home.json().organization_id, own.id);
});

t.test("the invited user accepts and then resolves the organization's token", async (t) => {
  const { h, mallory, victim, evil, mt, vt } = await attackSetup(t);
  const inv = (await putRole(h, mt, evil.id, victim.id, 'maintainer')).json().invitation;
  const accepted = await post(h, vt, `/api/users/me/invitations/${inv.id}/accept`);
  t.equal(accepted.statusCode, 200);
  t.same(accepted.json(), { organization_id: evil.id, user_id: victim.id, role: 'maintainer', previous_role: null });
  t.equal(await roleOf(h, evil.id, victim.id), 'maintainer');
  t.same((await get(h, vt, '/api/users/me/organizations')).json(), { organizations: [{ id: evil.id, name: 'Evil', role: 'maintainer' }] });
  t.same((await get(h, vt, '/api/users/me/invitations')).json(), { invitations: [] }, 'the invitation is used up');
  const res = await get(h, vt, '/api/provider-tokens/ionq/resolve');
  t.equal(res.statusCode, 200);
  t.same(res.json().credential, { api_key: 'attacker-key' });
  t.same(await post(h, vt, `/api/users/me/invitations/${inv.id}/accept`).then((r) => r.json()), invitationNotFound, 'accepting twice is 404');

  const audit = await h.db.selectFrom('audit_events').selectAll().where('organization_id', '=', evil.id).orderBy('id').execute();
  t.same(
    audit.filter((e) => e.action.startsWith('invitation.') || e.action.startsWith('membership.')).map((e) => [e.action, e.actor_user_id, e.target_id]),
    [
      ['invitation.create', mallory.id, victim.id],
      ['invitation.accept', victim.id, victim.id],
      ['membership.set', victim.id, victim.id],
    ],
  );
});

t.test("declined, cancelled, expired and someone else's invitations -> 404", async (t) => {
  const h = await harness(t);
  const [owner, maint, member, a, b, c, d] = await Promise.all([h.user(), h.user(), h.user(), h.user(), h.user(), h.user(), h.user()]);
  const org = await h.org('Lab', [
    [owner, 'owner'],
    [maint, 'maintainer'],
    [member, 'member'],
  ]);
  const [ot, mt, mbt, at, bt, ct, dt] = await Promise.all([
    h.apiToken(owner),
    h.apiToken(maint),
    h.apiToken(member),
    h.apiToken(a),
    h.apiToken(b),
    h.apiToken(c),
    h.apiToken(d),
  ]);
  const invite = async (u: { id: string }, role = 'member', token = ot) => (await putRole(h, token, org.id, u.id, role)).json().invitation;

  // Declined.
  const ia = await invite(a);
  t.equal((await post(h, at, `/api/users/me/invitations/${ia.id}/decline`)).statusCode, 204);
  t.same((await post(h, at, `/api/users/me/invitations/${ia.id}/accept`)).json(), invitationNotFound);
  t.equal((await post(h, at, `/api/users/me/invitations/${ia.id}/accept`)).statusCode, 404);
  t.equal((await post(h, at, `/api/users/me/invitations/${ia.id}/decline`)).statusCode, 404);

  // Cancelled by a maintainer; members cannot cancel (403) nor list (403), outsiders 404.
  const ib = await invite(b);
  t.equal((await del(h, mbt, `/api/organizations/${org.id}/invitations/${ib.id}`)).statusCode, 403);
  t.equal((await get(h, mbt, `/api/organizations/${org.id}/invitations`)).statusCode, 403);
  t.same((await get(h, dt, `/api/organizations/${org.id}/invitations`)).json(), { error: 'not_found', message: 'organization not found' });
  t.equal((await del(h, dt, `/api/organizations/${org.id}/invitations/${ib.id}`)).statusCode, 404);
  t.equal((await del(h, mt, `/api/organizations/${org.id}/invitations/${ib.id}`)).statusCode, 204);
  t.same((await post(h, bt, `/api/users/me/invitations/${ib.id}/accept`)).json(), invitationNotFound);
  t.equal((await del(h, mt, `/api/organizations/${org.id}/invitations/${ib.id}`)).statusCode, 404, 'cancelling twice is 404');

  // Someone else's: c cannot accept or decline d's invitation, and it stays usable for d.
  const id = await invite(d);
  t.same((await post(h, ct, `/api/users/me/invitations/${id.id}/accept`)).json(), invitationNotFound);
  t.equal((await post(h, ct, `/api/users/me/invitations/${id.id}/decline`)).statusCode, 404);
  t.equal(await roleOf(h, org.id, c.id), null);
  t.equal(
    (await h.inject({ method: 'POST', url: `/api/users/me/invitations/00000000-0000-4000-8000-000000000000/accept`, headers: bearer(ct) })).statusCode,
    404,
  );

  // Expired: 7 days later it can no longer be accepted, and is no longer listed.
  const ic = await invite(c);
  h.clock.advance(7 * 24 * 3600 + 1);
  t.same((await post(h, ct, `/api/users/me/invitations/${ic.id}/accept`)).json(), invitationNotFound);
  t.same((await get(h, ct, '/api/users/me/invitations')).json(), { invitations: [] });
  t.same((await get(h, ot, `/api/organizations/${org.id}/invitations`)).json(), { invitations: [] });
  t.equal(await roleOf(h, org.id, c.id), null);
  // Inviting again renews it.
  const renewed = await invite(c);
  t.equal((await post(h, ct, `/api/users/me/invitations/${renewed.id}/accept`)).statusCode, 200);
  t.equal(await roleOf(h, org.id, c.id), 'member');
  // d's invitation expired too.
  t.same((await post(h, dt, `/api/users/me/invitations/${id.id}/accept`)).json(), invitationNotFound);

  const actions = (await h.db.selectFrom('audit_events').select('action').where('organization_id', '=', org.id).orderBy('id').execute()).map((e) => e.action);
  t.same(actions, [
    'invitation.create',
    'invitation.decline',
    'invitation.create',
    'invitation.cancel',
    'invitation.create',
    'invitation.create',
    'invitation.create',
    'invitation.accept',
    'membership.set',
  ]);
});

t.test('invitations follow the role matrix of adding', async (t) => {
  const h = await harness(t);
  const [owner, maint, member, x, y, z, outsider] = await Promise.all([h.user(), h.user(), h.user(), h.user(), h.user(), h.user(), h.user()]);
  const org = await h.org('Lab', [
    [owner, 'owner'],
    [maint, 'maintainer'],
    [member, 'member'],
  ]);
  const [ot, mt, mbt, xt, outt] = await Promise.all([h.apiToken(owner), h.apiToken(maint), h.apiToken(member), h.apiToken(x), h.apiToken(outsider)]);

  const asOwner = await putRole(h, mt, org.id, x.id, 'owner');
  t.equal(asOwner.statusCode, 403);
  t.same(asOwner.json(), { error: 'forbidden', message: 'only owners can make someone an owner' });
  t.equal((await putRole(h, mt, org.id, x.id, 'maintainer')).statusCode, 202, 'maintainers invite maintainers');
  t.equal((await putRole(h, mt, org.id, y.id, 'member')).statusCode, 202, 'maintainers invite members');
  const byMember = await putRole(h, mbt, org.id, z.id, 'member');
  t.equal(byMember.statusCode, 403);
  t.same(byMember.json(), { error: 'forbidden', message: 'members cannot manage other members' });
  t.equal((await putRole(h, outt, org.id, z.id, 'member')).statusCode, 404, 'outsiders learn nothing');
  t.equal((await putRole(h, outt, org.id, outsider.id, 'member')).statusCode, 404, 'nobody invites themselves');
  t.same((await putRole(h, ot, org.id, '00000000-0000-4000-8000-000000000000', 'member')).json(), { error: 'not_found', message: 'user not found' });
  const ownerInvite = (await putRole(h, ot, org.id, z.id, 'owner')).json().invitation;
  t.equal(ownerInvite.role, 'owner', 'owners invite owners');
  const cancelOwnerInvite = await del(h, mt, `/api/organizations/${org.id}/invitations/${ownerInvite.id}`);
  t.equal(cancelOwnerInvite.statusCode, 403, 'maintainers cannot cancel an invitation to become owner');
  t.same(cancelOwnerInvite.json(), { error: 'forbidden', message: 'only owners can cancel an invitation to become owner' });
  t.equal((await get(h, mt, `/api/organizations/${org.id}/invitations`)).json().invitations.length, 3);
  // Existing members: a role change, as before (200).
  const promoted = await putRole(h, mt, org.id, member.id, 'maintainer');
  t.equal(promoted.statusCode, 200);
  t.same(promoted.json(), { organization_id: org.id, user_id: member.id, role: 'maintainer', previous_role: 'member' });
  // The invited maintainer accepts with the invited role; an invitation to another org id is 404 there.
  const other = await h.org('Other', [[owner, 'owner']]);
  const xi = (await get(h, xt, '/api/users/me/invitations')).json().invitations[0];
  t.equal((await del(h, ot, `/api/organizations/${other.id}/invitations/${xi.id}`)).statusCode, 404);
  t.same((await post(h, xt, `/api/users/me/invitations/${xi.id}/accept`)).json(), {
    organization_id: org.id,
    user_id: x.id,
    role: 'maintainer',
    previous_role: null,
  });
});

t.test('an operator adds directly (admin route), superseding a pending invitation', async (t) => {
  const h = await harness(t);
  const [owner, op, u] = await Promise.all([h.user(), h.user(), h.user()]);
  const org = await h.org('Lab', [[owner, 'owner']]);
  const [ot, opt, ut] = await Promise.all([h.apiToken(owner), h.apiToken(op, ['admin']), h.apiToken(u)]);
  const inv = (await putRole(h, ot, org.id, u.id, 'owner')).json().invitation;
  const added = await h.inject({ method: 'PUT', url: `/admin/organizations/${org.id}/members/${u.id}`, headers: bearer(opt), payload: { role: 'member' } });
  t.equal(added.statusCode, 201);
  t.equal(await roleOf(h, org.id, u.id), 'member');
  t.same((await post(h, ut, `/api/users/me/invitations/${inv.id}/accept`)).json(), invitationNotFound, 'the invitation is superseded');
  t.equal(await roleOf(h, org.id, u.id), 'member', 'and cannot raise the role afterwards');
});

t.test('tessera orgs invite sends an invitation; orgs add-member adds directly', async (t) => {
  const h = await harness(t);
  const [owner, u, v] = await Promise.all([h.user(), h.user(), h.user()]);
  const org = await h.org('Lab', [[owner, 'owner']]);
  const ut = await h.apiToken(u);

  cliOnHarness(t, h);
  const out: string[] = [];
  const err: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  const writeErr = process.stderr.write.bind(process.stderr);
  const capture = async (argv: string[]) => {
    out.length = 0;
    err.length = 0;
    (process.stdout as { write: unknown }).write = (c: string) => (out.push(String(c)), true);
    (process.stderr as { write: unknown }).write = (c: string) => (err.push(String(c)), true);
    try {
      return await main(argv);
    } finally {
      (process.stdout as { write: unknown }).write = write;
      (process.stderr as { write: unknown }).write = writeErr;
    }
  };

  t.equal(await capture(['orgs', 'invite', '--org', org.id, '--user', u.email, '--role', 'maintainer']), 0);
  const printed = JSON.parse(out.join('')).invitation;
  t.match(printed, { organization_id: org.id, user_id: u.id, role: 'maintainer' });
  t.equal(await roleOf(h, org.id, u.id), null, 'invited, not added');
  const mine = (await get(h, ut, '/api/users/me/invitations')).json().invitations;
  t.equal(mine.length, 1);
  t.equal(mine[0].id, printed.id);
  t.equal(mine[0].invited_by, null, 'an operator invited');
  t.equal((await post(h, ut, `/api/users/me/invitations/${printed.id}/accept`)).statusCode, 200);
  t.equal(await roleOf(h, org.id, u.id), 'maintainer');

  t.equal(await capture(['orgs', 'invite', '--org', org.id, '--user', u.id]), 1, 'a member already');
  t.match(err.join(''), /member of the organization already/);
  t.equal(await capture(['orgs', 'invite', '--org', '00000000-0000-4000-8000-000000000000', '--user', u.id]), 1);
  t.match(err.join(''), /organization not found/);

  t.equal(await capture(['orgs', 'add-member', '--org', org.id, '--user', v.email, '--role', 'member']), 0);
  t.same(JSON.parse(out.join('')), { organization_id: org.id, user_id: v.id, role: 'member' });
  t.equal(await roleOf(h, org.id, v.id), 'member', 'operators add directly');
  t.equal(await capture(['orgs', 'add-member', '--org', org.id, '--user', owner.id, '--role', 'member']), 1, 'the last owner stays');
  t.match(err.join(''), /last owner/);
  const tokenId = (await h.db.selectFrom('api_tokens').select('id').where('user_id', '=', u.id).executeTakeFirstOrThrow()).id;
  const audit = await h.db.selectFrom('audit_events').select(['action', 'actor_credential']).where('organization_id', '=', org.id).orderBy('id').execute();
  t.same(
    audit.map((e) => [e.action, e.actor_credential]),
    [
      ['invitation.create', 'cli'],
      ['invitation.accept', `api_token:${tokenId}`],
      ['membership.set', `api_token:${tokenId}`],
      ['membership.set', 'cli'],
    ],
  );
});
