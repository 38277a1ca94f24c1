// Single use of DPoP proofs under concurrency: the replay records of concurrent requests are
// committed together (one statement, one transaction for a group), and of many concurrent uses of
// one proof, on one instance or on two, exactly one is accepted.
import t from 'tap';
import { createHash, generateKeyPairSync, randomUUID, sign as nodeSign } from 'node:crypto';
import { sql } from 'kysely';
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import { harness, type Harness } from './support/helper.js';
import { createSdkKey, oauthPost, basic } from './support/oauth-helper.js';
import { ReplayGuard } from '../src/platform/database/replay-guard.js';

async function ecKeys() {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  return { privateKey, jwk: await exportJWK(publicKey) };
}

async function proof(keys: { privateKey: Parameters<SignJWT['sign']>[0]; jwk: JWK }, claims: Record<string, unknown>): Promise<string> {
  return new SignJWT({ jti: randomUUID(), iat: Math.floor(Date.now() / 1000), ...claims })
    .setProtectedHeader({ typ: 'dpop+jwt', alg: 'ES256', jwk: keys.jwk })
    .sign(keys.privateKey);
}

const transactions = async (h: Pick<Harness, 'db'>, namespace: string) =>
  (
    await sql<{
      n: number;
      rows: number;
    }>`select count(distinct xmin::text)::int as n, count(*)::int as rows from used_jtis where namespace = ${namespace}`.execute(h.db)
  ).rows[0]!;

t.test('concurrent token requests: one proof is accepted once across two instances, distinct proofs all succeed in shared transactions', async (t) => {
  const h = await harness(t);
  const b = await h.instance();
  const key = await createSdkKey(h, await h.user(), { name: 'dpop', scopes: ['api'] });
  const keys = await ecKeys();
  const issuer = h.app.config.issuer;
  const auth = { authorization: basic(key.client_id, key.client_secret) };
  const token = (inst: Pick<typeof h, 'inject'>, dpop: string) => oauthPost(inst, '/oauth/token', { grant_type: 'client_credentials' }, { ...auth, dpop });
  const claims = { htm: 'POST', htu: `${issuer}/oauth/token` };

  // Distinct proofs at once: every one accepted, their records written by fewer transactions than requests.
  await sql`delete from used_jtis`.execute(h.db);
  const distinct = await Promise.all(Array.from({ length: 40 }, () => proof(keys, claims)));
  const answers = await Promise.all(distinct.map((p) => token(h, p)));
  answers.forEach((r, i) => t.equal(r.statusCode, 200, `distinct proof ${i} accepted`));
  t.ok(
    answers.every((r) => r.json().token_type === 'DPoP'),
    'every token is DPoP-bound',
  );
  const tx = await transactions(h, 'dpop');
  t.equal(tx.rows, 40, 'one record per proof');
  t.ok(tx.n < 40, `40 records written in ${tx.n} transactions`);

  // One proof sent 30 times at once to one instance.
  const one = await proof(keys, claims);
  const same = await Promise.all(Array.from({ length: 30 }, () => token(h, one)));
  t.equal(same.filter((r) => r.statusCode === 200).length, 1, 'one of 30 concurrent uses on one instance is accepted');
  for (const r of same.filter((x) => x.statusCode !== 200)) {
    t.equal(r.statusCode, 400);
    t.equal(r.json().error, 'invalid_dpop_proof');
  }

  // One proof sent 15 times to each of two instances at once.
  const two = await proof(keys, claims);
  const both = await Promise.all(Array.from({ length: 30 }, (_, i) => token(i % 2 === 0 ? h : b, two)));
  t.equal(both.filter((r) => r.statusCode === 200).length, 1, 'one of 30 concurrent uses across two instances is accepted');
  t.ok(
    both.filter((r) => r.statusCode !== 200).every((r) => r.statusCode === 400 && r.json().error === 'invalid_dpop_proof'),
    'the others are refused as replays',
  );

  // The same at /gateway/verify with a bound token.
  const bound = answers[0]!.json().access_token as string;
  const ath = createHash('sha256').update(bound).digest('base64url');
  const verifyProof = await proof(keys, { htm: 'GET', htu: `${issuer}/gateway/verify`, ath });
  const verifies = await Promise.all(
    Array.from({ length: 30 }, (_, i) =>
      (i % 2 === 0 ? h : b).inject({ method: 'GET', url: '/gateway/verify', headers: { authorization: `DPoP ${bound}`, dpop: verifyProof } }),
    ),
  );
  t.equal(verifies.filter((r) => r.statusCode === 200).length, 1, 'one of 30 concurrent verifications with one proof succeeds');
  t.ok(
    verifies.filter((r) => r.statusCode !== 200).every((r) => r.statusCode === 401 && /invalid_dpop_proof/.test(String(r.headers['www-authenticate']))),
    'the others get 401 invalid_dpop_proof',
  );
  const fresh = await Promise.all(
    Array.from({ length: 20 }, async (_, i) =>
      (i % 2 === 0 ? h : b).inject({
        method: 'GET',
        url: '/gateway/verify',
        headers: { authorization: `DPoP ${bound}`, dpop: await proof(keys, { htm: 'GET', htu: `${issuer}/gateway/verify`, ath }) },
      }),
    ),
  );
  t.ok(
    fresh.every((r) => r.statusCode === 200),
    'distinct proofs verify on both instances',
  );
});

t.test('the replay guard: one winner per key within a group, a local record of used keys, bounded', async (t) => {
  const h = await harness(t);
  const later = new Date(Date.now() + 60_000);
  const a = new ReplayGuard(h.db);
  const b = new ReplayGuard(h.db);

  // Same key many times in one group and from two guards at once: exactly one first use.
  const results = await Promise.all(Array.from({ length: 50 }, (_, i) => (i % 5 === 0 ? b : a).firstUse('dpop', 'k', 'same', later)));
  t.equal(results.filter(Boolean).length, 1, 'one of 50 concurrent uses of one key wins');
  // Mixed keys in one group: each distinct key wins once, its duplicates lose.
  const keys = Array.from({ length: 60 }, (_, i) => `jti-${i % 20}`);
  const mixed = await Promise.all(keys.map((k) => a.firstUse('dpop', 'k', k, later)));
  for (let j = 0; j < 20; j++) t.equal(mixed.filter((ok, i) => ok && keys[i] === `jti-${j}`).length, 1, `jti-${j} wins once`);
  const tx = await transactions(h, 'dpop');
  t.equal(tx.rows, 21, 'one row per distinct key');
  t.ok(tx.n < 21, `21 records in ${tx.n} transactions`);

  // A guard remembers what it has seen: with the rows gone, it still refuses them; another guard,
  // which never saw them, asks the database (which no longer has them).
  await sql`delete from used_jtis`.execute(h.db);
  t.equal(await a.firstUse('dpop', 'k', 'jti-3', later), false, 'a replay on the same instance is refused from memory');
  t.equal(await b.firstUse('dpop', 'k', 'jti-3', later), true, 'the database is the authority for others');

  // Bounded memory: a small guard forgets its oldest records, and then the database decides.
  const small = new ReplayGuard(h.db, { localLimit: 10 });
  for (let i = 0; i < 30; i++) t.equal(await small.firstUse('client_assertion', 'c', `s-${i}`, later), true);
  t.equal(await small.firstUse('client_assertion', 'c', 's-0', later), false, 'a forgotten key is still refused by the database');
  await sql`delete from used_jtis where namespace = 'client_assertion'`.execute(h.db);
  t.equal(await small.firstUse('client_assertion', 'c', 's-1', later), true, 'the oldest records were forgotten locally');
  t.equal(await small.firstUse('client_assertion', 'c', 's-29', later), false, 'the newest are still remembered');
});

t.test('every proof algorithm verifies; headers and claims a library would refuse are refused', async (t) => {
  const h = await harness(t);
  const key = await createSdkKey(h, await h.user(), { name: 'dpop', scopes: ['api'] });
  const issuer = h.app.config.issuer;
  const auth = { authorization: basic(key.client_id, key.client_secret) };
  const token = (dpop: string) => oauthPost(h, '/oauth/token', { grant_type: 'client_credentials' }, { ...auth, dpop });
  const claims = { htm: 'POST', htu: `${issuer}/oauth/token` };
  const sign = async (alg: string, extraHeader: Record<string, unknown> = {}, extraClaims: Record<string, unknown> = {}) => {
    const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
    return new SignJWT({ jti: randomUUID(), iat: Math.floor(Date.now() / 1000), ...claims, ...extraClaims })
      .setProtectedHeader({ typ: 'dpop+jwt', alg, jwk: await exportJWK(publicKey), ...extraHeader })
      .sign(privateKey);
  };

  for (const alg of ['ES256', 'ES384', 'EdDSA', 'Ed25519', 'PS256', 'RS256']) {
    const r = await token(await sign(alg));
    t.equal(r.statusCode, 200, `${alg} proof accepted`);
    t.equal(r.json().token_type, 'DPoP');
  }

  const now = Math.floor(Date.now() / 1000);
  const good = await sign('ES256');
  const [hd, pl, sg] = good.split('.') as [string, string, string];
  const otherPayload = Buffer.from(JSON.stringify({ jti: randomUUID(), iat: now, ...claims })).toString('base64url');
  // Proofs jose refuses to make, signed with node:crypto: a key too weak or of another curve than
  // its algorithm, an unknown critical parameter.
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const manual = (pair: ReturnType<typeof generateKeyPairSync>, header: Record<string, unknown>, hash: string, dsa?: 'ieee-p1363') => {
    const input = `${b64({ typ: 'dpop+jwt', jwk: pair.publicKey.export({ format: 'jwk' }), ...header })}.${b64({ jti: randomUUID(), iat: now, ...claims })}`;
    const sig = nodeSign(hash, Buffer.from(input), dsa ? { key: pair.privateKey, dsaEncoding: dsa } : pair.privateKey);
    return `${input}.${sig.toString('base64url')}`;
  };
  const p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });
  const rsa1024 = generateKeyPairSync('rsa', { modulusLength: 1024 });
  const hostile: Array<[string, string]> = [
    ['a critical header parameter', manual(p256, { alg: 'ES256', crit: ['exp'] }, 'sha256', 'ieee-p1363')],
    ['nbf in the future', await sign('ES256', {}, { nbf: now + 3600 })],
    ['exp in the past', await sign('ES256', {}, { exp: now - 3600 })],
    ['exp not a number', await sign('ES256', {}, { exp: 'soon' })],
    ['ES256 header with a P-384 key', manual(p384, { alg: 'ES256' }, 'sha256', 'ieee-p1363')],
    ['a signature over another payload', `${hd}.${otherPayload}.${sg}`],
    ['a signature with characters outside base64url', `${hd}.${pl}.${sg.slice(0, -2)}+/`],
    ['a payload that is not an object', `${hd}.${Buffer.from('[1]').toString('base64url')}.${sg}`],
    ['four segments', `${good}.${sg}`],
    ['an RSA key under 2048 bits', manual(rsa1024, { alg: 'RS256' }, 'sha256')],
  ];
  for (const [what, value] of hostile) {
    const r = await token(value);
    t.equal(r.statusCode, 400, what);
    t.equal(r.json().error, 'invalid_dpop_proof', what);
  }
  t.equal((await token(good)).statusCode, 200, 'the untouched proof is accepted');
});
