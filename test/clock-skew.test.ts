// Clock skew of +-5 minutes on one instance. What Tessera does:
// - With the default tolerance (30 s) it fails closed: a skewed instance's tokens are refused by
//   the others when their iat lies in the future beyond the tolerance, and the skewed instance
//   reports itself not ready (/readyz `clock` check against Postgres's clock) so a balancer takes
//   it out of rotation before it mints tokens the others refuse.
// - Operators who must live with a skew set TESSERA_CLOCK_TOLERANCE: at 6 minutes, tokens minted
//   on either side verify on the other, the instance is ready, and expiry is still enforced.
// Sessions and logouts do not depend on the instance clock agreeing (a logout is a database fact).
import t from 'tap';
import type { FastifyInstance } from 'fastify';
import { bearer, harness, TestClock } from './support/helper.js';
import { basic, createSdkKey, oauthPost } from './support/oauth-helper.js';

/** The real time, shifted. */
class SkewedClock extends TestClock {
  constructor(private readonly offsetMs: number) {
    super();
  }
  override now(): number {
    return Date.now() + this.offsetMs;
  }
}

const MIN5 = 5 * 60_000;

async function tokenFrom(app: FastifyInstance, key: { client_id: string; client_secret: string }): Promise<string> {
  const res = await oauthPost(
    { inject: (o) => app.inject(o) },
    '/oauth/token',
    { grant_type: 'client_credentials' },
    { authorization: basic(key.client_id, key.client_secret) },
  );
  if (res.statusCode !== 200) throw new Error(res.body);
  return res.json().access_token;
}
const status = async (app: FastifyInstance, token: string) => (await app.inject({ method: 'GET', url: '/api/users/me', headers: bearer(token) })).statusCode;

t.test('default tolerance: a 5-minute skew fails closed and the skewed instance reports not ready', async (t) => {
  const h = await harness(t, { clock: new SkewedClock(0) });
  const user = await h.user();
  const key = await createSdkKey(h, user);
  const ahead = await h.instance({ clock: new SkewedClock(MIN5) });
  const behind = await h.instance({ clock: new SkewedClock(-MIN5) });
  await new Promise((r) => setTimeout(r, 200));

  const fromA = await tokenFrom(h.app, key);
  const fromAhead = await tokenFrom(ahead, key);
  const fromBehind = await tokenFrom(behind, key);
  t.equal(await status(h.app, fromA), 200, 'control');
  t.equal(await status(h.app, fromAhead), 401, 'a token from an instance 5 min ahead has iat in the future: refused');
  t.equal(await status(ahead, fromA), 200, 'the ahead instance accepts tokens from the past (still unexpired)');
  t.equal(await status(h.app, fromBehind), 200, 'a token from an instance 5 min behind is merely older: accepted');
  t.equal(await status(behind, fromA), 401, 'the behind instance sees the token as issued in its future: refused');

  for (const [name, app] of [
    ['ahead', ahead],
    ['behind', behind],
  ] as const) {
    const ready = await app.inject({ method: 'GET', url: '/readyz' });
    t.equal(ready.statusCode, 503, `${name}: not ready`);
    t.match(ready.json().checks.clock, /clock is -?\d+ s off the database's \(tolerance 30 s/, `${name}: says why`);
  }
  const ok = await h.inject({ method: 'GET', url: '/readyz' });
  t.equal(ok.statusCode, 200, 'the instance with the right time is ready');
  t.equal(ok.json().checks.clock, 'ok');

  // Sessions: created on a skewed instance, usable and logged out everywhere.
  const apiToken = await h.apiToken(user);
  const session = (await ahead.inject({ method: 'POST', url: '/api/users/loginWithToken', payload: { apiToken } })).json().id as string;
  t.equal(await status(h.app, session), 200);
  t.equal(await status(behind, session), 200);
  t.equal((await behind.inject({ method: 'POST', url: '/api/users/logout', headers: { 'x-access-token': session } })).statusCode, 204);
  for (const app of [h.app, ahead, behind]) t.equal(await status(app, session), 401, 'logout holds regardless of clocks');
});

t.test('TESSERA_CLOCK_TOLERANCE=6m: a 5-minute skew either way verifies both ways; expiry still enforced', async (t) => {
  const env = { TESSERA_CLOCK_TOLERANCE: '6m' };
  const h = await harness(t, { env, clock: new SkewedClock(0) });
  t.equal(h.config.clockToleranceSeconds, 360);
  const user = await h.user();
  const key = await createSdkKey(h, user);
  const ahead = await h.instance({ env, clock: new SkewedClock(MIN5) });
  const behind = await h.instance({ env, clock: new SkewedClock(-MIN5) });
  await new Promise((r) => setTimeout(r, 200));
  const tokens = { A: await tokenFrom(h.app, key), ahead: await tokenFrom(ahead, key), behind: await tokenFrom(behind, key) };
  for (const [who, app] of [
    ['A', h.app],
    ['ahead', ahead],
    ['behind', behind],
  ] as const) {
    for (const [from, token] of Object.entries(tokens)) {
      // One skewed instance at a time: ahead and behind are 10 min apart from each other, beyond 6 min.
      if ((who === 'ahead' && from === 'behind') || (who === 'behind' && from === 'ahead')) continue;
      t.equal(await status(app, token), 200, `minted on ${from}, verified on ${who}`);
    }
    t.equal((await app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200, `${who} is ready within the tolerance`);
  }
  // Introspection and revocation across the skew.
  const intro = await oauthPost(h, '/oauth/introspect', { token: tokens.ahead }, { authorization: basic(key.client_id, key.client_secret) });
  t.equal(intro.json().active, true);
  const rev = await oauthPost(
    { inject: (o) => ahead.inject(o) },
    '/oauth/revoke',
    { token: tokens.A },
    { authorization: basic(key.client_id, key.client_secret) },
  );
  t.equal(rev.statusCode, 200);
  await new Promise((r) => setTimeout(r, 200));
  for (const app of [h.app, ahead, behind]) t.equal(await status(app, tokens.A), 401, 'revoked on the skewed instance, refused everywhere');

  // A token that expired longer ago than the tolerance is refused, even by the instance running behind.
  const old = new SkewedClock(-(3600_000 + 7 * 60_000)); // minted 1 h 7 min ago: expired 7 min ago
  const minter = await h.instance({ env, clock: old });
  await new Promise((r) => setTimeout(r, 100));
  const expired = await tokenFrom(minter, key);
  t.equal(await status(h.app, expired), 401, 'expired beyond the tolerance');
  t.equal(await status(behind, expired), 200, 'an instance 5 min behind sees it expired only 2 min ago: within its tolerance');
});
