// The client's compact JWS check (node:crypto): each of Tessera's algorithms verifies with a key of
// its own type, and a key of another type or size, another algorithm, or altered bytes are refused.
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import t from 'tap';
import { exportJWK, importJWK, SignJWT } from 'jose';
import { JwsRefused, verifyCompactJws } from '../src/client/jws.js';

const ALL = ['EdDSA', 'ES256', 'RS256'];

const pairs = {
  EdDSA: generateKeyPairSync('ed25519'),
  ES256: generateKeyPairSync('ec', { namedCurve: 'P-256' }),
  RS256: generateKeyPairSync('rsa', { modulusLength: 2048 }),
};

const jws = (alg: string, privateKey: KeyObject, claims: Record<string, unknown> = { jti: 'j1' }) =>
  new SignJWT(claims).setProtectedHeader({ alg, kid: 'k1', typ: 'secevent+jwt' }).sign(privateKey);

const refusal = async (p: Promise<unknown>) => {
  try {
    await p;
    return 'accepted';
  } catch (err) {
    return err instanceof JwsRefused ? 'refused' : `threw ${(err as Error).name}: ${(err as Error).message}`;
  }
};

for (const [alg, pair] of Object.entries(pairs)) {
  t.test(`${alg}: verifies with its key, as a KeyObject and as the WebCrypto key jose hands out`, async (t) => {
    const token = await jws(alg, pair.privateKey, { jti: 'j1', n: 1 });
    const webKey = await importJWK(await exportJWK(pair.publicKey), alg);
    for (const key of [pair.publicKey, webKey]) {
      const { header, payload } = await verifyCompactJws(token, async () => key, ALL);
      t.equal(header.alg, alg);
      t.same(payload, { jti: 'j1', n: 1 });
    }
    t.equal(
      await refusal(
        verifyCompactJws(
          token,
          async () => pair.publicKey,
          ALL.filter((a) => a !== alg),
        ),
      ),
      'refused',
      'not an allowed algorithm',
    );
    const other = Object.entries(pairs).find(([a]) => a !== alg)![1];
    t.equal(await refusal(verifyCompactJws(token, async () => other.publicKey, ALL)), 'refused', 'a key of another type');
    t.equal(await refusal(verifyCompactJws(token, async () => pair.privateKey, ALL)), 'refused', 'a private key');
    const [h, p, s] = token.split('.') as [string, string, string];
    const sig = Buffer.from(s, 'base64url');
    sig[0] = sig[0]! ^ 1;
    t.equal(await refusal(verifyCompactJws(`${h}.${p}.${sig.toString('base64url')}`, async () => pair.publicKey, ALL)), 'refused', 'a changed signature');
    t.equal(await refusal(verifyCompactJws(`${h}.${p}.${s.slice(0, 20)}`, async () => pair.publicKey, ALL)), 'refused', 'a short signature');
  });
}

t.test('keys too weak or on another curve are refused before the signature counts', async (t) => {
  const rsa1024 = generateKeyPairSync('rsa', { modulusLength: 1024 });
  const input = `${Buffer.from(JSON.stringify({ alg: 'RS256', kid: 'k1' })).toString('base64url')}.${Buffer.from('{}').toString('base64url')}`;
  const weak = `${input}.${sign('sha256', Buffer.from(input), rsa1024.privateKey).toString('base64url')}`;
  t.equal(await refusal(verifyCompactJws(weak, async () => rsa1024.publicKey, ALL)), 'refused', 'RSA under 2048 bits');
  const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });
  const es384 = await jws('ES384', p384.privateKey);
  t.equal(await refusal(verifyCompactJws(es384, async () => p384.publicKey, [...ALL, 'ES384'])), 'refused', 'ES384 is not a Tessera algorithm');
  const [, p, s] = es384.split('.');
  const relabelled = `${Buffer.from(JSON.stringify({ alg: 'ES256', kid: 'k1' })).toString('base64url')}.${p}.${s}`;
  t.equal(await refusal(verifyCompactJws(relabelled, async () => p384.publicKey, ALL)), 'refused', 'an ES256 header over a P-384 key');
  t.equal(await refusal(verifyCompactJws(await jws('EdDSA', pairs.EdDSA.privateKey), async () => new Uint8Array(32), ALL)), 'refused', 'a symmetric key');
});

t.test('malformed input is refused without asking for a key', async (t) => {
  let asked = 0;
  const lookup = async () => {
    asked++;
    return pairs.EdDSA.publicKey;
  };
  const good = await jws('EdDSA', pairs.EdDSA.privateKey);
  const [h, p, s] = good.split('.') as [string, string, string];
  const enc = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const bad = [
    '',
    'a.b',
    `${good}.x`,
    `.${p}.${s}`,
    `${h}.${p}.`,
    `${h}.${p}=.${s}`,
    `${enc([1])}.${p}.${s}`,
    `${enc('EdDSA')}.${p}.${s}`,
    `${Buffer.from('{"alg":').toString('base64url')}.${p}.${s}`,
    `${enc({ alg: 'none' })}.${p}.`,
    `${enc({ alg: 'none' })}.${p}.${s}`,
    `${enc({ alg: 'HS256', kid: 'k1' })}.${p}.${s}`,
    `${enc({ kid: 'k1' })}.${p}.${s}`,
    `${enc({ alg: 'EdDSA', crit: ['b64'], b64: false })}.${p}.${s}`,
    `${h}.${p}.${'A'.repeat(20_000)}`,
  ];
  for (const b of bad) t.equal(await refusal(verifyCompactJws(b, lookup, ALL)), 'refused', b.slice(0, 60));
  t.equal(asked, 0);
  t.equal(await refusal(verifyCompactJws(`${h}.${enc([1, 2])}.${s}`, lookup, ALL)), 'refused', 'a signature over another payload');
});

t.test("a lookup's own error passes through unchanged (the caller tells an unknown kid from a refusal)", async (t) => {
  const err = Object.assign(new Error('no key'), { code: 'ERR_JWKS_NO_MATCHING_KEY' });
  await t.rejects(
    verifyCompactJws(await jws('EdDSA', pairs.EdDSA.privateKey), async () => Promise.reject(err), ALL),
    err,
  );
});
