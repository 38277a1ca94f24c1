// The peer: panva's oidc-provider (v9) set up for client_credentials the way a resource-server
// deployment would run it: static confidential clients (client_secret_basic), resource indicators
// with JWT access tokens signed EdDSA (Ed25519), token introspection, in-memory adapter (its default).
// Without a `resource` parameter the client_credentials grant issues an opaque token (stored in the
// in-memory adapter), which the introspection scenario checks.
//
// env: PORT, BENCH_CLIENTS_FILE (JSON [[client_id, client_secret], ...])
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import Provider, { errors } from 'oidc-provider';
import { exportJWK, generateKeyPair } from 'jose';

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const RESOURCE = 'urn:bench:api';

const clients = JSON.parse(readFileSync(process.env.BENCH_CLIENTS_FILE, 'utf8')).map(([client_id, client_secret]) => ({
  client_id,
  client_secret,
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  token_endpoint_auth_method: 'client_secret_basic',
  scope: 'api',
}));

const { privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
const signingKey = { ...(await exportJWK(privateKey)), kid: 'bench-ed25519', alg: 'EdDSA', use: 'sig' };

const provider = new Provider(issuer, {
  clients,
  jwks: { keys: [signingKey] },
  scopes: ['api'],
  // The only key is Ed25519, so every client signs with EdDSA by default.
  clientDefaults: { id_token_signed_response_alg: 'EdDSA', grant_types: ['client_credentials'], response_types: [] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  ttl: { ClientCredentials: 3600 },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (_ctx, _client, oneOf) => oneOf,
      useGrantedResource: async () => false,
      getResourceServerInfo: async (_ctx, resourceIndicator) => {
        if (resourceIndicator !== RESOURCE) throw new errors.InvalidTarget();
        return {
          scope: 'api',
          audience: RESOURCE,
          accessTokenTTL: 3600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'EdDSA' } },
        };
      },
    },
  },
});
// Keep oidc-provider's own error logging quiet under load; failures show up as non-2xx anyway.
provider.on('server_error', (_ctx, err) => process.stderr.write(`server_error: ${err?.stack ?? err}\n`));

const server = http.createServer(provider.callback());
server.keepAliveTimeout = 65_000;
// The same accept queue as Tessera (src/server.ts), so a connection burst treats both alike.
server.listen(port, '127.0.0.1', 4096);
const stop = () => server.close(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
