// Client assertions (RFC 7523 §3) checked claim by claim at the token endpoint: the signature is
// verified with node:crypto against the registered key, then each claim; an assertion signed by the
// right key with one claim or header member wrong gets invalid_client, never a 500.
import t from 'tap';
import { KeyObject as NodeKeyObject, randomUUID, sign as nodeSign } from 'node:crypto';
import { CompactSign, exportJWK, generateKeyPair, type CryptoKey, type KeyObject } from 'jose';
import { harness } from './support/helper.js';
import { FORM, createSdkKey } from './support/oauth-helper.js';
import { JWT_BEARER_ASSERTION } from '../src/oauth/client-assertion.js';

t.test('each claim and header member of a client assertion is checked', async (t) => {
  const issuer = 'https://auth.example.com';
  const h = await harness(t, { env: { TESSERA_ISSUER: issuer } });
  const user = await h.user();
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const key = await createSdkKey(h, user, { name: 'claims', scopes: ['api'], token_endpoint_auth_method: 'private_key_jwt', jwk: await exportJWK(publicKey) });
  const clientId = key.client_id;

  const sign = (payload: unknown, header: Record<string, unknown> = { alg: 'ES256' }, signer: CryptoKey | KeyObject = privateKey) =>
    new CompactSign(new TextEncoder().encode(JSON.stringify(payload))).setProtectedHeader(header as { alg: string }).sign(signer);
  const claims = (change: Record<string, unknown> = {}) => {
    const now = Math.floor(Date.now() / 1000);
    const base: Record<string, unknown> = { iss: clientId, sub: clientId, aud: `${issuer}/oauth/token`, iat: now, exp: now + 60, jti: randomUUID() };
    for (const [k, v] of Object.entries(change)) {
      if (v === undefined) delete base[k];
      else base[k] = v;
    }
    return base;
  };
  const token = (assertion: string) =>
    h.inject({
      method: 'POST',
      url: '/oauth/token',
      headers: { 'content-type': FORM },
      payload: new URLSearchParams({
        grant_type: 'client_credentials',
        client_id: clientId,
        client_assertion_type: JWT_BEARER_ASSERTION,
        client_assertion: assertion,
      }).toString(),
    });
  const refused = async (what: string, assertion: string) => {
    const res = await token(assertion);
    t.equal(res.statusCode, 401, what);
    t.equal(res.json().error, 'invalid_client', what);
  };

  t.equal((await token(await sign(claims()))).statusCode, 200, 'a well-formed assertion');
  t.equal((await token(await sign(claims({ aud: ['https://other.example', issuer] })))).statusCode, 200, 'aud as an array naming the issuer');
  const now = Math.floor(Date.now() / 1000);
  t.equal((await token(await sign(claims({ iat: undefined })))).statusCode, 200, 'iat is optional');

  await refused('no exp', await sign(claims({ exp: undefined })));
  await refused('exp not a number', await sign(claims({ exp: String(now + 60) })));
  await refused('nbf in the future', await sign(claims({ nbf: now + 600 })));
  await refused('nbf not a number', await sign(claims({ nbf: 'soon' })));
  await refused('iat not a number', await sign(claims({ iat: 'now' })));
  await refused('sub differs', await sign(claims({ sub: 'someone-else' })));
  await refused('no iss', await sign(claims({ iss: undefined })));
  await refused('aud of numbers', await sign(claims({ aud: [1, 2] })));
  await refused('aud missing', await sign(claims({ aud: undefined })));
  await refused('an empty jti', await sign(claims({ jti: '' })));
  await refused('a payload that is not an object', await sign([claims()]));
  // jose will not sign a header with an extension it does not know: signed here with node:crypto.
  const rawSign = (header: object, payload: object) => {
    const input = `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}`;
    const key = privateKey instanceof NodeKeyObject ? privateKey : NodeKeyObject.from(privateKey as CryptoKey);
    return `${input}.${nodeSign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
  };
  t.equal((await token(rawSign({ alg: 'ES256' }, claims()))).statusCode, 200, 'the hand-signed form is accepted without crit');
  await refused('a critical header member', rawSign({ alg: 'ES256', crit: ['exp'], exp: 1 }, claims()));
  await refused('an algorithm other than the key’s', await sign(claims(), { alg: 'ES384' }, (await generateKeyPair('ES384')).privateKey));
  await refused(
    'alg none',
    `${Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url')}.${Buffer.from(JSON.stringify(claims())).toString('base64url')}.`,
  );
  const good = await sign(claims());
  const [hd, pl, sig] = good.split('.') as [string, string, string];
  await refused('a payload changed after signing', `${hd}.${Buffer.from(JSON.stringify(claims({ scope: 'admin' }))).toString('base64url')}.${sig}`);
  await refused('not base64url', `${hd}.${pl}.${sig}=`);
  await refused('four segments', `${good}.x`);
});
