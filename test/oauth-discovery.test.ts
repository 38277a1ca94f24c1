import t from 'tap';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { harness } from './support/helper.js';
import { createSdkKey, getToken, headerOf } from './support/oauth-helper.js';
import { createDb } from '../src/platform/database/database.js';
import { SigningKeyStore } from '../src/signing-keys/key-store.js';

t.test('discovery metadata lists every endpoint, grant, auth method and algorithm', async (t) => {
  const h = await harness(t);
  const res = await h.inject({ method: 'GET', url: '/.well-known/oauth-authorization-server' });
  t.equal(res.statusCode, 200);
  t.equal(res.headers['cache-control'], `public, max-age=${h.config.jwksMaxAgeSeconds}`);
  const iss = h.config.issuer;
  t.same(res.json(), {
    issuer: iss,
    token_endpoint: `${iss}/oauth/token`,
    jwks_uri: `${iss}/.well-known/jwks.json`,
    introspection_endpoint: `${iss}/oauth/introspect`,
    revocation_endpoint: `${iss}/oauth/revoke`,
    scopes_supported: ['api', 'quantum_tokens', 'introspect', 'events:read'],
    response_types_supported: [],
    grant_types_supported: ['client_credentials'],
    token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'private_key_jwt'],
    introspection_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'private_key_jwt'],
    revocation_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'private_key_jwt'],
    token_endpoint_auth_signing_alg_values_supported: ['ES256', 'ES384', 'EdDSA', 'Ed25519', 'PS256', 'RS256'],
    introspection_endpoint_auth_signing_alg_values_supported: ['ES256', 'ES384', 'EdDSA', 'Ed25519', 'PS256', 'RS256'],
    revocation_endpoint_auth_signing_alg_values_supported: ['ES256', 'ES384', 'EdDSA', 'Ed25519', 'PS256', 'RS256'],
    dpop_signing_alg_values_supported: ['ES256', 'ES384', 'EdDSA', 'Ed25519', 'PS256', 'RS256'],
    service_documentation: `${iss}/docs`,
    access_token_signing_alg_values_supported: ['EdDSA'],
  });
});

t.test('JWKS: public members only, distinct kids, Cache-Control max-age below the pre-publication window, ETag and 304', async (t) => {
  const h = await harness(t);
  const res = await h.inject({ method: 'GET', url: '/.well-known/jwks.json' });
  t.equal(res.statusCode, 200);
  const maxAge = Number(/max-age=(\d+)/.exec(res.headers['cache-control'] as string)?.[1]);
  t.equal(maxAge, h.config.jwksMaxAgeSeconds);
  t.ok(maxAge < h.config.keyPrepublishSeconds, 'max-age shorter than the pre-publication window');
  const etag = res.headers.etag as string;
  t.match(etag, /^"[A-Za-z0-9_-]+"$/);
  const { keys } = res.json();
  t.equal(keys.length, 1);
  for (const k of keys) {
    t.notOk('d' in k || 'p' in k || 'q' in k, 'no private members');
    t.same(Object.keys(k).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x']);
    t.equal(k.use, 'sig');
    t.equal(k.alg, 'EdDSA');
  }
  const again = await h.inject({ method: 'GET', url: '/.well-known/jwks.json', headers: { 'if-none-match': etag } });
  t.equal(again.statusCode, 304);
  t.equal(again.body, '');
  t.equal(again.headers.etag, etag);

  // A second key changes the ETag, and kids are distinct.
  const row = await h.db.selectFrom('signing_keys').selectAll().executeTakeFirstOrThrow();
  await h.db.updateTable('signing_keys').set({ state: 'retired' }).where('kid', '=', row.kid).execute();
  await h.app.oauth.keys.ensureActiveKey();
  await h.app.oauth.keys.reload();
  const two = await h.inject({ method: 'GET', url: '/.well-known/jwks.json', headers: { 'if-none-match': etag } });
  t.equal(two.statusCode, 200);
  t.not(two.headers.etag, etag);
  const kids = two.json().keys.map((k: { kid: string }) => k.kid);
  t.equal(new Set(kids).size, 2);

  // Stored private keys are sealed, never in the clear.
  const stored = await h.db.selectFrom('signing_keys').selectAll().execute();
  for (const s of stored) {
    t.equal(s.master_key_id, h.config.masterKey.id);
    t.notOk('d' in s.public_jwk);
  }
});

for (const alg of ['ES256', 'RS256'] as const) {
  t.test(`TESSERA_SIGNING_ALG=${alg} signs and publishes ${alg} keys`, async (t) => {
    const h = await harness(t, { env: { TESSERA_SIGNING_ALG: alg } });
    const key = await createSdkKey(h, await h.user());
    const token = await getToken(h, key);
    t.equal(headerOf(token).alg, alg);
    const jwks = (await h.inject({ method: 'GET', url: '/.well-known/jwks.json' })).json();
    const { payload } = await jwtVerify(token, createLocalJWKSet(jwks), {
      issuer: h.config.issuer,
      audience: h.config.issuer,
      typ: 'at+jwt',
      currentDate: new Date(h.clock.now()),
    });
    t.equal(payload.client_id, key.client_id);
    const res = await h.inject({ method: 'GET', url: '/api/sdk-keys', headers: { authorization: `Bearer ${token}` } });
    t.equal(res.statusCode, 200);
    const meta = (await h.inject({ method: 'GET', url: '/.well-known/oauth-authorization-server' })).json();
    t.same(meta.access_token_signing_alg_values_supported, [alg]);
  });
}

t.test('instances racing at start create exactly one active key', async (t) => {
  const h = await harness(t);
  await h.db.deleteFrom('signing_keys').execute();
  const handles = Array.from({ length: 6 }, () => createDb({ connectionString: h.connectionString, max: 2 }));
  t.teardown(async () => {
    for (const x of handles) await x.close();
  });
  const log = { info() {}, warn() {}, error() {} };
  const stores = handles.map((x) => new SigningKeyStore({ db: x.db, config: h.config, clock: h.clock, log }));
  await Promise.all(stores.map((s) => s.ensureActiveKey()));
  const rows = await h.db.selectFrom('signing_keys').selectAll().execute();
  t.equal(rows.length, 1, 'one key made');
  t.equal(rows[0]!.state, 'active');
  await Promise.all(stores.map((s) => s.reload()));
  t.equal(new Set(stores.map((s) => s.signingKey().kid)).size, 1, 'every instance signs with it');
  // The database refuses a second active key whoever tries.
  await t.rejects(
    h.db
      .insertInto('signing_keys')
      .values({ ...rows[0]!, kid: 'second', public_jwk: JSON.stringify(rows[0]!.public_jwk), created_at: undefined as never })
      .execute(),
    /signing_keys_one_active/,
  );
});

t.test('a signing_keys change event reloads every instance', async (t) => {
  const h = await harness(t);
  const other = await h.instance();
  const before = other.oauth.keys.signingKey().kid;
  await h.db.updateTable('signing_keys').set({ state: 'retired' }).where('kid', '=', before).execute();
  await h.app.oauth.keys.ensureActiveKey(); // publishes signing_keys
  let now = before;
  for (let i = 0; i < 20 && now === before; i++) {
    await new Promise((r) => setTimeout(r, 50));
    now = other.oauth.keys.signingKey().kid;
  }
  t.not(now, before, 'the other instance switched keys within a second');
});
