// Concurrency: logout racing use on two instances (a request that starts after the
// logout's 204 is refused everywhere), double logout, and the two-key limit under 2 instances x
// 50 parallel creations for two users at once.
import t from 'tap';
import { bearer, harness } from './support/helper.js';

t.test('logout racing use on two instances: no request started after the 204 succeeds, on either', async (t) => {
  const h = await harness(t);
  const B = await h.instance();
  const user = await h.user();
  const apiToken = await h.apiToken(user);
  const apps = [h.app, B];
  for (let round = 0; round < 8; round++) {
    const session = (await apps[round % 2]!.inject({ method: 'POST', url: '/api/users/loginWithToken', payload: { apiToken } })).json().id as string;
    for (const a of apps) t.equal((await a.inject({ method: 'GET', url: '/api/users/me', headers: { 'x-access-token': session } })).statusCode, 200);
    let acked = false;
    let running = true;
    const after: number[] = [];
    const use = async (a: (typeof apps)[number]) => {
      while (running) {
        const startedAfterAck = acked;
        const res = await a.inject({ method: 'GET', url: '/gateway/verify', headers: bearer(session) });
        if (startedAfterAck) after.push(res.statusCode);
        else if (res.statusCode !== 200 && res.statusCode !== 401) after.push(res.statusCode * 1000);
      }
    };
    const users = [use(h.app), use(B), use(h.app), use(B)];
    await new Promise((r) => setTimeout(r, 20));
    const out = await apps[(round + 1) % 2]!.inject({ method: 'POST', url: '/api/users/logout', headers: { 'x-access-token': session } });
    t.equal(out.statusCode, 204);
    acked = true;
    await new Promise((r) => setTimeout(r, 60));
    running = false;
    await Promise.all(users);
    t.ok(after.length > 0, `round ${round}: requests ran after the logout`);
    t.ok(
      after.every((s) => s === 401),
      `round ${round}: all ${after.length} requests started after the 204 got 401`,
    );
  }
});

t.test('the same session logged out on both instances at once: exactly one 204', async (t) => {
  const h = await harness(t);
  const B = await h.instance();
  const user = await h.user();
  const apiToken = await h.apiToken(user);
  for (let i = 0; i < 5; i++) {
    const session = (await h.inject({ method: 'POST', url: '/api/users/loginWithToken', payload: { apiToken } })).json().id as string;
    const res = await Promise.all(
      [h.app, B, h.app, B].map((a) => a.inject({ method: 'POST', url: '/api/users/logout', headers: { 'x-access-token': session } })),
    );
    t.same(res.map((r) => r.statusCode).sort(), [204, 401, 401, 401]);
  }
  const audits = await h.db.selectFrom('audit_events').select('id').where('action', '=', 'session.logout').execute();
  t.equal(audits.length, 5, 'one logout audited per session');
});

t.test('two instances x 50 parallel SDK-key creations for two users: exactly two keys each', async (t) => {
  const h = await harness(t);
  const B = await h.instance();
  const users = [await h.user(), await h.user()];
  const tokens = await Promise.all(users.map((u) => h.apiToken(u)));
  const results = await Promise.all(
    Array.from({ length: 100 }, (_, i) =>
      (i % 2 ? B : h.app).inject({ method: 'POST', url: '/api/sdk-keys', headers: bearer(tokens[Math.floor(i / 2) % 2]!), payload: { name: `k${i}` } }),
    ),
  );
  const codes = results.map((r) => r.statusCode);
  t.equal(codes.filter((c) => c === 201).length, 4, 'four created');
  t.equal(codes.filter((c) => c === 409).length, 96, 'the rest 409');
  for (const u of users) {
    const n = await h.db.selectFrom('sdk_keys').select('id').where('user_id', '=', u.id).execute();
    t.equal(n.length, 2, 'two per user');
  }
});
