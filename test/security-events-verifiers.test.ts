// Two Tessera instances on one database and two locally-verifying TypeScript verifiers, each
// subscribed to the security events of a different instance: every kind of revocation made on one
// instance is refused by both verifiers; unaffected tokens stay accepted; a plain-fetch RFC 8936
// poll receiver sees the same events.
import t from 'tap';
import { createVerifier } from '../src/client/index.js';
import { bearer } from './support/helper.js';
import { eventually, outcome, twoInstances } from './support/events-helper.js';
import { basic, createSdkKey, getToken, headerOf, oauthPost } from './support/oauth-helper.js';

t.test('revocations on instance A reach verifiers subscribed to A and to B; unaffected tokens stay accepted', async (t) => {
  const { h, issuer, urlA, urlB } = await twoInstances(t);
  const admin = await h.apiToken(await h.user(), ['admin']);

  // Verifier 1 subscribes to A with an SDK key (scope events:read); verifier 2 to B with an operator's API token.
  const receiverKey = await createSdkKey(h, await h.user(), { name: 'gateway', scopes: ['events:read'] }, ['api', 'events:read']);
  // A new signing key may be published a moment after the revocation event: refetch the JWKS on an unknown kid within a second.
  const common = { issuer, audience: issuer, jwksCooldownMs: 1000, remote: { cacheTtlMs: 600_000 } };
  const v1 = createVerifier({ ...common, revocations: 'stream', events: { auth: () => getToken(h, receiverKey), url: `${urlA}/events/stream` } });
  const v2 = createVerifier({
    ...common,
    jwksUri: `${urlB}/.well-known/jwks.json`,
    remote: { ...common.remote, method: 'gateway' },
    revocations: 'stream',
    events: { auth: async () => admin, url: `${urlB}/events/stream` },
  });
  t.teardown(() => {
    v1.close();
    v2.close();
  });
  await Promise.all([v1.revocationStream!.ready(), v2.revocationStream!.ready()]);
  const both = async (token: string) => [await outcome(v1, token), await outcome(v2, token)];
  const refusedByBoth = (token: string) => eventually(async () => (await both(token)).every((o) => o === 'revoked'));

  const user = async () => {
    const u = await h.user();
    const apiToken = await h.apiToken(u, ['api']);
    const key = await createSdkKey(h, u);
    return { u, apiToken, key };
  };
  const control = await user();
  const controls = [await getToken(h, control.key), await getToken(h, control.key)];
  for (const c of controls) t.same(await both(c), ['ok', 'ok'], 'a control token is accepted');

  // 1. A token revoked on A.
  const r = await user();
  const revokedJwt = await getToken(h, r.key);
  const sibling = await getToken(h, r.key);
  t.same(await both(revokedJwt), ['ok', 'ok']);
  t.equal((await oauthPost(h, '/oauth/revoke', { token: revokedJwt }, { authorization: basic(r.key.client_id, r.key.client_secret) })).statusCode, 200);
  t.ok(await refusedByBoth(revokedJwt), 'a revoked token is refused by both verifiers');
  t.same(await both(sibling), ['ok', 'ok'], 'its sibling is not');

  // 2. An SDK key disabled: its tokens go; enabled again, its new tokens work.
  const d = await user();
  const dJwt = await getToken(h, d.key);
  t.equal(
    (await h.inject({ method: 'PATCH', url: `/api/sdk-keys/${d.key.client_id}`, headers: bearer(d.apiToken), payload: { status: 'disabled' } })).statusCode,
    200,
  );
  t.ok(await refusedByBoth(dJwt), "a disabled key's token is refused by both");
  t.equal(
    (await h.inject({ method: 'PATCH', url: `/api/sdk-keys/${d.key.client_id}`, headers: bearer(d.apiToken), payload: { status: 'enabled' } })).statusCode,
    200,
  );
  t.same(await both(await getToken(h, d.key)), ['ok', 'ok'], 'a token issued after re-enabling is accepted');

  // 3. A user suspended: their keys' tokens go, and the remote answers about their session.
  const s = await user();
  const sJwt = await getToken(h, s.key);
  const sSession = (await h.inject({ method: 'POST', url: '/api/users/loginWithToken', payload: { apiToken: s.apiToken } })).json().id as string;
  t.same(await both(sSession), ['ok', 'ok'], 'a session token is accepted (checked remotely, answer cached)');
  t.equal((await h.inject({ method: 'POST', url: `/admin/users/${s.u.id}/suspend`, headers: bearer(admin) })).statusCode, 200);
  t.ok(await refusedByBoth(sJwt), "a suspended user's token is refused by both");
  t.ok(await refusedByBoth(sSession), "a suspended user's session is refused by both (cached answer dropped)");

  // 4. A session ended (logout): the cached remote answer is dropped at once.
  const l = await user();
  const session = (await h.inject({ method: 'POST', url: '/api/users/loginWithToken', payload: { apiToken: l.apiToken } })).json().id as string;
  const otherSession = (await h.inject({ method: 'POST', url: '/api/users/loginWithToken', payload: { apiToken: control.apiToken } })).json().id as string;
  t.same(await both(session), ['ok', 'ok']);
  t.same(await both(otherSession), ['ok', 'ok']);
  t.equal((await h.inject({ method: 'POST', url: '/api/users/logout', headers: { 'x-access-token': session } })).statusCode, 204);
  t.ok(await refusedByBoth(session), 'an ended session is refused by both');

  // 5. An SDK key deleted.
  const x = await user();
  const xJwt = await getToken(h, x.key);
  t.equal((await h.inject({ method: 'DELETE', url: `/api/sdk-keys/${x.key.client_id}`, headers: bearer(x.apiToken) })).statusCode, 204);
  t.ok(await refusedByBoth(xJwt), "a deleted key's token is refused by both");

  // Nothing unaffected was refused.
  for (const c of [...controls, sibling]) t.same(await both(c), ['ok', 'ok'], 'an unaffected token is still accepted');
  t.same(await both(otherSession), ['ok', 'ok'], 'an unaffected session is still accepted');

  // 6. The signing key revoked: every token it signed goes (controls included); tokens of the new key work.
  const oldKid = headerOf(controls[0]!).kid as string;
  t.equal((await h.inject({ method: 'POST', url: `/admin/keys/${oldKid}/revoke`, headers: bearer(admin) })).statusCode, 200);
  // Refused as revoked (the kid is on the denylist) or as signed by an unknown key (the JWKS was fetched again since).
  t.ok(
    await eventually(async () => (await both(controls[0]!)).every((o) => o === 'revoked' || o === 'unknown_kid')),
    'a token of the revoked signing key is refused by both',
  );
  let fresh = '';
  t.ok(
    await eventually(async () => {
      fresh = await getToken(h, control.key);
      return headerOf(fresh).kid !== oldKid;
    }),
  );
  t.ok(await eventually(async () => (await both(fresh)).every((o) => o === 'ok')), 'a token of the new key is accepted by both');

  // A poll receiver written with plain fetch (RFC 8936) gets the same events from instance B, and acknowledges them.
  const streamed = v1.revocationStream!.lastEventId;
  const seen = new Set<string>();
  let ack: string[] = [];
  for (;;) {
    const res = await fetch(`${urlB}/events/poll`, {
      method: 'POST',
      headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
      body: JSON.stringify({ ack, maxEvents: 3, returnImmediately: true }),
    });
    t.equal(res.status, 200);
    const body = (await res.json()) as { sets: Record<string, string>; moreAvailable: boolean };
    ack = Object.keys(body.sets);
    for (const j of ack) seen.add(j);
    if (ack.length === 0) break;
  }
  t.ok(seen.size >= 8, `the poll receiver got every event (${seen.size})`);
  t.ok(seen.has(String(streamed)), 'including the last one streamed');
  const after = await fetch(`${urlB}/events/poll`, {
    method: 'POST',
    headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
    body: JSON.stringify({ returnImmediately: true }),
  });
  t.same(((await after.json()) as { sets: object }).sets, {}, 'once acknowledged, nothing is delivered again');
  v1.close();
  v2.close();
});
