// private_key_jwt (RFC 7523 §2.2): an SDK key registered with a public JWK (no secret exists) and
// a third-party client (oauth4webapi) authenticating with signed assertions over real HTTP;
// replayed, mis-addressed, expired and over-long assertions all get invalid_client.
import t from 'tap';
import { generateKeyPairSync } from 'node:crypto';
import * as oauth from 'oauth4webapi';
import { exportJWK, generateKeyPair } from 'jose';
import { bearer, freePort, harness } from './support/helper.js';
import { FORM, createSdkKey } from './support/oauth-helper.js';

const insecure = { [oauth.allowInsecureRequests]: true } as const;

t.test('oauth4webapi authenticates with PrivateKeyJwt; replays, wrong aud and expired assertions get invalid_client', async (t) => {
  const port = await freePort();
  const issuerUrl = `http://127.0.0.1:${port}`;
  const h = await harness(t, { env: { TESSERA_ISSUER: issuerUrl } });
  await h.app.listen({ port, host: '127.0.0.1' });
  const issuer = new URL(issuerUrl);
  const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...insecure }));
  t.ok(as.token_endpoint_auth_methods_supported?.includes('private_key_jwt'));
  t.ok(as.introspection_endpoint_auth_methods_supported?.includes('private_key_jwt'));
  t.ok(as.token_endpoint_auth_signing_alg_values_supported?.includes('ES256'));

  const user = await h.user();
  const pair = await oauth.generateKeyPair('ES256', { extractable: true });
  const jwk = await exportJWK(pair.publicKey);
  const key = (await createSdkKey(h, user, { name: 'pkjwt', scopes: ['api'], token_endpoint_auth_method: 'private_key_jwt', jwk })) as unknown as Record<
    string,
    unknown
  >;
  t.notOk('client_secret' in key, 'no secret is made or returned');
  t.equal(key.token_endpoint_auth_method, 'private_key_jwt');
  t.same(key.jwk, { kty: 'EC', alg: 'ES256', crv: 'P-256', x: jwk.x, y: jwk.y });
  const row = await h.db
    .selectFrom('sdk_keys')
    .select(['secret_hash', 'public_jwk'])
    .where('client_id', '=', key.client_id as string)
    .executeTakeFirstOrThrow();
  t.equal(row.secret_hash, null, 'no secret hash is stored');
  const rotate = await h.inject({
    method: 'POST',
    url: `/api/sdk-keys/${key.client_id as string}/secret`,
    headers: bearer(await h.apiToken(user, ['api'])),
    payload: {},
  });
  t.equal(rotate.statusCode, 409, 'a key without a secret has none to rotate');
  t.equal(rotate.json().error, 'conflict');

  const client: oauth.Client = { client_id: key.client_id as string };
  const auth = oauth.PrivateKeyJwt(pair.privateKey);
  const sent: string[] = [];
  const recording = {
    ...insecure,
    [oauth.customFetch]: (url: string, init: RequestInit) => {
      sent.push(String(init.body));
      return fetch(url, init);
    },
  };
  const tokens = await oauth.processClientCredentialsResponse(
    as,
    client,
    await oauth.clientCredentialsGrantRequest(as, client, auth, { scope: 'api' }, recording),
  );
  t.equal(tokens.token_type, 'bearer');
  const me = await fetch(`${issuerUrl}/api/users/me`, { headers: bearer(tokens.access_token) });
  t.equal(me.status, 200);

  // Introspection and revocation accept the same method (their own URL as aud works too).
  const intro = await oauth.processIntrospectionResponse(as, client, await oauth.introspectionRequest(as, client, auth, tokens.access_token, insecure));
  t.equal(intro.active, true);

  const expectInvalidClient = async (what: string, res: Response) => {
    t.equal(res.status, 401, what);
    t.equal(((await res.json()) as { error: string }).error, 'invalid_client', what);
  };
  // The same assertion again, here and on another instance.
  await expectInvalidClient('a replayed assertion', await fetch(as.token_endpoint!, { method: 'POST', headers: { 'content-type': FORM }, body: sent[0] }));
  const other = await h.instance();
  const fresh = await oauth.clientCredentialsGrantRequest(as, client, auth, {}, recording);
  t.equal(fresh.status, 200);
  const onOther = await other.inject({ method: 'POST', url: '/oauth/token', headers: { 'content-type': FORM }, payload: sent[1] });
  t.equal(onOther.statusCode, 401, 'replayed on a second instance');
  t.equal(onOther.json().error, 'invalid_client');

  const modified = (change: (payload: Record<string, unknown>) => void) =>
    oauth.clientCredentialsGrantRequest(as, client, oauth.PrivateKeyJwt(pair.privateKey, { [oauth.modifyAssertion]: (_h, p) => change(p) }), {}, insecure);
  const now = Math.floor(Date.now() / 1000);
  await expectInvalidClient('a wrong aud', await modified((p) => (p.aud = 'https://other.example')));
  await expectInvalidClient('an expired assertion', await modified((p) => ((p.iat = now - 600), (p.nbf = now - 600), (p.exp = now - 300))));
  await expectInvalidClient('an assertion living too long', await modified((p) => (p.exp = now + 3600)));
  await expectInvalidClient('iss differs from sub', await modified((p) => (p.iss = 'someone-else')));
  await expectInvalidClient('no jti', await modified((p) => delete p.jti));
  t.equal((await modified((p) => (p.aud = `${issuerUrl}/oauth/token`))).status, 200, 'the token endpoint URL as aud');

  // Signed by another key.
  const stranger = await oauth.generateKeyPair('ES256');
  await expectInvalidClient('another key', await oauth.clientCredentialsGrantRequest(as, client, oauth.PrivateKeyJwt(stranger.privateKey), {}, insecure));
  // A secret cannot authenticate this key (it has none), and an assertion cannot authenticate a secret key.
  await expectInvalidClient(
    'a secret for a key without one',
    await oauth.clientCredentialsGrantRequest(as, client, oauth.ClientSecretPost('x'.repeat(43)), {}, insecure),
  );
  const secretKey = await createSdkKey(h, user, { name: 'secret', scopes: ['api'] });
  await expectInvalidClient(
    'an assertion for a secret key',
    await oauth.clientCredentialsGrantRequest(as, { client_id: secretKey.client_id }, oauth.PrivateKeyJwt(pair.privateKey), {}, insecure),
  );
});

t.test('Ed25519 and RSA keys; JWKs with private parts, symmetric keys, short RSA keys and unknown algorithms are refused at creation', async (t) => {
  const h = await harness(t);
  const user = await h.user();
  const token = await h.apiToken(user, ['api']);
  const create = (body: Record<string, unknown>) =>
    h.inject({ method: 'POST', url: '/api/sdk-keys', headers: bearer(token), payload: { name: 'k', scopes: ['api'], ...body } });

  const ed = await generateKeyPair('EdDSA', { extractable: true });
  const edPrivate = await exportJWK(ed.privateKey);
  const rsaShort = generateKeyPairSync('rsa', { modulusLength: 1024 });
  const refused: Array<[string, Record<string, unknown>]> = [
    ['a JWK with d', { token_endpoint_auth_method: 'private_key_jwt', jwk: edPrivate }],
    ['a symmetric key', { token_endpoint_auth_method: 'private_key_jwt', jwk: { kty: 'oct', k: 'c2VjcmV0LXNlY3JldC1zZWNyZXQ' } }],
    ['alg none', { token_endpoint_auth_method: 'private_key_jwt', jwk: { ...(await exportJWK(ed.publicKey)), alg: 'none' } }],
    ['alg HS256', { token_endpoint_auth_method: 'private_key_jwt', jwk: { ...(await exportJWK(ed.publicKey)), alg: 'HS256' } }],
    ['a 1024-bit RSA key', { token_endpoint_auth_method: 'private_key_jwt', jwk: rsaShort.publicKey.export({ format: 'jwk' }) }],
    ['a broken key', { token_endpoint_auth_method: 'private_key_jwt', jwk: { kty: 'EC', crv: 'P-256', x: 'AAAA', y: 'BBBB' } }],
    ['no jwk', { token_endpoint_auth_method: 'private_key_jwt' }],
    ['a jwk with a secret method', { token_endpoint_auth_method: 'client_secret_basic', jwk: await exportJWK(ed.publicKey) }],
    ['a jwk_uri', { token_endpoint_auth_method: 'private_key_jwt', jwks_uri: 'https://example.com/jwks' }],
  ];
  for (const [what, body] of refused) {
    const r = await create(body);
    t.equal(r.statusCode, 400, what);
    t.equal(r.json().error, 'invalid_request', what);
  }
  const made = await create({ jwk: await exportJWK(ed.publicKey) });
  t.equal(made.statusCode, 201, 'a jwk alone means private_key_jwt');
  t.equal(made.json().jwk.alg, 'EdDSA');
  t.notOk('client_secret' in made.json());
  // oauth4webapi signs Ed25519 keys with the fully-specified alg name; both names are accepted.
  const as = { issuer: h.config.issuer, token_endpoint: `${h.config.issuer}/oauth/token` };
  const client = { client_id: made.json().client_id as string };
  const res = await oauth.clientCredentialsGrantRequest(
    as,
    client,
    oauth.PrivateKeyJwt(ed.privateKey as Parameters<typeof oauth.PrivateKeyJwt>[0] & object),
    {},
    {
      ...insecure,
      [oauth.customFetch]: async (_url: string, init: RequestInit) => {
        const r = await h.inject({ method: 'POST', url: '/oauth/token', headers: { 'content-type': FORM }, payload: String(init.body) });
        return new Response(r.body, { status: r.statusCode, headers: { 'content-type': 'application/json' } });
      },
    },
  );
  t.equal(res.status, 200);
});
