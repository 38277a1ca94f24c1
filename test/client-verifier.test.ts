// The gateway verifier and Fastify plugin of the client SDK against a real listening Tessera:
// local JWT checks over the remote JWKS, key rotation and revocation, remote checks for session
// tokens and revoked JWTs, the plugin's 401/403/200, and the examples through the package exports.
import t from 'tap';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { generateKeyPair, SignJWT } from 'jose';
import Fastify from 'fastify';
import { ClientCredentials, createVerifier, TesseraVerifyError, TokenLogin, type Verifier } from '../src/client/index.js';
import { tesseraAuth } from '../src/client/fastify.js';
import { freePort, type Harness } from './support/helper.js';
import { basic, createSdkKey, getToken, headerOf, oauthPost } from './support/oauth-helper.js';
import { liveTessera, ManualClock } from './support/client-helper.js';

const JWKS = '/.well-known/jwks.json';
const ENV = { TESSERA_ACCESS_TOKEN_TTL: '600s', TESSERA_JWKS_MAX_AGE: '120s' };

async function refusal(v: Verifier, token: string, opts?: { scopes?: string[] }): Promise<TesseraVerifyError> {
  try {
    await v.verify(token, opts);
  } catch (err) {
    if (err instanceof TesseraVerifyError) return err;
    throw err;
  }
  throw new Error('the token was accepted');
}

/** An operator token for the admin keys API. */
async function adminToken(h: Harness): Promise<string> {
  return h.apiToken(await h.user(), ['admin']);
}

/** Immediate rotation through the admin API: a new key signs at once, the old one is retired (still published). */
async function rotate(h: Harness): Promise<string> {
  const res = await h.inject({
    method: 'POST',
    url: '/admin/keys/rotate',
    headers: { authorization: `Bearer ${await adminToken(h)}` },
    payload: { immediate: true },
  });
  if (res.statusCode !== 200) throw new Error(`rotate: ${res.statusCode} ${res.body}`);
  return (res.json() as { key: { kid: string } }).key.kid;
}

/** Emergency revocation through the admin API: unpublished at once, a new key signs. */
async function revokeKey(h: Harness, kid: string): Promise<void> {
  const res = await h.inject({
    method: 'POST',
    url: `/admin/keys/${kid}/revoke`,
    headers: { authorization: `Bearer ${await adminToken(h)}` },
  });
  if (res.statusCode !== 200) throw new Error(`revoke: ${res.statusCode} ${res.body}`);
}

t.test('verifier: accepts a fresh token, refuses wrong audience, expiry, alg none, HMAC, forgeries; unknown-kid refetch has a floor', async (t) => {
  const live = await liveTessera(t, ENV);
  const { h, issuer } = live;
  const key = await createSdkKey(h, await h.user());
  const clock = new ManualClock(h.clock.now());
  const v = createVerifier({ issuer, audience: issuer, now: clock.now });

  const token = await getToken(h, key, { scope: 'api' });
  const ok = await v.verify(token);
  t.match(ok, { kind: 'jwt', subject: key.client_id, clientId: key.client_id, scopes: ['api'], organizationId: null, checkedRemotely: false });
  t.equal(ok.claims?.iss, issuer);
  t.equal(live.count(JWKS), 1);
  await v.verify(token);
  t.equal(live.count(JWKS), 1, 'the JWKS is cached');
  t.match(await refusal(v, token, { scopes: ['quantum_tokens'] }), { code: 'insufficient_scope', status: 403, reason: 'scope', scopes: ['quantum_tokens'] });

  const other = await getToken(h, key, { audience: 'https://other.example' });
  t.match(await refusal(v, other), { code: 'invalid_token', status: 401, reason: 'audience' });
  const forOther = createVerifier({ issuer, audience: ['https://x.example', 'https://other.example'], now: clock.now });
  t.equal((await forOther.verify(other)).subject, key.client_id, 'a verifier for that audience accepts it');

  // Tokens signed with Tessera's own key but with bad claims or header.
  const signer = h.app.oauth.keys.signingKey();
  const now = Math.floor(clock.ms / 1000);
  const sign = (claims: Record<string, unknown>, header: Record<string, unknown> = {}) =>
    new SignJWT({ iss: issuer, aud: issuer, sub: key.client_id, iat: now, exp: now + 300, client_id: key.client_id, scope: 'api', jti: 'j1', ...claims })
      .setProtectedHeader({ alg: signer.alg, kid: signer.kid, typ: 'at+jwt', ...header })
      .sign(signer.privateKey);
  t.ok(await v.verify(await sign({})), 'a well-formed token signed by the key verifies');
  t.match(await refusal(v, await sign({}, { typ: 'JWT' })), { reason: 'type' });
  t.match(await refusal(v, await sign({ iss: 'https://evil.example' })), { reason: 'issuer' });
  t.match(await refusal(v, await sign({ client_id: undefined })), { reason: 'claims' });
  t.match(await refusal(v, await sign({ iat: now + 3600 })), { reason: 'claims' });
  t.match(await refusal(v, await sign({ exp: undefined })), { reason: 'claims' });

  const [h64, p64] = token.split('.');
  const none = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'at+jwt' })).toString('base64url')}.${p64}.`;
  t.match(await refusal(v, none), { code: 'invalid_token', reason: 'algorithm' });
  const hs = await new SignJWT({ client_id: key.client_id, scope: 'api' })
    .setProtectedHeader({ alg: 'HS256', kid: headerOf(token).kid as string, typ: 'at+jwt' })
    .setIssuer(issuer)
    .setAudience(issuer)
    .setSubject(key.client_id)
    .setIssuedAt()
    .setExpirationTime('5m')
    .setJti('x')
    .sign(new TextEncoder().encode('a'.repeat(32)));
  t.match(await refusal(v, hs), { reason: 'algorithm' });
  const tampered = `${h64}.${Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(p64!, 'base64url').toString()), scope: 'api admin' })).toString('base64url')}.${token.split('.')[2]}`;
  t.match(await refusal(v, tampered), { reason: 'signature' });
  t.match(await refusal(v, 'not a token'), { reason: 'malformed' });
  t.throws(() => createVerifier({ issuer, audience: issuer, algorithms: ['none'] }), /cannot be allowed/);

  // A key Tessera never published: refused; the JWKS is refetched at most once per cooldown.
  const { privateKey } = await generateKeyPair('EdDSA');
  const forged = await new SignJWT({ client_id: key.client_id, scope: 'api' })
    .setProtectedHeader({ alg: 'EdDSA', kid: 'forged', typ: 'at+jwt' })
    .setIssuer(issuer)
    .setAudience(issuer)
    .setSubject(key.client_id)
    .setIssuedAt(Math.floor(clock.ms / 1000))
    .setExpirationTime('5m')
    .setJti('f')
    .sign(privateKey);
  const fetched = live.count(JWKS); // the second verifier fetched too
  t.match(await refusal(v, forged), { reason: 'unknown_kid' });
  t.equal(live.count(JWKS), fetched, 'no refetch within the cooldown of the last fetch');
  clock.advance(31);
  t.match(await refusal(v, forged), { reason: 'unknown_kid' });
  t.equal(live.count(JWKS), fetched + 1, 'refetched once the cooldown passed');
  await Promise.all(Array.from({ length: 20 }, () => refusal(v, forged)));
  t.equal(live.count(JWKS), fetched + 1, 'a burst of unknown kids causes no fetch');

  // A token verified before is refused once it expires, while the key set it was checked with still holds.
  const then = Math.floor(clock.ms / 1000);
  const shortLived = await sign({ iat: then, exp: then + 5, jti: 'short' });
  t.ok(await v.verify(shortLived), 'verifies while it lives');
  t.ok(await v.verify(shortLived), 'and again');
  clock.advance(5 + 31);
  t.match(await refusal(v, shortLived), { code: 'invalid_token', reason: 'expired' });
  t.equal(live.count(JWKS), fetched + 1, 'with the same key set');

  // Expired (past the 30 s tolerance).
  clock.advance(600 + 31);
  t.match(await refusal(v, token), { code: 'invalid_token', reason: 'expired' });
});

t.test('verifier: a key rotation causes zero failures; a revoked key is refused after the JWKS refresh', async (t) => {
  const live = await liveTessera(t, ENV);
  const { h, issuer } = live;
  const key = await createSdkKey(h, await h.user());
  const clock = new ManualClock(h.clock.now());
  const v = createVerifier({ issuer, audience: issuer, now: clock.now });
  const failures: string[] = [];
  const verifyAll = async (tokens: string[]) => Promise.all(tokens.map((tok) => v.verify(tok).catch((e: TesseraVerifyError) => void failures.push(e.reason))));

  const oldTokens = await Promise.all(Array.from({ length: 5 }, () => getToken(h, key)));
  const oldKid = headerOf(oldTokens[0]!).kid as string;
  await verifyAll(oldTokens);
  t.equal(live.count(JWKS), 1);

  clock.advance(40); // past the refetch floor, inside the JWKS max-age (120 s)
  const newKid = await rotate(h);
  t.not(newKid, oldKid);
  const newTokens = await Promise.all(Array.from({ length: 5 }, () => getToken(h, key)));
  t.equal(headerOf(newTokens[0]!).kid, newKid, 'new tokens carry the new kid');
  // Interleaved, concurrently: old tokens (retired key, still published) and new ones (unknown kid).
  for (let round = 0; round < 3; round++) await verifyAll([...oldTokens, ...newTokens].sort(() => Math.random() - 0.5));
  t.same(failures, [], 'zero failures across the rotation');
  t.equal(live.count(JWKS), 2, 'one refetch, on the unknown kid');

  // Emergency revocation of the new key: unpublished at once; tokens it signed fail after the refresh.
  await revokeKey(h, newKid);
  const after = await getToken(h, key);
  const afterKid = headerOf(after).kid as string;
  t.not(afterKid, newKid, 'another key signs');
  t.equal(
    (await h.inject({ method: 'GET', url: '/api/users/me', headers: { authorization: `Bearer ${newTokens[0]}` } })).statusCode,
    401,
    'Tessera itself refuses them',
  );
  clock.advance(121); // the cached JWKS expires (max-age 120 s)
  for (const tok of newTokens) t.match(await refusal(v, tok), { code: 'invalid_token', reason: 'unknown_kid' });
  t.equal(live.count(JWKS), 3, 'refreshed once');
  t.ok(await v.verify(after), 'tokens of the replacement key verify');
  t.ok(await v.verify(oldTokens[0]!), 'the retired key still verifies');
  t.equal(live.count(JWKS), 3);
});

t.test('verifier: session tokens are checked through /gateway/verify (short cache); revoked JWTs through introspection', async (t) => {
  const live = await liveTessera(t, ENV);
  const { h, issuer } = live;
  const u = await h.user();
  const clock = new ManualClock(h.clock.now());
  const v = createVerifier({ issuer, audience: issuer, now: clock.now });
  const login = new TokenLogin({ issuer, apiToken: await h.apiToken(u, ['api', 'quantum_tokens']), env: {} });
  const session = await login.getToken();

  const ok = await v.verify(session, { scopes: ['api'] });
  t.match(ok, { kind: 'opaque', subject: u.id, userId: u.id, clientId: null, scopes: ['api', 'quantum_tokens'], checkedRemotely: true, claims: null });
  t.equal((await v.verifyRequest({ 'x-access-token': session })).userId, u.id, 'from x-access-token');
  t.equal(live.count('/gateway/verify'), 1, 'the answer is cached');

  await login.logout();
  t.ok(await v.verify(session), 'within the cache TTL (5 s) the cached answer stands');
  clock.advance(6);
  t.match(await refusal(v, session), { code: 'invalid_token', reason: 'revoked' });
  t.equal(live.count('/gateway/verify'), 2);
  t.match(await refusal(v, session), { reason: 'revoked' });
  t.equal(live.count('/gateway/verify'), 2, 'refusals are cached too');
  t.match(await refusal(v, 'tsr_ses_' + 'a'.repeat(49)), { reason: 'revoked' });

  const noOpaque = createVerifier({ issuer, audience: issuer, opaqueTokens: false });
  t.match(await refusal(noOpaque, session), { reason: 'malformed' });

  // Tessera unreachable for a required remote check: 503-class, not cached.
  live.failNext('/gateway/verify', 2);
  const s2 = await login.getToken();
  t.match(await refusal(v, s2), { code: 'temporarily_unavailable', status: 503, reason: 'unavailable' });
  t.ok(await v.verify(s2), 'answered once Tessera is back');

  // JWTs checked by introspection, with an SDK key holding scope introspect as the verifier's credential.
  const owner = await h.user();
  const key = await createSdkKey(h, owner, { name: 'app', scopes: ['api'] }, ['api']);
  const gw = await createSdkKey(h, await h.user(), { name: 'gateway', scopes: ['introspect'] }, ['api', 'introspect']);
  const gatewayCreds = new ClientCredentials({ issuer, clientId: gw.client_id, clientSecret: gw.client_secret, env: {} });
  const rv = createVerifier({ issuer, audience: issuer, now: clock.now, remote: { jwt: true, introspectionAuth: gatewayCreds } });
  const jwt = await getToken(h, key);
  t.match(await rv.verify(jwt), { kind: 'jwt', subject: key.client_id, userId: owner.id, checkedRemotely: true });
  t.equal(live.count('/oauth/introspect'), 1);
  const revoked = await oauthPost(h, '/oauth/revoke', { token: jwt }, { authorization: basic(key.client_id, key.client_secret) });
  t.equal(revoked.statusCode, 200);
  t.ok(await v.verify(jwt), 'a local-only verifier cannot know');
  clock.advance(6);
  t.match(await refusal(rv, jwt), { reason: 'revoked' });
  t.equal(live.count('/oauth/introspect'), 2);
  const onlyOrg = createVerifier({ issuer, audience: issuer, now: clock.now, remote: { jwt: (c) => c.org_id != null, introspectionAuth: gatewayCreds } });
  t.ok(await onlyOrg.verify(jwt), 'the predicate leaves tokens without an organization to local checks');
  t.equal(live.count('/oauth/introspect'), 2);
});

t.test('fastify plugin: 401 without a token, 403 without the scope, 200 with it', async (t) => {
  const live = await liveTessera(t, ENV);
  const { h, issuer } = live;
  const u = await h.user();
  const key = await createSdkKey(h, u, { name: 'sdk', scopes: ['api', 'quantum_tokens'] });

  const rs = Fastify();
  t.teardown(() => rs.close());
  await rs.register(tesseraAuth, { issuer, audience: issuer });
  rs.get('/jobs', { preHandler: rs.tesseraAuth(['quantum_tokens']) }, async (req) => ({ caller: req.tessera!.subject, scopes: req.tessera!.scopes }));
  rs.get('/public', async (req) => ({ tessera: req.tessera }));

  const none = await rs.inject({ method: 'GET', url: '/jobs' });
  t.equal(none.statusCode, 401);
  t.equal(none.headers['www-authenticate'], 'Bearer realm="tessera"');
  t.same(none.json(), { error: 'invalid_token', message: 'no bearer token' });

  const garbage = await rs.inject({ method: 'GET', url: '/jobs', headers: { authorization: 'Bearer abc.def.ghi' } });
  t.equal(garbage.statusCode, 401);
  t.match(garbage.headers['www-authenticate'], /^Bearer realm="tessera", error="invalid_token", error_description="/);

  const narrow = await getToken(h, key, { scope: 'api' });
  const forbidden = await rs.inject({ method: 'GET', url: '/jobs', headers: { authorization: `Bearer ${narrow}` } });
  t.equal(forbidden.statusCode, 403);
  t.equal(forbidden.headers['www-authenticate'], 'Bearer realm="tessera", error="insufficient_scope", scope="quantum_tokens"');
  t.same(forbidden.json(), { error: 'insufficient_scope', message: 'this request needs scope: quantum_tokens' });

  const full = await getToken(h, key, { scope: 'api quantum_tokens' });
  const allowed = await rs.inject({ method: 'GET', url: '/jobs', headers: { authorization: `Bearer ${full}` } });
  t.equal(allowed.statusCode, 200);
  t.same(allowed.json(), { caller: key.client_id, scopes: ['api', 'quantum_tokens'] });

  const session = await new TokenLogin({ issuer, apiToken: await h.apiToken(u, ['quantum_tokens']), env: {} }).getToken();
  const bySession = await rs.inject({ method: 'GET', url: '/jobs', headers: { 'x-access-token': session } });
  t.equal(bySession.statusCode, 200, 'session tokens through x-access-token');
  t.equal(bySession.json().caller, u.id);

  t.same((await rs.inject({ method: 'GET', url: '/public' })).json(), { tessera: null }, 'unprotected routes are untouched');
});

function run(
  script: string,
  env: Record<string, string>,
  args: string[] = [],
): { done: Promise<{ code: number | null; out: string }>; stdout: () => string; kill: () => void } {
  const child = spawn(process.execPath, [path.join('examples', script), ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  return {
    done: new Promise((resolve) => child.on('close', (code) => resolve({ code, out }))),
    stdout: () => out,
    kill: () => child.kill('SIGTERM'),
  };
}

t.test('examples: the SDK script calls the resource server through the tessera/client exports', async (t) => {
  const live = await liveTessera(t, ENV);
  const { h, issuer } = live;
  const key = await createSdkKey(h, await h.user(), { name: 'example', scopes: ['api'] });
  const port = await freePort();
  const server = run('resource-server.mjs', { TESSERA_URL: issuer, PORT: String(port) });
  t.teardown(() => server.kill());
  for (let i = 0; i < 200 && !server.stdout().includes('listening'); i++) await new Promise((r) => setTimeout(r, 50));
  t.match(server.stdout(), /listening/, 'the resource server started');

  const client = run('sdk-client.mjs', { TESSERA_URL: issuer, TESSERA_CLIENT_ID: key.client_id, TESSERA_CLIENT_SECRET: key.client_secret }, [
    `http://127.0.0.1:${port}/jobs`,
  ]);
  const { code, out } = await client.done;
  t.equal(code, 0, out);
  t.match(out, /200/);
  t.match(out, key.client_id);
  const anonymous = await fetch(`http://127.0.0.1:${port}/jobs`);
  t.equal(anonymous.status, 401);
});
