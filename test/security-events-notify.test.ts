// A transaction that records many security events wakes the instances once: the notification
// carries no id (readers take every row above the last they read), so Postgres folds a batch's
// notifications into one, and every event of the batch still reaches the receivers.
import t from 'tap';
import pg from 'pg';
import { sql } from 'kysely';
import { bearer, harness } from './support/helper.js';

t.test('a batch of logouts sends one security_event notification and every event is delivered', async (t) => {
  const h = await harness(t);
  const user = await h.user();
  const apiToken = await h.apiToken(user, ['api']);
  const receiver = await h.apiToken(await h.user(), ['events:read']);
  const sessions: string[] = [];
  for (let i = 0; i < 12; i++) {
    const res = await h.inject({ method: 'POST', url: '/api/users/loginWithToken', payload: { apiToken } });
    t.equal(res.statusCode, 200);
    sessions.push((res.json() as { id: string }).id);
  }
  // Poll once so the receiver starts from here.
  const first = await h.inject({ method: 'POST', url: '/events/poll', headers: bearer(receiver), payload: { returnImmediately: true } });
  t.equal(first.statusCode, 200);
  const seen = Object.keys((first.json() as { sets: Record<string, string> }).sets);

  const listener = new pg.Client({ connectionString: h.connectionString });
  await listener.connect();
  t.teardown(() => listener.end());
  const notes: string[] = [];
  listener.on('notification', (n) => {
    if (n.payload && (JSON.parse(n.payload) as { type?: string }).type === 'security_event') notes.push(n.payload);
  });
  await listener.query('listen tessera_events');

  // Twelve sessions ended in one transaction: twelve events, one wake-up.
  const ended = await sql<{ id: string }>`update sessions set revoked_at = now() where user_id = ${user.id} and revoked_at is null returning id`.execute(h.db);
  t.equal(ended.rows.length, 12);
  // A second transaction after it: its own wake-up (notifications fold within a transaction only).
  const more = await h.inject({ method: 'POST', url: '/api/users/loginWithToken', payload: { apiToken } });
  const last = (more.json() as { id: string }).id;
  t.equal((await h.inject({ method: 'POST', url: '/api/users/logout', headers: { 'x-access-token': last } })).statusCode, 204);
  await listener.query('select 1'); // notifications committed before this round trip have arrived
  t.equal(notes.length, 2, 'one notification per transaction');

  const got = await h.inject({
    method: 'POST',
    url: '/events/poll',
    headers: bearer(receiver),
    payload: { ack: seen, returnImmediately: true, maxEvents: 100 },
  });
  const sets = Object.values((got.json() as { sets: Record<string, string> }).sets);
  const revokedSessions = sets
    .map((s) => JSON.parse(Buffer.from(s.split('.')[1]!, 'base64url').toString()) as { events: Record<string, { session_id?: string }> })
    .flatMap((p) => Object.values(p.events).map((e) => e.session_id))
    .filter((id): id is string => typeof id === 'string');
  for (const { id } of ended.rows) t.ok(revokedSessions.includes(id), `session ${id} delivered`);
  t.equal(revokedSessions.length, 13, 'every ended session is one event');
});
