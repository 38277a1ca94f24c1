// RFC 8936 poll delivery when a receiver fell behind the retention: events it never acknowledged
// were pruned, so its answer carries a Tessera resync SET (delivered again until acknowledged)
// next to the events still kept. Driven by a plain-fetch receiver, as an RFC 8936 client would.
import t from 'tap';
import { createRemoteJWKSet, jwtVerify, type JWTPayload } from 'jose';
import { sql } from 'kysely';
import { eventsDb, pruneEvents } from '../src/events/events.repository.js';
import { freePort, harness } from './support/helper.js';
import { basic, createSdkKey, getToken, oauthPost } from './support/oauth-helper.js';

const RESYNC = 'urn:tessera:secevent:resync';
const REVOKED = 'urn:tessera:secevent:access-token-revoked';

t.test('a poll receiver whose position is older than the retention is told to resync until it acknowledges it', async (t) => {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const h = await harness(t, { env: { TESSERA_ISSUER: base, TESSERA_RATE_LIMIT: 'false' } });
  await h.app.listen({ port, host: '127.0.0.1' });
  const jwks = createRemoteJWKSet(new URL(`${base}/.well-known/jwks.json`));

  const behindUser = await h.user();
  const behind = await h.apiToken(behindUser, ['events:read']);
  const current = await h.apiToken(await h.user(), ['events:read']);
  const poll = async (token: string, body: Record<string, unknown>) => {
    const res = await fetch(`${base}/events/poll`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({ returnImmediately: true, ...body }),
    });
    t.equal(res.status, 200);
    const out = (await res.json()) as { sets: Record<string, string>; moreAvailable: boolean };
    const sets = new Map<string, JWTPayload>();
    for (const [jti, set] of Object.entries(out.sets)) {
      const { payload } = await jwtVerify(set, jwks, { issuer: base, typ: 'secevent+jwt', requiredClaims: ['iat', 'jti', 'aud'] });
      t.equal(payload.jti, jti);
      sets.set(jti, payload);
    }
    return { sets, more: out.moreAvailable };
  };
  const revoke = async (n: number) => {
    const key = await createSdkKey(h, await h.user());
    for (let i = 0; i < n; i++) {
      const tok = await getToken(h, key);
      t.equal((await oauthPost(h, '/oauth/revoke', { token: tok }, { authorization: basic(key.client_id, key.client_secret) })).statusCode, 200);
    }
  };
  const type = (p: JWTPayload) => Object.keys(p.events as object)[0];

  await revoke(3);
  const ids = (await sql<{ id: string }>`select id from security_events order by id`.execute(h.db)).rows.map((r) => String(r.id));
  t.equal(ids.length, 3);
  // `behind` processes only the first; `current` acknowledges all three.
  t.same([...(await poll(behind, { ack: [] })).sets.keys()], ids);
  t.same([...(await poll(behind, { ack: [ids[0]] })).sets.keys()], ids.slice(1), 'the unacknowledged two are delivered again');
  t.same([...(await poll(current, { ack: [] })).sets.keys()], ids);
  t.same([...(await poll(current, { ack: ids })).sets.keys()], []);

  await revoke(2);
  // The first three age past the retention and are pruned by the job's function; `behind` has not
  // polled for longer than the retention too (it is still remembered).
  await sql`update security_events set created_at = now() - interval '10 days' where id <= ${Number(ids[2])}`.execute(h.db);
  await sql`update security_event_receivers set updated_at = now() - interval '10 days' where receiver = ${`user:${behindUser.id}`}`.execute(h.db);
  t.equal(await pruneEvents(eventsDb(h.db), new Date(Date.now() - 86_400_000)), 3);
  const kept = (await sql<{ id: string }>`select id from security_events order by id`.execute(h.db)).rows.map((r) => String(r.id));
  t.equal(kept.length, 2);

  const first = await poll(behind, {});
  const resyncJti = `resync-${ids[0]}`;
  t.same([...first.sets.keys()].sort(), [...kept, resyncJti].sort(), 'the events still kept and a resync SET');
  const notice = first.sets.get(resyncJti)!;
  t.equal(type(notice), RESYNC);
  t.equal(notice.aud, behindUser.id, 'addressed to the receiver');
  t.equal((notice.events as Record<string, { from: number }>)[RESYNC]!.from, Number(ids[2]), 'from: every event at or below it is gone');
  t.ok(kept.every((id) => type(first.sets.get(id)!) === REVOKED));

  // Limited to one SET: the resync notice counts, and more are available.
  const one = await poll(behind, { maxEvents: 1 });
  t.same([...one.sets.keys()], [resyncJti]);
  t.equal(one.more, true);

  // Acknowledging the events but not the notice: the notice is delivered again, alone.
  t.same([...(await poll(behind, { ack: kept })).sets.keys()], [resyncJti], 'unacknowledged, the resync SET is delivered again');
  // Acknowledged: nothing is left, and the receiver is past the horizon.
  t.same([...(await poll(behind, { ack: [resyncJti] })).sets.keys()], []);
  t.same([...(await poll(behind, {})).sets.keys()], [], 'no resync once acknowledged');
  await revoke(1);
  const next = await poll(behind, {});
  t.equal(next.sets.size, 1);
  t.equal(type([...next.sets.values()][0]!), REVOKED, 'new events arrive as usual');

  // The receiver that had acknowledged everything before the prune missed nothing: no resync.
  const cur = await poll(current, {});
  t.same([...cur.sets.keys()], [...kept, ...next.sets.keys()]);
  t.notOk([...cur.sets.values()].some((p) => type(p) === RESYNC));

  // A malformed resync acknowledgement is a 400.
  const bad = await fetch(`${base}/events/poll`, {
    method: 'POST',
    headers: { authorization: `Bearer ${behind}`, 'content-type': 'application/json' },
    body: JSON.stringify({ ack: ['resync-x'] }),
  });
  t.equal(bad.status, 400);
  await bad.arrayBuffer();
});
