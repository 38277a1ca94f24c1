// The security events stream when things go wrong: a verifier cut off fails closed after its grace
// time (or checks remotely) and, once back, resumes with Last-Event-ID and gets what it missed; a
// resume from an id older than the retention is told to resync; heartbeats on an idle stream.
import t from 'tap';
import { createVerifier, type FetchLike } from '../src/client/index.js';
import { freePort, harness } from './support/helper.js';
import { eventually, outcome, twoInstances } from './support/events-helper.js';
import { basic, createSdkKey, getToken, oauthPost, type SdkKey } from './support/oauth-helper.js';

/** A fetch whose events stream can be cut off: `down()` aborts it and refuses to reconnect until `up()`; other requests pass. */
function switchableFetch() {
  let offline = false;
  let cut = new AbortController();
  const lastEventIds: (string | null)[] = [];
  const f: FetchLike = (input, init) => {
    if (!String(input).endsWith('/events/stream')) return fetch(input, init);
    if (offline) return Promise.reject(new TypeError('fetch failed: offline'));
    lastEventIds.push(new Headers(init?.headers).get('last-event-id'));
    const signal = init?.signal ? AbortSignal.any([init.signal, cut.signal]) : cut.signal;
    return fetch(input, { ...init, signal });
  };
  return {
    fetch: f,
    lastEventIds,
    down() {
      offline = true;
      cut.abort();
      cut = new AbortController();
    },
    up() {
      offline = false;
    },
  };
}

t.test('a verifier cut off fails closed after its grace time, then resumes with Last-Event-ID and gets every missed event', async (t) => {
  const { h, issuer, urlB } = await twoInstances(t);
  const receiver = await h.apiToken(await h.user(), ['events:read']);
  const net = switchableFetch();
  const v = createVerifier({
    issuer,
    audience: issuer,
    fetch: net.fetch,
    revocations: 'stream',
    events: { auth: async () => receiver, url: `${urlB}/events/stream`, graceMs: 200 },
  });
  const remote = createVerifier({
    issuer,
    audience: issuer,
    fetch: net.fetch,
    revocations: 'stream',
    events: { auth: async () => receiver, url: `${urlB}/events/stream`, graceMs: 200, whenDown: 'remote' },
    remote: { method: 'gateway' },
  });
  t.teardown(() => {
    v.close();
    remote.close();
  });
  await v.revocationStream!.ready();
  await remote.revocationStream!.ready();

  const u = await h.user();
  const key: SdkKey = await createSdkKey(h, u);
  const keep = await getToken(h, key);
  const victims = [await getToken(h, key), await getToken(h, key), await getToken(h, key)];
  for (const tok of [keep, ...victims]) t.equal(await outcome(v, tok), 'ok');
  // One event before the cut, so the resume has an id to send.
  t.equal((await oauthPost(h, '/oauth/revoke', { token: victims[0]! }, { authorization: basic(key.client_id, key.client_secret) })).statusCode, 200);
  t.ok(await eventually(async () => (await outcome(v, victims[0]!)) === 'revoked'));
  const before = v.revocationStream!.lastEventId;
  t.ok(before, 'an event id was received');

  net.down();
  // Past the grace time the verifier is not silently open: it refuses (or, configured so, asks Tessera).
  t.ok(await eventually(async () => (await outcome(v, keep)) === 'unavailable'), 'fail closed while the stream is down');
  // Revocations committed while it is away.
  for (const tok of victims.slice(1)) {
    t.equal((await oauthPost(h, '/oauth/revoke', { token: tok }, { authorization: basic(key.client_id, key.client_secret) })).statusCode, 200);
  }
  net.up();
  t.ok(await eventually(async () => v.revocationStream!.isLive), 'the stream comes back');
  t.ok(net.lastEventIds.includes(before), `the reconnect sent Last-Event-ID ${before}`);
  for (const tok of victims) t.equal(await outcome(v, tok), 'revoked', 'a token revoked while away is refused');
  t.equal(await outcome(v, keep), 'ok', 'the unaffected token is accepted again');

  // whenDown 'remote': down past the grace time, tokens are checked with Tessera (/gateway/verify) instead.
  t.ok(await eventually(async () => remote.revocationStream!.isLive));
  net.down();
  const late = await getToken(h, key);
  t.equal((await oauthPost(h, '/oauth/revoke', { token: late }, { authorization: basic(key.client_id, key.client_secret) })).statusCode, 200);
  t.ok(await eventually(async () => (await outcome(remote, late)) === 'revoked'), 'a token revoked while the stream is down is refused by the remote check');
  t.equal(await outcome(remote, keep), 'ok', 'an unaffected token passes the remote check');
  net.up();
});

t.test('a stream resumed from an id older than the retention is told to resync; the stream sends heartbeats', async (t) => {
  const { h, urlA } = await twoInstances(t);
  const receiver = await h.apiToken(await h.user(), ['events:read']);
  const u = await h.user();
  const key = await createSdkKey(h, u);
  for (let i = 0; i < 3; i++) {
    const tok = await getToken(h, key);
    await oauthPost(h, '/oauth/revoke', { token: tok }, { authorization: basic(key.client_id, key.client_secret) });
  }
  // Prune the first two as the job would once they are older than the retention.
  await h.db.transaction().execute(async (trx) => {
    const { sql } = await import('kysely');
    await sql`update security_events set created_at = now() - interval '10 days' where id in (select id from security_events order by id limit 2)`.execute(trx);
  });
  const { pruneEvents, eventsDb } = await import('../src/events/events.repository.js');
  t.equal(await pruneEvents(eventsDb(h.db), new Date(Date.now() - 86_400_000)), 2);

  const read = async (lastEventId: string, until: RegExp) => {
    const ac = new AbortController();
    const res = await fetch(`${urlA}/events/stream`, { headers: { authorization: `Bearer ${receiver}`, 'last-event-id': lastEventId }, signal: ac.signal });
    t.equal(res.status, 200);
    t.match(res.headers.get('content-type'), /^text\/event-stream/);
    let text = '';
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    while (!until.test(text)) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
    ac.abort();
    return text;
  };
  const old = await read('1', /event: live/);
  t.match(old, /event: resync/, 'resumed below the horizon: resync');
  t.match(old, /\nid: 3\ndata: ey/, 'then every event kept');
  t.notMatch(old, /\nid: 1\n/);
  const current = await read('2', /event: live/);
  t.notMatch(current, /event: resync/, 'resumed at the horizon: no resync');
  const future = await read('999', /event: live/);
  t.match(future, /event: resync/, 'an id never issued: resync');
});

t.test('heartbeats keep an idle stream alive', async (t) => {
  const h = await harness(t, { env: { TESSERA_SECURITY_EVENTS_HEARTBEAT: '1' } });
  const port = await freePort();
  await h.app.listen({ port, host: '127.0.0.1' });
  const receiver = await h.apiToken(await h.user(), ['events:read']);
  const ac = new AbortController();
  const res = await fetch(`http://127.0.0.1:${port}/events/stream`, { headers: { authorization: `Bearer ${receiver}` }, signal: ac.signal });
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let text = '';
  while (!/: heartbeat\n\n/.test(text)) text += (await reader.read()).value ?? '';
  ac.abort();
  t.pass('a heartbeat comment arrived');
});
