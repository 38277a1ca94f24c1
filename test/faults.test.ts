// Faults with real Postgres and real processes: Postgres restarted (fast and immediate)
// under load on two instances, and kill -9 of an instance during writes. Nothing acknowledged is
// lost; nothing is half made; the processes survive and recover without a restart.
import t from 'tap';
import path from 'node:path';
import { basic } from './support/oauth-helper.js';
import { cluster, form, post, sleep, waitReady, type Server } from './support/fault-cluster.js';

t.test('Postgres restarted (fast, then immediate) under load on two instances: 503s, fast recovery, nothing acknowledged lost', async (t) => {
  const c = await cluster(t);
  const [A, B] = await Promise.all([c.server(), c.server()]);
  const { apiToken } = await c.user();
  const login = async (s: Server) => ((await (await post(`${s.url}/api/users/loginWithToken`, { json: { apiToken } })).json()) as { id: string }).id;
  const keyRes = await post(`${A.url}/api/sdk-keys`, { headers: { authorization: `Bearer ${apiToken}` }, json: { name: 'k' } });
  t.equal(keyRes.status, 201);
  const key = (await keyRes.json()) as { client_id: string; client_secret: string };
  const clientAuth = { authorization: basic(key.client_id, key.client_secret) };
  const token = async (s: Server) => {
    const r = await post(`${s.url}/oauth/token`, { headers: { ...form, ...clientAuth }, body: 'grant_type=client_credentials' });
    return ((await r.json()) as { access_token: string }).access_token;
  };
  const me = async (s: Server, tok: string) =>
    (await fetch(`${s.url}/api/users/me`, { headers: { authorization: `Bearer ${tok}` }, signal: AbortSignal.timeout(10_000) })).status;

  const loggedOut: string[] = [];
  const revoked: string[] = [];
  const live: string[] = [];

  const loadStats = { count: 0, statuses: new Map<number, number>(), slowest503: 0, errors: [] as string[] };
  let loading = true;
  const liveSession = await login(B);
  const liveJwt = await token(A);
  const loop = async (i: number) => {
    while (loading) {
      const s = i % 2 ? A : B;
      const started = Date.now();
      try {
        const kind = loadStats.count % 3;
        const res =
          kind === 0
            ? await post(`${s.url}/oauth/token`, { headers: { ...form, ...clientAuth }, body: 'grant_type=client_credentials' })
            : await fetch(`${s.url}/api/users/me`, {
                headers: { authorization: `Bearer ${kind === 1 ? liveSession : liveJwt}` },
                signal: AbortSignal.timeout(10_000),
              });
        await res.arrayBuffer();
        loadStats.count++;
        loadStats.statuses.set(res.status, (loadStats.statuses.get(res.status) ?? 0) + 1);
        if (res.status === 503) loadStats.slowest503 = Math.max(loadStats.slowest503, Date.now() - started);
      } catch (err) {
        loadStats.errors.push((err as Error).message);
      }
      await sleep(5);
    }
  };
  const loops = [0, 1, 2, 3].map(loop);

  for (const mode of ['fast', 'immediate'] as const) {
    // Acknowledged before the fault, on either instance.
    for (const s of [A, B]) {
      const sess = await login(s);
      t.equal((await me(A, sess)) + (await me(B, sess)), 400, `${mode}: a fresh session works on both (and is cached there)`);
      const out = await post(`${s.url}/api/users/logout`, { headers: { 'x-access-token': sess } });
      t.equal(out.status, 204);
      loggedOut.push(sess);
      const jwt = await token(s);
      t.equal(await me(A, jwt), 200);
      const rev = await post(`${s.url}/oauth/revoke`, { headers: { ...form, ...clientAuth }, body: `token=${jwt}` });
      t.equal(rev.status, 200);
      revoked.push(jwt);
      live.push(await login(s));
    }
    await c.pgctl(['restart', '-D', c.pg.dataDir, '-m', mode, '-w', '-t', '30', '-l', path.join(c.pg.dataDir, `restart-${mode}.log`)]);
    const back = Date.now();
    const [ra, rb] = await Promise.all([waitReady(A, 15_000), waitReady(B, 15_000)]);
    const recovered = Date.now() - back;
    t.ok(recovered < 5000, `${mode}: both instances ready ${recovered} ms after Postgres is back (< 5 s)`);
    t.ok(ra >= 0 && rb >= 0);
    t.equal(A.child.exitCode, null, `${mode}: instance A survived`);
    t.equal(B.child.exitCode, null, `${mode}: instance B survived`);
    // Everything acknowledged before the fault still holds, on both instances.
    for (const s of [A, B]) {
      for (const sess of loggedOut) t.equal(await me(s, sess), 401, `${mode}: a logged-out session stays out on :${s.port}`);
      for (const jwt of revoked) t.equal(await me(s, jwt), 401, `${mode}: a revoked token stays revoked on :${s.port}`);
      for (const sess of live) t.equal(await me(s, sess), 200, `${mode}: a live session still works on :${s.port}`);
    }
  }
  loading = false;
  await Promise.all(loops);
  const statuses = Object.fromEntries(loadStats.statuses);
  t.pass(`load: ${loadStats.count} requests, statuses ${JSON.stringify(statuses)}, slowest 503 ${loadStats.slowest503} ms`);
  t.same(loadStats.errors, [], 'no request hung or lost its connection');
  t.ok(
    [...loadStats.statuses.keys()].every((s) => s === 200 || s === 503),
    'only 200 or 503 under the fault (no 500, no false 401)',
  );
  t.ok(loadStats.slowest503 < 5000, '503s come fast');
  t.ok((loadStats.statuses.get(200) ?? 0) > 0);
});

t.test('kill -9 of an instance during SDK-key creation and logouts: nothing half made, every acknowledgement kept', async (t) => {
  const c = await cluster(t);
  const A = await c.server();
  const B = await c.server();
  const users = await Promise.all(Array.from({ length: 12 }, () => c.user()));
  const sessions: string[] = [];
  for (const u of users) {
    for (let i = 0; i < 2; i++) {
      const r = await post(`${B.url}/api/users/loginWithToken`, { json: { apiToken: u.apiToken } });
      sessions.push(((await r.json()) as { id: string }).id);
    }
  }
  const created: Array<{ client_id: string; client_secret: string }> = [];
  const loggedOut: string[] = [];
  const writes: Promise<unknown>[] = [];
  for (const u of users) {
    for (let i = 0; i < 3; i++) {
      writes.push(
        post(`${A.url}/api/sdk-keys`, { headers: { authorization: `Bearer ${u.apiToken}` }, json: { name: `k${i}` } })
          .then(async (r) => {
            if (r.status === 201) created.push((await r.json()) as { client_id: string; client_secret: string });
          })
          .catch(() => undefined),
      );
    }
  }
  for (const s of sessions) {
    writes.push(
      post(`${A.url}/api/users/logout`, { headers: { 'x-access-token': s } })
        .then((r) => {
          if (r.status === 204) loggedOut.push(s);
        })
        .catch(() => undefined),
    );
  }
  // Let some writes land, then pull the plug mid-flight.
  const until = Date.now() + 5000;
  while (created.length + loggedOut.length < 4 && Date.now() < until) await sleep(2);
  A.child.kill('SIGKILL');
  await Promise.all(writes);
  await A.exited;
  t.ok(created.length + loggedOut.length > 0, `acknowledged before the kill: ${created.length} keys, ${loggedOut.length} logouts`);

  // The database: every key whole (hash, audit event), at most two per user; every audit event has its key.
  const keys = await c.db.selectFrom('sdk_keys').select(['client_id', 'user_id', 'secret_hash']).execute();
  const audits = await c.db.selectFrom('audit_events').select(['target_id']).where('action', '=', 'sdk_key.create').execute();
  t.same(new Set(keys.map((k) => k.client_id)), new Set(audits.map((a) => a.target_id)), 'one audit event per key, none without its key');
  t.ok(
    keys.every((k) => k.secret_hash?.length === 32),
    'every key has its secret hash',
  );
  const perUser = new Map<string, number>();
  for (const k of keys) perUser.set(k.user_id, (perUser.get(k.user_id) ?? 0) + 1);
  t.ok(
    [...perUser.values()].every((n) => n <= 2),
    'the two-key limit held',
  );
  for (const k of created)
    t.ok(
      keys.some((r) => r.client_id === k.client_id),
      'every 201 key exists',
    );
  const revokedRows = await c.db.selectFrom('sessions').select('id').where('revoked_at', 'is not', null).execute();
  const logoutAudits = await c.db.selectFrom('audit_events').select('target_id').where('action', '=', 'session.logout').execute();
  t.same(new Set(revokedRows.map((r) => r.id)), new Set(logoutAudits.map((a) => a.target_id)), 'every revoked session has its audit event and vice versa');

  // On the surviving instance: acknowledged keys work, acknowledged logouts hold; a restarted A agrees.
  const A2 = await c.server(A.port);
  for (const s of [B, A2]) {
    for (const k of created) {
      const r = await post(`${s.url}/oauth/token`, {
        headers: { ...form, authorization: basic(k.client_id, k.client_secret) },
        body: 'grant_type=client_credentials',
      });
      t.equal(r.status, 200, `key created before the kill authenticates on :${s.port}`);
    }
    for (const sess of loggedOut) {
      const r = await fetch(`${s.url}/api/users/me`, { headers: { 'x-access-token': sess } });
      t.equal(r.status, 401, `logout acknowledged before the kill holds on :${s.port}`);
    }
  }
});
