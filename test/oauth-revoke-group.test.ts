// RFC 7009 revocations of concurrent requests are committed together (one transaction per group);
// each request still gets its own 200, its own audit row and its own security event.
import t from 'tap';
import { sql } from 'kysely';
import { bearer, harness } from './support/helper.js';
import { basic, claimsOf, createSdkKey, getToken, oauthPost } from './support/oauth-helper.js';

t.test('40 concurrent revocations: all 200, shared transactions, refused on another instance, audited, one SET each', async (t) => {
  const h = await harness(t);
  const b = await h.instance();
  const keys = [await createSdkKey(h, await h.user()), await createSdkKey(h, await h.user())];
  const tokens: Array<{ token: string; key: (typeof keys)[number] }> = [];
  for (let i = 0; i < 40; i++) {
    const key = keys[i % 2]!;
    tokens.push({ token: await getToken(h, key), key });
  }
  for (const { token } of tokens) t.equal((await b.inject({ method: 'GET', url: '/api/sdk-keys', headers: bearer(token) })).statusCode, 200);
  const jtis = tokens.map(({ token }) => claimsOf(token).jti as string);

  // Revoked once before: its revocation in the group is still a 200 (RFC 7009), and no second row.
  const auth = (key: (typeof keys)[number]) => ({ authorization: basic(key.client_id, key.client_secret) });
  t.equal((await oauthPost(h, '/oauth/revoke', { token: tokens[0]!.token }, auth(tokens[0]!.key))).statusCode, 200);

  // The 40 together, plus one token revoked twice within the group.
  const sends = [...tokens, tokens[5]!];
  const answers = await Promise.all(sends.map(({ token, key }) => oauthPost(h, '/oauth/revoke', { token }, auth(key))));
  answers.forEach((r, i) => t.equal(r.statusCode, 200, `revocation ${i}: 200`));

  const rows = await h.db.selectFrom('revoked_tokens').select('jti').where('jti', 'in', jtis).execute();
  t.equal(rows.length, 40, 'one denylist row per token');
  // Shared transactions: rows inserted by one transaction carry one xmin (the first row has its own).
  const tx = await sql<{ n: number }>`select count(distinct xmin::text)::int as n from revoked_tokens`.execute(h.db);
  t.ok(tx.rows[0]!.n < 40, `40 revocations written in ${tx.rows[0]!.n} transactions`);

  const audits = await h.db
    .selectFrom('audit_events')
    .select(['target_id', 'request_id', 'actor_credential'])
    .where('action', '=', 'oauth.token.revoke')
    .execute();
  // The token revoked before is already refused by this instance: nothing more to do, nothing audited.
  t.equal(audits.length, 41, 'one audit row per revocation that revoked');
  t.equal(new Set(audits.map((a) => a.request_id)).size, 41, 'each audit row carries its own request id');
  t.same(new Set(audits.map((a) => a.target_id)), new Set(jtis), 'the audit rows name the revoked jtis');
  for (let i = 0; i < 40; i++) {
    const mine = audits.filter((a) => a.target_id === jtis[i]);
    t.ok(mine.length >= 1 && mine.every((a) => a.actor_credential === `client:${tokens[i]!.key.client_id}`), `audit of ${i} names its client`);
  }

  const events = await sql<{ jti: string }>`select subject->>'jti' as jti from security_events where kind = 'token_revoked'`.execute(h.db);
  const evJtis = events.rows.map((e) => e.jti);
  t.equal(evJtis.length, 40, 'one security event per revoked token');
  t.same(new Set(evJtis), new Set(jtis), 'each revoked jti has its event');

  // Every instance refuses every token: this one at once, the other through the change events.
  for (const { token } of tokens) t.equal((await h.inject({ method: 'GET', url: '/api/sdk-keys', headers: bearer(token) })).statusCode, 401, 'refused on A');
  for (const { token } of tokens) {
    let status = 0;
    for (let i = 0; i < 40 && status !== 401; i++) {
      status = (await b.inject({ method: 'GET', url: '/api/sdk-keys', headers: bearer(token) })).statusCode;
      if (status !== 401) await new Promise((r) => setTimeout(r, 50));
    }
    t.equal(status, 401, 'refused on B');
  }
});
