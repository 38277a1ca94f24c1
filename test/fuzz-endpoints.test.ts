// Property-based fuzzing of /oauth/token, /oauth/introspect, /oauth/revoke,
// /api/users/loginWithToken and /api/users/logout: random bodies, headers and encodings never
// produce a 5xx, every error is a JSON body with a string `error`, and the database does not
// change. "Change" is precise: every row of every table compared (db-digest.ts) except
// `last_used_at`, which a successful client authentication may stamp. The generators draw
// credentials from a pool of real ones that cannot change state (a logged-out session, another
// client's token, a revoked API token), so the fuzzer reaches deep paths without a legitimate write.
import t from 'tap';
import fc from 'fast-check';
import { bearer, harness } from './support/helper.js';
import { basic, createSdkKey, getToken } from './support/oauth-helper.js';
import { databaseDigest } from './support/db-digest.js';
import { hashApiToken } from '../src/api-tokens/api-token.js';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';

/** DPoP proofs and client assertions no server may accept: none of them can reach the replay record. */
async function hostileJwts(clientId: string): Promise<string[]> {
  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  const privateJwk = await exportJWK(privateKey);
  const { d: _d, ...publicJwk } = privateJwk;
  const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const iat = Math.floor(Date.now() / 1000);
  const claims = { jti: 'fuzz', iat, htm: 'POST', htu: 'http://elsewhere.example/oauth/token', iss: clientId, sub: clientId, aud: 'x', exp: iat + 60 };
  return [
    `${b64({ typ: 'dpop+jwt', alg: 'none', jwk: publicJwk })}.${b64(claims)}.`,
    `${b64({ typ: 'dpop+jwt', alg: 'HS256', jwk: { kty: 'oct', k: 'AAAA' } })}.${b64(claims)}.AAAA`,
    `${b64({ typ: 'dpop+jwt', alg: 'XX512', jwk: publicJwk })}.${b64(claims)}.AAAA`,
    await new SignJWT(claims).setProtectedHeader({ typ: 'dpop+jwt', alg: 'ES256', jwk: privateJwk }).sign(privateKey),
    await new SignJWT(claims).setProtectedHeader({ typ: 'dpop+jwt', alg: 'ES256', jwk: publicJwk }).sign(privateKey),
    await new SignJWT(claims).setProtectedHeader({ alg: 'ES256' }).sign(privateKey),
    'e30.e30.',
    '.'.repeat(5000),
  ];
}

const ENDPOINTS = ['/oauth/token', '/oauth/introspect', '/oauth/revoke', '/api/users/loginWithToken', '/api/users/logout'] as const;
const NUM_RUNS = Number(process.env.FUZZ_RUNS ?? 400);

t.test('random requests to the token and login endpoints: never 5xx, always a JSON error, database unchanged', async (t) => {
  const h = await harness(t);
  const [alice, bob] = await Promise.all([h.user(), h.user()]);
  const keyA = await createSdkKey(h, alice);
  const keyB = await createSdkKey(h, bob);
  const jwtB = await getToken(h, keyB); // live, but not keyA's: revoking it as keyA is refused
  const revokedPat = await h.apiToken(alice, ['api']);
  const pat = await h.apiToken(alice, ['api', 'introspect']);
  const login = (await h.inject({ method: 'POST', url: '/api/users/loginWithToken', payload: { apiToken: pat } })).json().id as string;
  const loggedOut = (await h.inject({ method: 'POST', url: '/api/users/loginWithToken', payload: { apiToken: pat } })).json().id as string;
  t.equal((await h.inject({ method: 'POST', url: '/api/users/logout', headers: { 'x-access-token': loggedOut } })).statusCode, 204);
  await h.db.updateTable('api_tokens').set({ revoked_at: new Date() }).where('token_hash', '=', hashApiToken(h.config.pepper, revokedPat)).execute();
  t.equal(
    (await h.inject({ method: 'POST', url: '/api/users/loginWithToken', payload: { apiToken: revokedPat } })).statusCode,
    401,
    'the pool API token is revoked',
  );
  await new Promise((r) => setTimeout(r, 300));
  await h.app.usage.flush();
  const before = await databaseDigest(h.db);
  const jwts = await hostileJwts(keyA.client_id);

  // Values that mean something to Tessera, and values that mean nothing.
  const tokens = [jwtB, loggedOut, revokedPat, `${jwtB.slice(0, -4)}AAAA`, 'tsr_ses_' + 'A'.repeat(49), 'tsr_pat_' + 'A'.repeat(49)];
  const printable = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 80 });
  const anyText = fc.oneof(fc.string({ maxLength: 60 }), fc.string({ unit: 'grapheme', maxLength: 30 }), fc.string({ unit: 'binary', maxLength: 30 }));
  const value = fc.oneof(
    fc.constantFrom(
      'client_credentials',
      'password',
      'api',
      'api quantum_tokens',
      'admin',
      keyA.client_id,
      keyA.client_secret,
      keyB.client_id,
      'https://x.example',
      '',
      '%',
      '%zz',
      '%00',
      '\u0000',
      'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      ...tokens,
      ...jwts,
    ),
    anyText,
    fc.string({ maxLength: 3 }).map((s) => s.repeat(2000)),
  );
  const name = fc.oneof(
    fc.constantFrom(
      'grant_type',
      'scope',
      'client_id',
      'client_secret',
      'token',
      'token_type_hint',
      'audience',
      'resource',
      'apiToken',
      'client_assertion',
      'client_assertion_type',
      'scope[a]',
      '__proto__',
      'constructor',
    ),
    anyText,
  );
  const pairs = fc.array(fc.tuple(name, value), { maxLength: 8 });
  const body = fc.oneof(
    pairs.map((p) => ({ kind: 'form', text: new URLSearchParams(p).toString() })),
    pairs.map((p) => ({ kind: 'raw-form', text: p.map(([k, v]) => `${k}=${v}`).join('&') })),
    pairs.map((p) => ({ kind: 'near-valid', text: new URLSearchParams([['grant_type', 'client_credentials'], ['token', jwtB], ...p]).toString() })),
    fc
      .dictionary(name, fc.oneof(value, fc.integer(), fc.boolean(), fc.constant(null), fc.array(value, { maxLength: 3 }), fc.object({ maxDepth: 2 })))
      .map((o) => ({ kind: 'json', text: JSON.stringify(o) })),
    fc.oneof(anyText, fc.json()).map((s) => ({ kind: 'text', text: s })),
    fc.constant({ kind: 'empty', text: '' }),
  );
  const contentType = fc.option(
    fc.oneof(
      fc.constant('application/x-www-form-urlencoded'),
      fc.constantFrom(
        'application/x-www-form-urlencoded',
        'application/x-www-form-urlencoded; charset=utf-8',
        'application/json',
        'text/plain',
        'multipart/form-data; boundary=z',
        'application/x-www-form-urlencoded; charset=latin1',
        'APPLICATION/JSON',
      ),
      printable,
    ),
    { nil: undefined },
  );
  const authorization = fc.option(
    fc.oneof(
      fc.constant(basic(keyA.client_id, keyA.client_secret)),
      fc.constantFrom(
        basic(keyA.client_id, keyA.client_secret),
        basic(keyB.client_id, 'wrong'),
        'Basic',
        'Basic !!!',
        'DPoP',
        ...tokens.map((x) => `Bearer ${x}`),
        ...tokens.map((x) => `DPoP ${x}`),
      ),
      printable,
      fc.tuple(printable, printable).map(([a, b]) => basic(a, b)),
    ),
    { nil: undefined },
  );
  const accessToken = fc.option(fc.oneof(fc.constantFrom(...tokens), printable), { nil: undefined });
  const dpop = fc.option(
    fc.oneof(
      fc.constantFrom(...jwts),
      printable,
      fc.string({ maxLength: 3 }).map((x) => x.repeat(3000)),
    ),
    { nil: undefined },
  );
  const request = fc.record({
    url: fc.oneof(
      fc.constantFrom(...ENDPOINTS),
      fc.constantFrom(...ENDPOINTS),
      fc.tuple(fc.constantFrom(...ENDPOINTS), printable).map(([u, q]) => `${u}?${encodeURIComponent(q)}=1`),
    ),
    method: fc.constantFrom('POST', 'POST', 'POST', 'GET', 'PUT', 'DELETE'),
    body,
    contentType,
    authorization,
    accessToken,
    dpop,
  });

  // Requests that are nearly right, so the fuzzer also walks the paths past validation.
  const knownName = fc.constantFrom('scope', 'audience', 'resource', 'token_type_hint', 'client_id', 'token');
  const nearly = fc
    .record({
      url: fc.constantFrom(...ENDPOINTS),
      extra: fc.array(fc.tuple(knownName, value), { maxLength: 2 }),
      token: fc.constantFrom(...tokens),
      auth: fc.constantFrom(basic(keyA.client_id, keyA.client_secret), `Bearer ${login}`, basic(keyB.client_id, 'wrong')),
      proof: fc.option(fc.constantFrom(...jwts), { nil: undefined }),
    })
    .map(({ url, extra, token, auth, proof }) => {
      if (url === '/api/users/loginWithToken') {
        return {
          url,
          method: 'POST',
          body: { kind: 'json', text: JSON.stringify({ apiToken: token }) },
          contentType: 'application/json',
          authorization: undefined,
          accessToken: undefined,
          dpop: undefined,
        };
      }
      if (url === '/api/users/logout')
        return {
          url,
          method: 'POST',
          body: { kind: 'empty', text: '' },
          contentType: undefined,
          authorization: undefined,
          accessToken: token,
          dpop: undefined,
        };
      const base: Array<[string, string]> = url === '/oauth/token' ? [['grant_type', 'client_credentials']] : [['token', token]];
      const seenNames = new Set(base.map(([k]) => k));
      const params = [...base, ...extra.filter(([k]) => !seenNames.has(k) && (seenNames.add(k), true))];
      return {
        url,
        method: 'POST',
        body: { kind: 'form', text: new URLSearchParams(params).toString() },
        contentType: 'application/x-www-form-urlencoded',
        authorization: auth,
        accessToken: undefined,
        dpop: proof,
      };
    });

  const seen = new Map<number, number>();
  await fc.assert(
    fc.asyncProperty(fc.oneof(request, nearly), async (r) => {
      const headers: Record<string, string> = {};
      if (r.contentType !== undefined) headers['content-type'] = r.contentType;
      if (r.authorization !== undefined) headers.authorization = r.authorization;
      if (r.accessToken !== undefined) headers['x-access-token'] = r.accessToken;
      if (r.dpop !== undefined) headers.dpop = r.dpop;
      const res = await h.inject({ method: r.method as 'POST', url: r.url, headers, ...(r.method === 'GET' ? {} : { payload: r.body.text }) });
      seen.set(res.statusCode, (seen.get(res.statusCode) ?? 0) + 1);
      if (res.statusCode >= 500) throw new Error(`${res.statusCode} for ${JSON.stringify(r).slice(0, 500)}: ${res.body}`);
      if (res.statusCode >= 400) {
        const b = res.json() as { error?: unknown };
        if (typeof b.error !== 'string') throw new Error(`error body without a code: ${res.body}`);
      }
      // A request authenticated as keyA may introspect jwtB (inactive for it) and get tokens; the
      // only legitimate successes. A 204 would be a logout: none of the pool's sessions is live.
      if (res.statusCode === 204) throw new Error(`unexpected 204 for ${JSON.stringify(r).slice(0, 300)}`);
    }),
    { numRuns: NUM_RUNS, endOnFailure: true },
  );
  t.pass(`statuses: ${JSON.stringify(Object.fromEntries([...seen].sort((a, b) => a[0] - b[0])))}`);
  t.ok(
    [...seen.keys()].some((s) => s === 200),
    'the fuzzer reached successful paths too',
  );
  t.ok([...seen.keys()].filter((s) => s >= 400).length >= 4, 'and a variety of refusals');

  await h.app.usage.flush();
  t.same(await databaseDigest(h.db), before, 'the database is unchanged (last_used_at aside)');
  // The live session and client still work: the fuzzer broke nothing.
  t.equal((await h.inject({ method: 'GET', url: '/api/users/me', headers: { 'x-access-token': login } })).statusCode, 200);
  t.equal((await h.inject({ method: 'GET', url: '/api/users/me', headers: bearer(jwtB) })).statusCode, 200);
});
