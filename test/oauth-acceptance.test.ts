// Acceptance: a third-party OAuth client (oauth4webapi) and a gateway-style verifier
// (jose.createRemoteJWKSet) talk to Tessera over real HTTP.
import t from 'tap';
import * as oauth from 'oauth4webapi';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { freePort, harness } from './support/helper.js';
import { createSdkKey } from './support/oauth-helper.js';

t.test('oauth4webapi discovers Tessera, gets tokens both ways, introspects and revokes; jose verifies via the JWKS', async (t) => {
  const port = await freePort();
  const issuerUrl = `http://127.0.0.1:${port}`;
  const h = await harness(t, { env: { TESSERA_ISSUER: issuerUrl } });
  await h.app.listen({ port, host: '127.0.0.1' });
  const key = await createSdkKey(h, await h.user());

  const issuer = new URL(issuerUrl);
  const insecure = { [oauth.allowInsecureRequests]: true };
  const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...insecure }));
  t.equal(as.issuer, issuerUrl);
  t.equal(as.token_endpoint, `${issuerUrl}/oauth/token`);
  t.ok(as.grant_types_supported?.includes('client_credentials'));

  const client: oauth.Client = { client_id: key.client_id };
  const results: Record<string, oauth.TokenEndpointResponse> = {};
  for (const [name, auth] of [
    ['client_secret_basic', oauth.ClientSecretBasic(key.client_secret)],
    ['client_secret_post', oauth.ClientSecretPost(key.client_secret)],
  ] as const) {
    const res = await oauth.clientCredentialsGrantRequest(as, client, auth, { scope: 'api' }, insecure);
    const tokens = await oauth.processClientCredentialsResponse(as, client, res);
    t.equal(tokens.token_type, 'bearer', `${name}: token_type (normalised by the library)`);
    t.equal(tokens.scope, 'api');
    t.equal(tokens.expires_in, 3600);
    results[name] = tokens;
  }

  // A gateway verifies with the remote JWKS (real HTTP, honouring Cache-Control).
  const JWKS = createRemoteJWKSet(new URL(as.jwks_uri!));
  for (const tokens of Object.values(results)) {
    const { payload, protectedHeader } = await jwtVerify(tokens.access_token, JWKS, {
      issuer: issuerUrl,
      audience: issuerUrl,
      typ: 'at+jwt',
      algorithms: ['EdDSA'],
    });
    t.equal(protectedHeader.typ, 'at+jwt');
    t.equal(payload.client_id, key.client_id);
    t.equal(payload.sub, key.client_id);
  }

  // The library's own RFC 9068 resource-server validation agrees.
  const req = new Request(`${issuerUrl}/api/sdk-keys`, { headers: { authorization: `Bearer ${results.client_secret_basic!.access_token}` } });
  const validated = await oauth.validateJwtAccessToken(as, req, issuerUrl, insecure);
  t.equal(validated.client_id, key.client_id);

  // The token works on Tessera's API over HTTP.
  const api = await fetch(`${issuerUrl}/api/sdk-keys`, { headers: { authorization: `Bearer ${results.client_secret_post!.access_token}` } });
  t.equal(api.status, 200);

  // Introspection, then revocation, then introspection again.
  const token = results.client_secret_basic!.access_token;
  const auth = oauth.ClientSecretBasic(key.client_secret);
  const before = await oauth.processIntrospectionResponse(as, client, await oauth.introspectionRequest(as, client, auth, token, insecure));
  t.equal(before.active, true);
  t.equal(before.client_id, key.client_id);
  t.equal(before.scope, 'api');
  await oauth.processRevocationResponse(await oauth.revocationRequest(as, client, oauth.ClientSecretPost(key.client_secret), token, insecure));
  const after = await oauth.processIntrospectionResponse(as, client, await oauth.introspectionRequest(as, client, auth, token, insecure));
  t.same(after, { active: false });
  const revokedApi = await fetch(`${issuerUrl}/api/sdk-keys`, { headers: { authorization: `Bearer ${token}` } });
  t.equal(revokedApi.status, 401);
  // The other token is untouched.
  const other = await oauth.processIntrospectionResponse(
    as,
    client,
    await oauth.introspectionRequest(as, client, auth, results.client_secret_post!.access_token, insecure),
  );
  t.equal(other.active, true);

  // A wrong secret: 401 invalid_client with a Basic challenge, which the library surfaces as such.
  const bad = await oauth.clientCredentialsGrantRequest(as, client, oauth.ClientSecretBasic('wrong'), {}, insecure);
  t.equal(bad.status, 401);
  t.same(await bad.clone().json(), { error: 'invalid_client', error_description: 'client authentication failed' });
  await t.rejects(oauth.processClientCredentialsResponse(as, client, bad), { name: 'WWWAuthenticateChallengeError' });
});
