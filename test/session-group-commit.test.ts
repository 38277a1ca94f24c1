// Logins and logouts of concurrent requests are committed together (one statement per group);
// each request still gets its own answer, its own audit row, and its own failure.
import t from 'tap';
import { sql } from 'kysely';
import { harness } from './support/helper.js';
import { GroupCommit } from '../src/platform/database/group-commit.js';

const xat = (token: string) => ({ 'x-access-token': token });

t.test('concurrent logins and logouts: written in shared transactions, answered one by one', async (t) => {
  const h = await harness(t);
  const b = await h.instance();
  const u = await h.user();
  const good = await h.apiToken(u, ['api']);
  const v = await h.user();
  const revoked = await h.apiToken(v, ['api']);
  await h.db
    .updateTable('api_tokens')
    .set({ revoked_at: new Date(h.clock.now()) })
    .where('user_id', '=', v.id)
    .execute();
  const unknown = 'tsr_pat_' + 'x'.repeat(49);

  const kinds = Array.from({ length: 40 }, (_, i) => (i % 4 === 1 ? 'revoked' : i % 4 === 3 ? 'unknown' : 'good'));
  const logins = await Promise.all(
    kinds.map((k) =>
      h.inject({
        method: 'POST',
        url: '/api/users/loginWithToken',
        payload: { apiToken: k === 'good' ? good : k === 'revoked' ? revoked : unknown },
      }),
    ),
  );
  kinds.forEach((k, i) => t.equal(logins[i]!.statusCode, k === 'good' ? 200 : 401, `login ${i} (${k})`));
  const sessions = logins.filter((r) => r.statusCode === 200).map((r) => r.json().id as string);
  t.equal(new Set(sessions).size, 20, 'twenty distinct sessions');

  // Shared transactions: rows inserted by one statement carry one xmin.
  const tx = await sql<{ n: number }>`select count(distinct xmin::text)::int as n from sessions`.execute(h.db);
  t.ok(tx.rows[0]!.n < 20, `20 sessions written in ${tx.rows[0]!.n} transactions`);
  const created = await h.db.selectFrom('audit_events').select(['target_id', 'ip', 'request_id']).where('action', '=', 'session.create').execute();
  t.equal(created.length, 20, 'one session.create audit row per session');
  t.equal(new Set(created.map((a) => a.request_id)).size, 20, 'each audit row carries its own request id');
  for (const s of sessions) t.equal((await b.inject({ method: 'GET', url: '/gateway/verify', headers: xat(s) })).statusCode, 200, 'works on B');

  // Logouts together: each session ended once; the same session sent three more times gets one
  // 204 among its four logouts; unknown sessions get 401 without failing the others.
  const before = (await h.db.selectFrom('sessions').select('id').execute()).map((r) => r.id);
  const unknownSession = (await h.inject({ method: 'POST', url: '/api/users/loginWithToken', payload: { apiToken: good } })).json().id as string;
  await h.db.deleteFrom('sessions').where('id', 'not in', before).execute();
  const outs = [...sessions, sessions[0]!, sessions[0]!, sessions[0]!, unknownSession];
  const answers = await Promise.all(outs.map((s) => h.inject({ method: 'POST', url: '/api/users/logout', headers: xat(s) })));
  for (let i = 1; i < sessions.length; i++) t.equal(answers[i]!.statusCode, 204, `logout ${i}`);
  const first = [0, 20, 21, 22].map((i) => answers[i]!.statusCode);
  t.same(first.slice().sort(), [204, 401, 401, 401], `one of four logouts of one session ends it (${first.join(', ')})`);
  t.equal(answers[23]!.statusCode, 401, 'unknown session: 401');

  const ended = await h.db.selectFrom('audit_events').select('target_id').where('action', '=', 'session.logout').execute();
  t.equal(ended.length, 20, 'one session.logout audit row per ended session');
  for (const s of sessions) {
    t.equal((await h.inject({ method: 'GET', url: '/api/users/me', headers: xat(s) })).statusCode, 401, 'logged out on A');
    t.equal((await b.inject({ method: 'GET', url: '/gateway/verify', headers: xat(s) })).statusCode, 401, 'logged out on B');
  }
});

t.test('a statement failing for one input: the others of its group are written alone and succeed', async (t) => {
  const h = await harness(t);
  await sql`create table group_commit_probe (v int primary key check (v <> 13))`.execute(h.db);
  const group = new GroupCommit<number, number>(
    async (vs) => {
      const r = await sql<{ v: number }>`insert into group_commit_probe (v) select unnest(${vs}::int[]) returning v`.execute(h.db);
      const written = new Set(r.rows.map((row) => row.v));
      return vs.map((v) => (written.has(v) ? v : -1));
    },
    { maxBatch: 100, maxInFlight: 1 },
  );
  const values = Array.from({ length: 30 }, (_, i) => i);
  const results = await Promise.allSettled(values.map((v) => group.submit(v)));
  results.forEach((r, v) => {
    if (v === 13) t.match(r, { status: 'rejected', reason: { code: '23514' } }, 'the bad input fails alone');
    else t.same(r, { status: 'fulfilled', value: v }, `input ${v} written`);
  });
  const rows = await sql<{ v: number }>`select v from group_commit_probe order by v`.execute(h.db);
  t.same(
    rows.rows.map((r) => r.v),
    values.filter((v) => v !== 13),
    'every other input written exactly once',
  );
});
