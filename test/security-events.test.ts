// Security events for verifiers: every kind of revocation, whatever path makes it (API, SQL as the
// CLI would), becomes a Security Event Token that verifies with the JWKS; RFC 8936 poll delivery
// with acknowledgements; hostile input answered 4xx.
import t from 'tap';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet, type JWTPayload } from 'jose';
import { sql } from 'kysely';
import { bearer, harness, type Harness } from './support/helper.js';
import { basic, createSdkKey, getToken, oauthPost, headerOf } from './support/oauth-helper.js';

const CAEP = 'https://schemas.openid.net/secevent/caep/event-type/';

async function jwks(h: Harness) {
  const res = await h.inject({ method: 'GET', url: '/.well-known/jwks.json' });
  return createLocalJWKSet(res.json() as JSONWebKeySet);
}

/** Polls (acknowledging `ack`) and returns the verified SET payloads, by jti. */
async function poll(
  h: Harness,
  token: string,
  body: Record<string, unknown> = {},
): Promise<{ sets: Map<string, JWTPayload>; more: boolean; raw: Record<string, string> }> {
  const res = await h.inject({ method: 'POST', url: '/events/poll', headers: bearer(token), payload: { returnImmediately: true, ...body } });
  if (res.statusCode !== 200) throw new Error(`poll: ${res.statusCode} ${res.body}`);
  const out = res.json() as { sets: Record<string, string>; moreAvailable: boolean };
  const keys = await jwks(h);
  const sets = new Map<string, JWTPayload>();
  for (const [jti, set] of Object.entries(out.sets)) {
    t.equal(headerOf(set).typ, 'secevent+jwt');
    const { payload } = await jwtVerify(set, keys, { issuer: h.config.issuer, typ: 'secevent+jwt' });
    t.equal(payload.jti, jti);
    sets.set(jti, payload);
  }
  return { sets, more: out.moreAvailable, raw: out.sets };
}

/** Polls and acknowledges until no SET is left; returns every payload seen. */
async function drain(h: Harness, token: string): Promise<JWTPayload[]> {
  const all: JWTPayload[] = [];
  let ack: string[] = [];
  for (;;) {
    const r = await poll(h, token, { ack, maxEvents: 50 });
    all.push(...r.sets.values());
    ack = [...r.sets.keys()];
    if (ack.length === 0) return all;
  }
}

const eventTypes = (ps: JWTPayload[]) => ps.map((p) => Object.keys(p.events as object)[0]!);

t.test('every kind of revocation becomes a verifiable SET; poll acknowledges per receiver', async (t) => {
  const h = await harness(t);
  const operator = await h.user();
  const admin = await h.apiToken(operator, ['admin']);
  const receiverUser = await h.user();
  const receiverToken = await h.apiToken(receiverUser, ['events:read']);

  // Nothing yet (the bootstrap signing key is not a revocation).
  t.same(eventTypes(await drain(h, receiverToken)), []);

  const u = await h.user();
  const apiToken = await h.apiToken(u, ['api']);
  const key = await createSdkKey(h, u);
  const jwt = await getToken(h, key);
  const jti = JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString()).jti as string;

  // Token revoked (RFC 7009).
  t.equal((await oauthPost(h, '/oauth/revoke', { token: jwt }, { authorization: basic(key.client_id, key.client_secret) })).statusCode, 200);
  // Session ended (logout).
  const login = await h.inject({ method: 'POST', url: '/api/users/loginWithToken', payload: { apiToken } });
  const session = login.json().id as string;
  t.equal((await h.inject({ method: 'POST', url: '/api/users/logout', headers: { 'x-access-token': session } })).statusCode, 204);
  // SDK key disabled, then its tokens cut off by plain SQL (as a CLI or operator script would), then deleted.
  t.equal(
    (await h.inject({ method: 'PATCH', url: `/api/sdk-keys/${key.client_id}`, headers: bearer(apiToken), payload: { status: 'disabled' } })).statusCode,
    200,
  );
  await sql`update sdk_keys set tokens_valid_after = tokens_valid_after + interval '1 second' where client_id = ${key.client_id}`.execute(h.db);
  t.equal((await h.inject({ method: 'DELETE', url: `/api/sdk-keys/${key.client_id}`, headers: bearer(apiToken) })).statusCode, 204);
  // Signing key revoked.
  const kid = (await h.inject({ method: 'GET', url: '/admin/keys', headers: bearer(admin) })).json().keys.find((k: { state: string }) => k.state === 'active')
    .kid as string;
  t.equal((await h.inject({ method: 'POST', url: `/admin/keys/${kid}/revoke`, headers: bearer(admin) })).statusCode, 200);
  // API token revoked (CAEP credential-change); then the user suspended.
  const other = await h.apiToken(u, ['api']);
  const tokenId = (await h.inject({ method: 'GET', url: '/api/access-tokens', headers: bearer(other) })).json().access_tokens[0].id as string;
  t.equal((await h.inject({ method: 'DELETE', url: `/api/access-tokens/${tokenId}`, headers: bearer(other) })).statusCode, 204);
  t.equal((await h.inject({ method: 'POST', url: `/admin/users/${u.id}/suspend`, headers: bearer(admin) })).statusCode, 200);

  const first = await poll(h, receiverToken, { maxEvents: 1000 });
  const got = [...first.sets.values()];
  const types = new Set(eventTypes(got));
  for (const ty of [
    'urn:tessera:secevent:access-token-revoked',
    `${CAEP}session-revoked`,
    'urn:tessera:secevent:sdk-key-disabled',
    'urn:tessera:secevent:sdk-key-tokens-cut-off',
    'urn:tessera:secevent:sdk-key-deleted',
    'urn:tessera:secevent:signing-key-revoked',
    `${CAEP}credential-change`,
    'urn:tessera:secevent:user-suspended',
  ]) {
    t.ok(types.has(ty), `a SET of type ${ty}`);
  }
  for (const p of got) t.equal(p.aud, receiverUser.id, 'aud: the receiver');
  const revoked = got.find((p) => 'urn:tessera:secevent:access-token-revoked' in (p.events as object))!;
  t.match((revoked.events as Record<string, unknown>)['urn:tessera:secevent:access-token-revoked'], { jti, client_id: key.client_id, exp: Number });
  const keyRevoked = got.find((p) => 'urn:tessera:secevent:signing-key-revoked' in (p.events as object))!;
  t.same((keyRevoked.events as Record<string, unknown>)['urn:tessera:secevent:signing-key-revoked'], { kid });
  const ids = got.map((p) => Number(p.jti));
  t.same(
    ids,
    [...ids].sort((a, b) => a - b),
    'oldest first',
  );

  // Unacknowledged SETs come again; acknowledged ones never do.
  const again = await poll(h, receiverToken, { maxEvents: 2 });
  t.same([...again.sets.keys()], ids.slice(0, 2).map(String), 'redelivered until acknowledged');
  t.equal(again.more, true);
  const acked = await poll(h, receiverToken, { ack: ids.slice(0, 3).map(String), maxEvents: 1000 });
  t.same([...acked.sets.keys()], ids.slice(3).map(String), 'acknowledged SETs are gone');
  t.equal(acked.more, false);
  // Acknowledging out of order: a hole stays delivered.
  const rest = ids.slice(3);
  const later = await poll(h, receiverToken, { ack: rest.slice(1).map(String), maxEvents: 1000 });
  t.same([...later.sets.keys()], [String(rest[0])]);
  t.same([...(await poll(h, receiverToken, { ack: [String(rest[0])] })).sets.keys()], []);

  // Another receiver has its own acknowledgements and starts with every kept event.
  const key2 = await createSdkKey(h, await h.user(), { name: 'receiver', scopes: ['events:read'] }, ['api', 'events:read']);
  const clientJwt = await getToken(h, key2);
  const theirs = await poll(h, clientJwt, { maxEvents: 1000 });
  t.same([...theirs.sets.keys()], ids.map(String), 'an SDK-key receiver gets them all');
  for (const p of theirs.sets.values()) t.equal(p.aud, key2.client_id, 'aud: the SDK key');
});

t.test('poll and stream refuse the unauthorised and hostile input with 4xx, never 500', async (t) => {
  const h = await harness(t);
  const u = await h.user();
  const plain = await h.apiToken(u, ['api']);
  const tok = await h.apiToken(u, ['events:read']);
  t.equal((await h.inject({ method: 'POST', url: '/events/poll', payload: {} })).statusCode, 401);
  t.equal((await h.inject({ method: 'POST', url: '/events/poll', headers: bearer(plain), payload: {} })).statusCode, 403);
  t.equal((await h.inject({ method: 'GET', url: '/events/stream', headers: bearer(plain) })).statusCode, 403);
  t.equal((await h.inject({ method: 'GET', url: '/events/stream' })).statusCode, 401);
  for (const payload of [
    { maxEvents: 1e9 },
    { maxEvents: -1 },
    { maxEvents: 'ten' },
    { ack: 'x' },
    { ack: ['not-a-jti'] },
    { ack: ['99999999999999999999999'] },
    { ack: [1] },
    { ack: Array.from({ length: 1001 }, (_, i) => String(i)) },
    { setErrs: { x: { err: 'invalid_key' } } },
    { setErrs: { '1': {} } },
    { returnImmediately: 'yes' },
    { surprise: true },
  ]) {
    const res = await h.inject({ method: 'POST', url: '/events/poll', headers: bearer(tok), payload });
    t.equal(res.statusCode, 400, `400 for ${JSON.stringify(payload).slice(0, 60)}`);
    t.type(res.json().message, 'string');
  }
  // Acknowledging ids that do not exist (yet) is harmless.
  t.equal(
    (await h.inject({ method: 'POST', url: '/events/poll', headers: bearer(tok), payload: { ack: ['123456'], returnImmediately: true } })).statusCode,
    200,
  );
  for (const id of ['abc', '-1', '1e3', '9'.repeat(40), '1 2']) {
    const res = await h.inject({ method: 'GET', url: '/events/stream', headers: { ...bearer(tok), 'last-event-id': id } });
    t.equal(res.statusCode, 400, `stream: 400 for Last-Event-ID ${id.slice(0, 12)}`);
  }
});
