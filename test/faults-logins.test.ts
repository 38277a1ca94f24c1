// Faults under many concurrent logins and logouts (which an instance commits in groups): Postgres
// crashed with `pg_ctl restart -m immediate`, and kill -9 of the instance. Every login and logout
// acknowledged before the fault holds afterwards, on every instance.
import t, { type Test } from 'tap';
import path from 'node:path';
import { sql, type Kysely } from 'kysely';
import type { Database } from '../src/platform/database/database.js';
import { cluster, post, sleep, waitReady, type Server } from './support/fault-cluster.js';

/**
 * Many clients logging in and out at once against `s` (so the instance commits their writes in
 * groups), until `stop()`. A login is acknowledged by its 200, a logout by its 204; a logout
 * whose answer never came (or was a 503) may or may not have been written, so its session is set
 * aside, neither live nor out.
 */
function loginStorm(s: Server, apiTokens: string[], clients = 40) {
  const live = new Set<string>();
  const out = new Set<string>();
  const unsure = new Set<string>();
  const statuses = new Map<string, number>();
  const count = (what: string) => statuses.set(what, (statuses.get(what) ?? 0) + 1);
  let running = true;
  const worker = async (i: number) => {
    for (let n = 0; running; n++) {
      let sess: string | null = null;
      try {
        const r = await post(`${s.url}/api/users/loginWithToken`, { json: { apiToken: apiTokens[(i + n) % apiTokens.length] } });
        count(`login ${r.status}`);
        if (r.status === 200) sess = ((await r.json()) as { id: string }).id;
        else await r.arrayBuffer();
      } catch {
        count('login error');
      }
      if (!sess) {
        await sleep(20);
        continue;
      }
      live.add(sess);
      // Every other acknowledged session is logged out again at once.
      if (n % 2 === 1) continue;
      try {
        const r = await post(`${s.url}/api/users/logout`, { headers: { 'x-access-token': sess } });
        count(`logout ${r.status}`);
        await r.arrayBuffer();
        live.delete(sess);
        (r.status === 204 ? out : unsure).add(sess);
      } catch {
        count('logout error');
        live.delete(sess);
        unsure.add(sess);
      }
    }
  };
  const workers = Array.from({ length: clients }, (_, i) => worker(i));
  return {
    live,
    out,
    unsure,
    statuses,
    async stop() {
      running = false;
      await Promise.all(workers);
    },
  };
}

/**
 * Every acknowledged login works and every acknowledged logout is refused, on each of `servers`
 * (one request at a time: a burst on a cold instance could meet pool timeouts, which are 503s).
 */
async function checkAcknowledged(t: Test, servers: Server[], live: Set<string>, out: Set<string>, what: string) {
  for (const s of servers) {
    const me = async (sess: string) => {
      const r = await fetch(`${s.url}/api/users/me`, { headers: { 'x-access-token': sess }, signal: AbortSignal.timeout(10_000) });
      await r.arrayBuffer();
      return r.status;
    };
    const wrong = (sessions: Set<string>, want: number) => async () => {
      const seen = new Map<number, number>();
      for (const sess of sessions) {
        const st = await me(sess);
        if (st !== want) seen.set(st, (seen.get(st) ?? 0) + 1);
      }
      return JSON.stringify(Object.fromEntries(seen));
    };
    t.equal(await wrong(live, 200)(), '{}', `${what}: all ${live.size} acknowledged logins work on :${s.port} (statuses otherwise)`);
    t.equal(await wrong(out, 401)(), '{}', `${what}: all ${out.size} acknowledged logouts hold on :${s.port} (statuses otherwise)`);
  }
}

/** Sessions written by one statement with others share their transaction id (xmin). */
async function groupedWrites(c: { db: Kysely<Database> }) {
  const r = await sql<{ rows: number; txs: number }>`select count(*)::int as rows, count(distinct xmin::text)::int as txs from sessions`.execute(c.db);
  return r.rows[0]!;
}

t.test('Postgres crashed (-m immediate) under many concurrent logins and logouts: every acknowledged one holds', async (t) => {
  const c = await cluster(t);
  const [A, B] = await Promise.all([c.server(), c.server()]);
  const tokens = (await Promise.all(Array.from({ length: 4 }, () => c.user()))).map((u) => u.apiToken);
  const storm = loginStorm(A, tokens);
  const until = Date.now() + 20_000;
  while ((storm.live.size < 50 || storm.out.size < 50) && Date.now() < until) await sleep(10);
  // Counted when the fault is about to land: later logouts move sessions from live to out.
  const before = { live: storm.live.size, out: storm.out.size };
  // The crash lands while requests are in flight: writes of whole groups are cut off.
  await c.pgctl(['restart', '-D', c.pg.dataDir, '-m', 'immediate', '-w', '-t', '30', '-l', path.join(c.pg.dataDir, 'restart-storm.log')]);
  await sleep(300);
  await storm.stop();
  await Promise.all([waitReady(A, 15_000), waitReady(B, 15_000)]);
  t.equal(A.child.exitCode, null, 'instance A survived');
  const statuses = Object.fromEntries(storm.statuses);
  t.ok(before.live >= 50 && before.out >= 50, `acknowledged before the crash: ${before.live} logins, ${before.out} logouts (${JSON.stringify(statuses)})`);
  t.ok(
    [...storm.statuses.keys()].every((k) => /^(login|logout) (200|204|503|error)$/.test(k)),
    'only acknowledgements, 503s or cut connections: no 500, no false 401',
  );
  const g = await groupedWrites(c);
  t.ok(g.txs < g.rows, `the storm's writes were grouped: ${g.rows} session rows in ${g.txs} transactions`);
  await checkAcknowledged(t, [A, B], storm.live, storm.out, 'after the crash');
});

t.test('kill -9 of an instance under many concurrent logins and logouts: every acknowledged one holds', async (t) => {
  const c = await cluster(t);
  const A = await c.server();
  const B = await c.server();
  const tokens = (await Promise.all(Array.from({ length: 4 }, () => c.user()))).map((u) => u.apiToken);
  const storm = loginStorm(A, tokens);
  const until = Date.now() + 20_000;
  while ((storm.live.size < 50 || storm.out.size < 50) && Date.now() < until) await sleep(10);
  // Counted when the fault is about to land: later logouts move sessions from live to out.
  const before = { live: storm.live.size, out: storm.out.size };
  A.child.kill('SIGKILL');
  await storm.stop();
  await A.exited;
  t.ok(before.live >= 50 && before.out >= 50, `acknowledged before the kill: ${before.live} logins, ${before.out} logouts`);
  const g = await groupedWrites(c);
  t.ok(g.txs < g.rows, `the storm's writes were grouped: ${g.rows} session rows in ${g.txs} transactions`);
  const A2 = await c.server(A.port);
  await checkAcknowledged(t, [B, A2], storm.live, storm.out, 'after the kill');
});
