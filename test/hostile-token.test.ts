// Hostile input at the token endpoint. Each answer: a 4xx RFC 6749 §5.2 JSON body, no
// stack, no-store, and the database unchanged. Cases already in oauth-token.test.ts (JSON body,
// > 16 KiB body, duplicates, unknown grant, query credentials, Basic plus body, `Basic !!!`) are
// not repeated here.
import t, { type Test } from 'tap';
import http from 'node:http';
import type { LightMyRequestResponse } from 'fastify';
import { harness } from './support/helper.js';
import { basic, createSdkKey, FORM, oauthPost } from './support/oauth-helper.js';
import { databaseDigest, leaksInternals } from './support/db-digest.js';
import { hashSecret } from '../src/platform/crypto/secrets.js';
import { insertSdkKey } from '../src/oauth/sdk-keys.repository.js';
import { verifyClientCredentials, type ClientAuthDeps } from '../src/oauth/client-auth.js';
import { parseForm } from '../src/platform/http/form.js';

const CC = 'grant_type=client_credentials';

function expectOAuth(t: Test, res: LightMyRequestResponse, status: number, error: string, name: string): void {
  t.equal(res.statusCode, status, `${name}: status (${res.body.slice(0, 200)})`);
  t.match(res.headers['content-type'], /^application\/json/, `${name}: JSON`);
  const b = res.json();
  t.same(Object.keys(b).sort(), ['error', 'error_description'], `${name}: RFC 6749 §5.2 shape`);
  t.equal(b.error, error, `${name}: error code`);
  t.notOk(leaksInternals(res.body), `${name}: no internals`);
  t.equal(res.headers['cache-control'], 'no-store', `${name}: no-store`);
}

t.test('hostile requests to /oauth/token: 4xx RFC bodies, never 500, database unchanged', async (t) => {
  const h = await harness(t);
  const user = await h.user();
  const key = await createSdkKey(h, user);
  const auth = { authorization: basic(key.client_id, key.client_secret) };
  const raw = (payload: string, headers: Record<string, string> = {}, method: 'POST' | 'GET' | 'PUT' = 'POST', url = '/oauth/token') =>
    h.inject({ method, url, headers: { 'content-type': FORM, ...auth, ...headers }, payload: method === 'GET' ? undefined : payload });
  await new Promise((r) => setTimeout(r, 200));
  const before = await databaseDigest(h.db);

  const get = await h.inject({ method: 'GET', url: '/oauth/token', headers: auth });
  expectOAuth(t, get, 405, 'invalid_request', 'GET');
  t.equal(get.headers.allow, 'POST', 'GET: Allow names POST');
  expectOAuth(t, await h.inject({ method: 'POST', url: '/oauth/token', headers: auth, payload: CC }), 415, 'invalid_request', 'no content type');
  const textPlain = await raw(CC, { 'content-type': 'text/plain' });
  t.ok([400, 415].includes(textPlain.statusCode), 'text/plain: 400 or 415');
  expectOAuth(t, textPlain, textPlain.statusCode, 'invalid_request', 'text/plain');
  expectOAuth(t, await raw(CC, { 'content-type': 'multipart/form-data; boundary=x' }), 415, 'invalid_request', 'multipart');

  // Broken percent-encoding and invalid UTF-8: the request is malformed, not a different client id.
  for (const body of [`${CC}&scope=%zz`, `${CC}&scope=api%`, `${CC}&scope=%E0%A4`, `${CC}&scope=%FF`, `${CC}%2`, `%=x&${CC}`]) {
    expectOAuth(t, await raw(body), 400, 'invalid_request', `percent-encoding: ${body}`);
  }
  expectOAuth(t, await raw(`${CC}&client_id=%zz&client_secret=x`, { authorization: '' }), 400, 'invalid_request', 'broken client_id escape');

  // Parameter names are 1*name-char (Appendix A): no qs-style nesting, no prototype games.
  for (const body of [`${CC}&scope[a]=b`, `${CC}&scope[]=api`, `${CC}&__proto__[x]=1`, `grant_type[0]=client_credentials`, `${CC}&a%00b=1`, `${CC}&a+b=1`]) {
    expectOAuth(t, await raw(body), 400, 'invalid_request', `parameter name: ${body}`);
  }

  // Empty values count as omitted (§3.1).
  expectOAuth(t, await raw('grant_type='), 400, 'invalid_request', 'empty grant_type');
  expectOAuth(t, await raw(''), 400, 'invalid_request', 'empty body');
  expectOAuth(t, await raw('grant_type=client_credentials&client_id=&client_secret=', { authorization: '' }), 401, 'invalid_client', 'empty credentials');
  for (const body of [`${CC}&scope=`, `${CC}&resource=&audience=`, `${CC}&client_secret=`]) {
    const ok = await raw(body);
    t.equal(ok.statusCode, 200, `empty parameters are omitted: ${body}`);
    t.equal(ok.json().scope, 'api quantum_tokens');
  }

  // Malformed Basic headers.
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  for (const a of [
    'Basic',
    'Basic ',
    `Basic ${b64(key.client_id)}`,
    `Basic ${b64(':' + key.client_secret)}`,
    'Basic ====',
    `Basic ${b64(key.client_id + ':' + key.client_secret)} extra`,
    `Digest ${b64('a:b')}`,
    `basic${b64('a:b')}`,
  ]) {
    expectOAuth(t, await raw(CC, { authorization: a }), 401, 'invalid_client', `malformed Authorization: ${a.slice(0, 30)}`);
  }

  // Hostile client ids, in Basic and in the body: one invalid_client for all, no database error leaks.
  const uuid = key.client_id.slice(2);
  const hostileIds = [
    `ѕ_${uuid}`, // Cyrillic dze
    `s_${uuid.replace(/[0-9]/, '０')}`, // full-width digit
    `S_${uuid}`,
    `${key.client_id}\u0000`,
    `\u0000${key.client_id}`,
    `${key.client_id}\u200b`,
    `s_' OR '1'='1`,
    `${key.client_id}'; drop table sdk_keys; --`,
    'x'.repeat(10 * 1024),
  ];
  for (const id of hostileIds) {
    const name = `client id ${JSON.stringify(id.slice(0, 40))}`;
    expectOAuth(t, await raw(CC, { authorization: basic(id, key.client_secret) }), 401, 'invalid_client', `${name} (Basic)`);
    const post = new URLSearchParams({ grant_type: 'client_credentials', client_id: id, client_secret: key.client_secret }).toString();
    expectOAuth(t, await raw(post, { authorization: '' }), 401, 'invalid_client', `${name} (body)`);
  }
  // A 500 KB secret: in the body the 16 KiB limit answers first; in Basic it is refused unhashed.
  expectOAuth(
    t,
    await raw(new URLSearchParams({ grant_type: 'client_credentials', client_id: key.client_id, client_secret: 'a'.repeat(500 * 1024) }).toString(), {
      authorization: '',
    }),
    413,
    'invalid_request',
    '500 KB secret (body)',
  );
  expectOAuth(t, await raw(CC, { authorization: basic(key.client_id, 'a'.repeat(500 * 1024)) }), 401, 'invalid_client', '500 KB secret (Basic)');
  expectOAuth(t, await raw(CC, { authorization: basic('x'.repeat(10 * 1024), 'a'.repeat(500 * 1024)) }), 401, 'invalid_client', '10 KB id + 500 KB secret');

  // Control characters in scope (and other non-scope-token bytes).
  for (const scope of [
    'api\u0001',
    'api\tquantum_tokens',
    'api\nquantum_tokens',
    'api\u0000',
    'api\u007f',
    'api  quantum_tokens',
    ' api',
    'api\u00a0quantum_tokens',
    'ápi',
    'api"',
  ]) {
    expectOAuth(
      t,
      await raw(new URLSearchParams({ grant_type: 'client_credentials', scope }).toString()),
      400,
      'invalid_scope',
      `scope ${JSON.stringify(scope)}`,
    );
  }
  // Other methods on the endpoint.
  expectOAuth(t, await raw(CC, {}, 'PUT'), 405, 'invalid_request', 'PUT');

  await h.app.usage.flush();
  t.same(await databaseDigest(h.db), before, 'the database is unchanged');
});

t.test('secrets holding ":", "%" and "+" authenticate when form-encoded per RFC 6749 §2.3.1, and only then', async (t) => {
  const h = await harness(t);
  const user = await h.user();
  const clientId = 's_0b4a8a52-6a43-4c3c-9f63-9a3c2b8d1e07';
  const secret = 'p:a%2Bss+w rd:%41é';
  await insertSdkKey(h.db, {
    clientId,
    userId: user.id,
    name: 'odd',
    secretHash: hashSecret(h.config.pepper, secret, 'sdk_key'),
    scopes: ['api'],
    organizationId: null,
  });
  const encoded = basic(clientId, secret);
  t.equal((await oauthPost(h, '/oauth/token', { grant_type: 'client_credentials' }, { authorization: encoded })).statusCode, 200, 'Basic, form-encoded');
  t.equal(
    (await oauthPost(h, '/oauth/token', { grant_type: 'client_credentials', client_id: clientId, client_secret: secret })).statusCode,
    200,
    'client_secret_post',
  );
  // The same bytes not encoded: "+" means space and "%2B" means "+", so the secret differs (and ":" splits at the first).
  const unencoded = `Basic ${Buffer.from(`${clientId}:${secret.replace('%2B', '%252B')}`).toString('base64')}`;
  const res = await oauthPost(h, '/oauth/token', { grant_type: 'client_credentials' }, { authorization: unencoded });
  t.equal(res.statusCode, 401);
  t.same(res.json(), { error: 'invalid_client', error_description: 'client authentication failed' });
  const brokenEscape = `Basic ${Buffer.from(`${clientId}:abc%zz`).toString('base64')}`;
  t.equal((await oauthPost(h, '/oauth/token', { grant_type: 'client_credentials' }, { authorization: brokenEscape })).statusCode, 401);
});

t.test('10 KB ids and 500 KB secrets are refused before any look-up or hashing of the secret', async (t) => {
  const hashed: number[] = [];
  let lookups = 0;
  const deps: ClientAuthDeps = {
    lookup: () => {
      lookups++;
      return null;
    },
    hash: (s) => {
      hashed.push(s.length);
      return Buffer.alloc(32);
    },
    compare: () => false,
  };
  const err = await verifyClientCredentials({ method: 'client_secret_basic', clientId: 'x'.repeat(10 * 1024), secret: 's'.repeat(500 * 1024) }, deps).catch(
    (e) => e,
  );
  t.equal(err.error, 'invalid_client');
  t.equal(lookups, 0, 'no look-up for an id that is not ours');
  t.ok(
    hashed.every((n) => n <= 512),
    'the 500 KB secret itself is never hashed',
  );
});

t.test('the strict form parser', async (t) => {
  t.same({ ...parseForm('a=1&b=x+y&c=%2B&d=&e') }, { a: '1', b: 'x y', c: '+', d: '', e: '' });
  t.same({ ...parseForm('a=1&a=2') }, { a: ['1', '2'] });
  t.equal(Object.getPrototypeOf(parseForm('__proto__=x')), null);
  t.equal(parseForm('__proto__=x')['__proto__'], 'x');
  t.equal(parseForm('constructor=x').constructor, 'x');
  for (const bad of ['a=%', 'a=%z1', 'a=%C3', '%ZZ=1', 'a=%ED%A0%80']) {
    let status = 0;
    try {
      parseForm(bad);
    } catch (err) {
      status = (err as { statusCode: number }).statusCode;
    }
    t.equal(status, 400, bad);
  }
});

t.test('over real HTTP: oversized and malformed headers get a JSON 4xx from the transport, never a hang or a 500', async (t) => {
  const h = await harness(t);
  await h.app.listen({ port: 0, host: '127.0.0.1' });
  const port = (h.app.server.address() as { port: number }).port;
  const send = (headers: Record<string, string>) =>
    new Promise<{ status: number; body: string; type: string | undefined }>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/oauth/token', headers: { 'content-type': FORM, ...headers } }, (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, body, type: res.headers['content-type'] }));
      });
      req.on('error', reject);
      req.end(CC);
    });
  const big = await send({ authorization: basic('s_x', 'a'.repeat(500 * 1024)) });
  t.equal(big.status, 431);
  t.match(big.type, /^application\/json/);
  t.equal(JSON.parse(big.body).error, 'invalid_request');
  t.notOk(leaksInternals(big.body));
  // Still serving afterwards.
  const after = await fetch(`http://127.0.0.1:${port}/healthz`);
  t.equal(after.status, 200);
});
