// The TypeScript client's proof of possession against a real listening Tessera: a key pair made
// locally and registered through the API (private_key_jwt, no secret anywhere), DPoP-bound tokens
// used with proofs, and the use_dpop_nonce retry at the token endpoint and at the API.
import t from 'tap';
import { ClientCredentials, ClientCredentialsAuth, DpopKey, PrivateKeyJwt } from '../src/client/index.js';
import { freePort, harness } from './support/helper.js';
import { claimsOf } from './support/oauth-helper.js';

for (const nonce of ['off', 'on']) {
  t.test(`private_key_jwt registration and DPoP-bound tokens through the client (nonces ${nonce})`, async (t) => {
    const port = await freePort();
    const issuer = `http://127.0.0.1:${port}`;
    const h = await harness(t, { env: { TESSERA_ISSUER: issuer, TESSERA_DPOP_NONCE: nonce } });
    await h.app.listen({ port, host: '127.0.0.1' });
    const user = await h.user();
    const apiToken = await h.apiToken(user, ['api']);

    const {
      auth: keyAuth,
      privateJwk,
      clientId,
    } = await PrivateKeyJwt.register({ issuer, apiToken, name: 'laptop', scopes: ['api'], dpopBoundAccessTokens: true });
    t.ok(privateJwk.d, 'the private half stays with the caller');
    const row = await h.db
      .selectFrom('sdk_keys')
      .select(['secret_hash', 'public_jwk', 'dpop_bound_access_tokens'])
      .where('client_id', '=', clientId)
      .executeTakeFirstOrThrow();
    t.equal(row.secret_hash, null);
    t.notOk(row.public_jwk && 'd' in row.public_jwk, 'only the public half is registered');
    t.equal(row.dpop_bound_access_tokens, true);

    // Without DPoP, the key gets nothing.
    const bearerOnly = new ClientCredentials({ issuer, privateKeyJwt: keyAuth });
    await t.rejects(bearerOnly.getToken(), { code: 'invalid_request' });

    const dpop = await DpopKey.generate('ES256');
    const credentials = new ClientCredentials({ issuer, privateKeyJwt: await PrivateKeyJwt.fromJwk(clientId, privateJwk), dpop });
    const token = await credentials.getAccessToken();
    t.equal(token.tokenType, 'DPoP');
    t.same(claimsOf(token.accessToken).cnf, { jkt: await dpop.thumbprint() });

    const auth = new ClientCredentialsAuth(credentials);
    for (const path of ['/api/users/me', '/gateway/verify', '/api/users/me']) {
      const res = await auth.fetch(`${issuer}${path}`);
      t.equal(res.status, 200, path);
    }
    const asBearer = await fetch(`${issuer}/api/users/me`, { headers: { authorization: `Bearer ${token.accessToken}` } });
    t.equal(asBearer.status, 401, 'the same token as a bearer token');
  });
}
