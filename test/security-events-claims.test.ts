// A verifier counts a Security Event Token only when every claim is right: signed by a key of the
// issuer's JWKS, `typ: secevent+jwt`, `iss` the configured issuer, `aud` this receiver, `iat` and
// `jti` present. A SET that fails is not applied and the stream does not move past it (the
// verifier stays down, never open). Fed by a small SSE issuer that signs with a key it publishes,
// and by a real Tessera stream addressed to another receiver.
import { createHmac, KeyObject, sign } from 'node:crypto';
import t from 'tap';
import { generateKeyPair } from 'jose';
import { createVerifier } from '../src/client/index.js';
import { eventually, outcome, twoInstances } from './support/events-helper.js';
import { accessToken, fakeIssuer, set, type Key } from './support/fake-set-issuer.js';
import { basic, createSdkKey, getToken, oauthPost } from './support/oauth-helper.js';

const b64u = (v: string | Buffer) => Buffer.from(v).toString('base64url');
const segments = (jws: string) => jws.split('.') as [string, string, string];

/** A compact JWS over exactly these header and payload bytes, signed ES256 by `key` (no library checks in the way). */
function rawEs256(key: Key, header: string, payload: string): string {
  const input = `${b64u(header)}.${b64u(payload)}`;
  return `${input}.${b64u(sign('sha256', Buffer.from(input), { key: KeyObject.from(key as Parameters<typeof KeyObject.from>[0]), dsaEncoding: 'ieee-p1363' }))}`;
}

/** The payload of a SET, as JSON text. */
const payloadOf = (jws: string) => Buffer.from(segments(jws)[1], 'base64url').toString('utf8');

/** Hostile encodings of a correctly signed SET (the key is the issuer's own; `jwk` its published JWK). */
const mangles: { name: string; mangle: (set: string, key: Key, jwk: Record<string, unknown>) => string }[] = [
  {
    name: 'a signature made over other bytes',
    mangle: (set) => `${segments(set)[0]}.${b64u(payloadOf(set).replace('"jti-b"', '"jti-x"'))}.${segments(set)[2]}`,
  },
  { name: 'no signature', mangle: (set) => `${segments(set)[0]}.${segments(set)[1]}.` },
  { name: 'alg none', mangle: (set) => `${b64u(JSON.stringify({ alg: 'none', kid: 'k1', typ: 'secevent+jwt' }))}.${segments(set)[1]}.` },
  {
    name: 'HS256 keyed with the published public key',
    mangle: (set, _key, jwk) => {
      const input = `${b64u(JSON.stringify({ alg: 'HS256', kid: 'k1', typ: 'secevent+jwt' }))}.${segments(set)[1]}`;
      return `${input}.${b64u(createHmac('sha256', JSON.stringify(jwk)).update(input).digest())}`;
    },
  },
  {
    name: 'an EdDSA header over the ES256 key',
    mangle: (set, key) => rawEs256(key, JSON.stringify({ alg: 'EdDSA', kid: 'k1', typ: 'secevent+jwt' }), payloadOf(set)),
  },
  {
    name: 'a critical header parameter',
    mangle: (set, key) => rawEs256(key, JSON.stringify({ alg: 'ES256', kid: 'k1', typ: 'secevent+jwt', crit: ['x-tessera'], 'x-tessera': 1 }), payloadOf(set)),
  },
  { name: 'a payload that is not JSON', mangle: (_set, key) => rawEs256(key, JSON.stringify({ alg: 'ES256', kid: 'k1', typ: 'secevent+jwt' }), '{"iss":') },
  { name: 'a payload that is a JSON array', mangle: (_set, key) => rawEs256(key, JSON.stringify({ alg: 'ES256', kid: 'k1', typ: 'secevent+jwt' }), '[1,2]') },
  { name: 'a header that is not JSON', mangle: (set, key) => rawEs256(key, '{"alg":"ES256",', payloadOf(set)) },
  { name: 'a fourth segment', mangle: (set) => `${set}.${segments(set)[2]}` },
  { name: 'characters outside base64url', mangle: (set) => `${segments(set)[0]}.${segments(set)[1]}+/.${segments(set)[2]}` },
  {
    name: 'an aud list with a non-string member',
    mangle: (set, key) =>
      rawEs256(key, JSON.stringify({ alg: 'ES256', kid: 'k1', typ: 'secevent+jwt' }), payloadOf(set).replace('"aud":"gw-1"', '"aud":["gw-1",7]')),
  },
];

const cases: { name: string; aud?: string; typ?: string; claims?: Record<string, unknown>; otherKey?: boolean; mangle?: (typeof mangles)[number]['mangle'] }[] =
  [
    ...mangles,
    { name: 'a wrong iss', claims: { iss: 'https://elsewhere.invalid' } },
    { name: 'a wrong aud', aud: 'gw-2' },
    { name: 'an aud list without this receiver', claims: { aud: ['gw-2', 'gw-3'] } },
    { name: 'typ JWT', typ: 'JWT' },
    { name: 'no iat', claims: { iat: undefined } },
    { name: 'no jti', claims: { jti: undefined } },
    { name: 'no events', claims: { events: undefined } },
    { name: 'a key the JWKS does not hold', otherKey: true },
    { name: 'an exp in the past', claims: { exp: Math.floor(Date.now() / 1000) - 3600 } },
    { name: 'an nbf in the future', claims: { nbf: Math.floor(Date.now() / 1000) + 3600 } },
    { name: 'an iat that is not a number', claims: { iat: '1700000000' } },
  ];

for (const c of [...cases, { name: 'every claim right (control)' }]) {
  const bad = c.name !== 'every claim right (control)';
  t.test(`a SET with ${c.name} ${bad ? 'is not applied and holds the stream down' : 'is applied'}`, async (t) => {
    const other = (await generateKeyPair('ES256')).privateKey;
    let first = '';
    let second = '';
    const issuer = await fakeIssuer(t, (last) => {
      const head = 'event: receiver\ndata: {"aud":"gw-1"}\n\n';
      const tail = 'event: live\ndata: {"id":2}\n\n';
      return last === null ? `${head}id: 1\ndata: ${first}\n\nid: 2\ndata: ${second}\n\n${tail}` : `${head}id: 2\ndata: ${second}\n\n${tail}`;
    });
    const { url, key } = issuer;
    first = await set({ url, key, id: '1', revokes: 'jti-a' });
    second = await set({ url, key: c.otherKey ? other : key, id: '2', revokes: 'jti-b', aud: c.aud, typ: c.typ, claims: c.claims });
    if (c.mangle) second = c.mangle(second, key, issuer.jwk);
    const v = createVerifier({
      issuer: url,
      audience: url,
      opaqueTokens: false,
      jwksCooldownMs: 0,
      revocations: 'stream',
      events: { auth: async () => 'an-opaque-receiver-token', graceMs: 60_000 },
    });
    t.teardown(() => v.close());
    const [a, b, unaffected] = await Promise.all(['jti-a', 'jti-b', 'jti-c'].map((j) => accessToken(url, key, j)));
    t.ok(await eventually(async () => (await outcome(v, a!)) === 'revoked'), 'the good SET before it counts');
    if (bad) {
      t.ok(await eventually(async () => issuer.lastIds.includes('1')), 'the verifier reconnected resuming after the good SET, not after the refused one');
      t.equal(await outcome(v, b!), 'unavailable', 'the token the refused SET names is not counted as revoked');
      t.equal(await outcome(v, unaffected!), 'unavailable', 'and the verifier fails closed rather than trusting the stream');
      t.equal(v.revocationStream!.isLive, false);
      t.equal(v.revocationStream!.lastEventId, '1');
    } else {
      t.ok(await eventually(async () => (await outcome(v, b!)) === 'revoked'), 'the SET counts');
      t.equal(await outcome(v, unaffected!), 'ok');
      t.same(issuer.lastIds, [null], 'one connection');
    }
  });
}

t.test('a pinned audience refuses a stream addressed to another receiver', async (t) => {
  let sets = '';
  const issuer = await fakeIssuer(t, () => `event: receiver\ndata: {"aud":"gw-other"}\n\n${sets}event: live\ndata: {"id":1}\n\n`);
  sets = `id: 1\ndata: ${await set({ url: issuer.url, key: issuer.key, id: '1', revokes: 'jti-a', aud: 'gw-other' })}\n\n`;
  const v = createVerifier({
    issuer: issuer.url,
    audience: issuer.url,
    opaqueTokens: false,
    revocations: 'stream',
    events: { auth: async () => 'an-opaque-receiver-token', audience: 'gw-1', graceMs: 60_000 },
  });
  t.teardown(() => v.close());
  t.ok(await eventually(async () => issuer.lastIds.length >= 2), 'the verifier drops the stream and tries again');
  t.equal(await outcome(v, await accessToken(issuer.url, issuer.key, 'jti-a')), 'unavailable', 'the SET for another receiver is not applied; fails closed');
  t.equal(v.revocationStream!.lastEventId, null);
});

t.test('a real Tessera stream: SETs are addressed to the SDK key that subscribes; pinned to another, none counts', async (t) => {
  const { h, issuer, urlA } = await twoInstances(t);
  const receiverKey = await createSdkKey(h, await h.user(), { name: 'gateway', scopes: ['events:read'] }, ['api', 'events:read']);
  const common = { issuer, audience: issuer, opaqueTokens: false };
  const right = createVerifier({ ...common, revocations: 'stream', events: { auth: () => getToken(h, receiverKey), url: `${urlA}/events/stream` } });
  const wrong = createVerifier({
    ...common,
    revocations: 'stream',
    events: { auth: () => getToken(h, receiverKey), url: `${urlA}/events/stream`, audience: 'some-other-client', graceMs: 60_000 },
  });
  t.teardown(() => {
    right.close();
    wrong.close();
  });
  await right.revocationStream!.ready();
  const key = await createSdkKey(h, await h.user());
  const jwt = await getToken(h, key);
  t.equal((await oauthPost(h, '/oauth/revoke', { token: jwt }, { authorization: basic(key.client_id, key.client_secret) })).statusCode, 200);
  t.ok(await eventually(async () => (await outcome(right, jwt)) === 'revoked'), 'the verifier whose client_id is the aud applies it');
  t.equal(await outcome(wrong, jwt), 'unavailable', 'the one pinned to another audience never applies it and fails closed');
  t.equal(wrong.revocationStream!.isLive, false);
});
