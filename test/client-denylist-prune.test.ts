// A locally-verifying gateway's denylist keeps a revoked jti until its token could no longer be
// accepted anyway (its exp plus a minute of clock skew, at most the longest token lifetime), and
// then forgets it without scanning every record still alive. Fed by a small SSE issuer; the
// verifier's clock is moved by hand.
import t from 'tap';
import { createVerifier } from '../src/client/index.js';
import { eventually, outcome } from './support/events-helper.js';
import { accessToken, fakeIssuer, set } from './support/fake-set-issuer.js';

t.test('revoked jtis are refused until their exp, kept no longer, and never shortened by a later event', async (t) => {
  const start = Date.now();
  const s = Math.floor(start / 1000);
  let offsetMs = 0;
  let body = '';
  const issuer = await fakeIssuer(t, () => body);
  const { url, key } = issuer;
  const sets = [
    await set({ url, key, id: '1', revokes: 'jti-a', exp: s + 120 }),
    await set({ url, key, id: '2', revokes: 'jti-b', exp: s + 3600 }),
    // No exp: kept for the longest token lifetime.
    await set({ url, key, id: '3', revokes: 'jti-c', exp: null }),
    // Revoked twice, the second time with an earlier exp: the longer record holds.
    await set({ url, key, id: '4', revokes: 'jti-d', exp: s + 3600 }),
    await set({ url, key, id: '5', revokes: 'jti-d', exp: s + 60 }),
    // An exp beyond any token's lifetime is kept only for that lifetime.
    await set({ url, key, id: '6', revokes: 'jti-e', exp: s + 10 * 86_400 }),
  ];
  body = `event: receiver\ndata: {"aud":"gw-1"}\n\n${sets.map((x, i) => `id: ${i + 1}\ndata: ${x}\n\n`).join('')}event: live\ndata: {"id":6}\n\n`;
  const v = createVerifier({
    issuer: url,
    audience: url,
    opaqueTokens: false,
    now: () => Date.now() + offsetMs,
    revocations: 'stream',
    events: { auth: async () => 'an-opaque-receiver-token', maxTokenLifetimeSeconds: 5000, graceMs: 86_400_000 },
  });
  t.teardown(() => v.close());
  // Access tokens living long enough to be checked at every clock position below.
  const token = (jti: string) => accessToken(url, key, jti, '3h');
  const [a, b, c, d, e, other] = await Promise.all(['jti-a', 'jti-b', 'jti-c', 'jti-d', 'jti-e', 'jti-z'].map(token));
  await v.revocationStream!.ready();
  const stream = v.revocationStream!;
  const at = async (seconds: number) => {
    offsetMs = seconds * 1000;
    // Each verification may prune; the first one after the move does.
    return Promise.all([a, b, c, d, e, other].map((x) => outcome(v, x!)));
  };
  t.same(await at(0), ['revoked', 'revoked', 'revoked', 'revoked', 'revoked', 'ok']);
  t.equal(stream.denylistSize, 5);

  t.same(await at(100), ['revoked', 'revoked', 'revoked', 'revoked', 'revoked', 'ok'], 'within a minute past exp: still refused');
  t.equal(stream.denylistSize, 5);

  // jti-a: exp + 60 s passed (slots are 10 s wide). Its token would be refused on exp anyway.
  await at(200);
  t.ok(await eventually(async () => (await at(200), stream.denylistSize === 4)), 'jti-a forgotten');
  t.same(await at(200), ['ok', 'revoked', 'revoked', 'revoked', 'revoked', 'ok'], 'jti-d keeps the longer of its two records');

  t.ok(await eventually(async () => (await at(3700), stream.denylistSize === 2)), 'jti-b and jti-d forgotten after their exp');
  t.same(await at(3700), ['ok', 'ok', 'revoked', 'ok', 'revoked', 'ok'], 'no exp, or one beyond any lifetime: kept for the longest lifetime');

  t.ok(await eventually(async () => (await at(5100), stream.denylistSize === 0)), 'every record gone after the longest token lifetime');
  t.equal(stream.isLive, true);
});
