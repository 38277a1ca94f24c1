// A verifier counts a Security Event Token only when every claim is right: signed by a key of the
// issuer's JWKS, `typ: secevent+jwt`, `iss` the configured issuer, `aud` this receiver, `iat` and
// `jti` present. A SET that fails is not applied and the stream does not move past it (the
// verifier stays down, never open). Fed by a small SSE issuer that signs with a key it publishes,
// and by a real Tessera stream addressed to another receiver.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { exportJWK, generateKeyPair, SignJWT, type JWTPayload } from 'jose';
import { createVerifier } from '../src/client/index.js';
import { eventually, outcome, twoInstances } from './support/events-helper.js';
import { basic, createSdkKey, getToken, oauthPost } from './support/oauth-helper.js';

const REVOKED = 'urn:tessera:secevent:access-token-revoked';

type Key = Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];

/** An issuer that publishes one ES256 key and serves `events(lastEventId)` as its security events stream. */
async function fakeIssuer(t: Test, events: (lastEventId: string | null) => string) {
  const published = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(published.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
  const lastIds: (string | null)[] = [];
  const server = http.createServer((req, res) => {
    if (req.url === '/.well-known/jwks.json') {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ keys: [jwk] }));
    }
    if (req.url === '/events/stream') {
      const last = (req.headers['last-event-id'] as string | undefined) ?? null;
      lastIds.push(last);
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      return res.write(events(last));
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, key: published.privateKey, lastIds };
}

/** An access token of the issuer, as Tessera signs them. */
function accessToken(url: string, key: Key, jti: string) {
  return new SignJWT({ client_id: 'c1', scope: 'api' })
    .setProtectedHeader({ alg: 'ES256', kid: 'k1', typ: 'at+jwt' })
    .setIssuer(url)
    .setAudience(url)
    .setSubject('u1')
    .setJti(jti)
    .setIssuedAt()
    .setExpirationTime('10m')
    .sign(key);
}

/** A SET revoking `revokes`; `claims` override (undefined deletes) the standard ones. */
function set(o: { url: string; key: Key; id: string; revokes: string; aud?: string; typ?: string; claims?: Record<string, unknown> }) {
  const payload: JWTPayload = {
    iss: o.url,
    aud: o.aud ?? 'gw-1',
    iat: Math.floor(Date.now() / 1000),
    jti: o.id,
    sub_id: { format: 'jwt_id', iss: o.url, jti: o.revokes },
    events: { [REVOKED]: { jti: o.revokes, client_id: 'c1', exp: Math.floor(Date.now() / 1000) + 600 } },
  };
  for (const [k, v] of Object.entries(o.claims ?? {})) {
    if (v === undefined) delete payload[k];
    else payload[k] = v;
  }
  return new SignJWT(payload).setProtectedHeader({ alg: 'ES256', kid: 'k1', typ: o.typ ?? 'secevent+jwt' }).sign(o.key);
}

const cases: { name: string; aud?: string; typ?: string; claims?: Record<string, unknown>; otherKey?: boolean }[] = [
  { name: 'a wrong iss', claims: { iss: 'https://elsewhere.invalid' } },
  { name: 'a wrong aud', aud: 'gw-2' },
  { name: 'an aud list without this receiver', claims: { aud: ['gw-2', 'gw-3'] } },
  { name: 'typ JWT', typ: 'JWT' },
  { name: 'no iat', claims: { iat: undefined } },
  { name: 'no jti', claims: { jti: undefined } },
  { name: 'no events', claims: { events: undefined } },
  { name: 'a key the JWKS does not hold', otherKey: true },
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
