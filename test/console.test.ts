import t from 'tap';
import { bearer, harness, type Harness } from './support/helper.js';
import { main } from '../src/cli.js';
import { cliOnHarness } from './support/helper.js';
import type { PeopleTables } from '../src/people/people.table.js';

// The console over real HTTP semantics (inject): headers, CSRF refusal, invitations, password
// sign-in, limits and no enumeration. The browser journey is in console-browser.test.ts.

const ORIGIN = 'http://localhost:8080';
const form = (o: Record<string, string | string[]>) => {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(o)) for (const x of Array.isArray(v) ? v : [v]) p.append(k, x);
  return p.toString();
};
const post = (h: Harness, url: string, body: Record<string, string | string[]>, headers: Record<string, string> = {}) =>
  h.inject({ method: 'POST', url, payload: form(body), headers: { 'content-type': 'application/x-www-form-urlencoded', origin: ORIGIN, ...headers } });
const cookieOf = (res: { headers: Record<string, unknown> }) => {
  const raw = res.headers['set-cookie'];
  const all = (Array.isArray(raw) ? raw : [raw]).filter((x): x is string => typeof x === 'string');
  const c = all.find((x) => x.startsWith('tessera_console=') && !x.startsWith('tessera_console=;'));
  return c ? c.split(';')[0]! : null;
};

async function invite(h: Harness, userId: string, scopes?: string[]) {
  const admin = await h.apiToken(await h.user(), ['admin']);
  const res = await h.inject({ method: 'POST', url: `/admin/users/${userId}/invitations`, headers: bearer(admin), payload: scopes ? { scopes } : {} });
  return res;
}

t.test('/ redirects to /console, which sends people to sign in', async (t) => {
  const h = await harness(t);
  const root = await h.inject({ url: '/' });
  t.equal(root.statusCode, 302);
  t.equal(root.headers.location, '/console');
  const c = await h.inject({ url: '/console' });
  t.equal(c.statusCode, 302);
  t.equal(c.headers.location, '/console/sign-in');
  const page = await h.inject({ url: '/console/sign-in' });
  t.equal(page.statusCode, 200);
  t.match(page.headers['content-type'], /text\/html/);
  const csp = String(page.headers['content-security-policy']);
  t.match(csp, /default-src 'none'/);
  t.match(csp, /frame-ancestors 'none'/);
  t.notMatch(csp, /unsafe-inline/);
  t.equal(page.headers['referrer-policy'], 'same-origin');
  t.equal(page.headers['x-content-type-options'], 'nosniff');
  t.equal(page.headers['cache-control'], 'no-store');
  t.notMatch(page.body, /<script>|<style>|style="|onclick=/, 'no inline script or style');
  const css = /href="(\/console\/assets\/console\.[0-9a-f]{16}\.css)"/.exec(page.body);
  t.ok(css, 'stylesheet under a hashed name');
  const asset = await h.inject({ url: css![1]! });
  t.equal(asset.statusCode, 200);
  t.match(asset.headers['cache-control'], /immutable/);
  t.match(asset.headers['content-type'], /text\/css/);
});

t.test('admin invitation API: one-time link with the code in the fragment, hashed at rest, 72 h by default', async (t) => {
  const h = await harness(t);
  const u = await h.user();
  const res = await invite(h, u.id);
  t.equal(res.statusCode, 201);
  const body = res.json() as { url: string; expires_at: string; scopes: string[] };
  t.match(body.url, /^http:\/\/localhost:8080\/console\/invitation#[A-Za-z0-9_-]{43}$/);
  t.same(body.scopes, ['api', 'quantum_tokens']);
  t.equal(new Date(body.expires_at).getTime() - h.clock.now(), 72 * 3600_000);
  const code = body.url.split('#')[1]!;
  const rows = await h.db.withTables<{ user_invitations: { token_hash: Buffer } }>().selectFrom('user_invitations').select('token_hash').execute();
  t.equal(rows.length, 1);
  t.notOk(rows[0]!.token_hash.toString('utf8').includes(code), 'only a hash is stored');
  const unknown = await invite(h, '00000000-0000-4000-8000-000000000000');
  t.equal(unknown.statusCode, 404);
  const noAdmin = await h.inject({ method: 'POST', url: `/admin/users/${u.id}/invitations`, headers: bearer(await h.apiToken(u, ['api'])), payload: {} });
  t.equal(noAdmin.statusCode, 403);
});

t.test('invitation with a password, then sign-in, sign-out ends the session for good', async (t) => {
  const h = await harness(t);
  const u = await h.user({ email: 'ada@example.com', name: 'Ada' });
  const code = ((await invite(h, u.id)).json() as { url: string }).url.split('#')[1]!;

  const weak = await post(h, '/console/invitation/password', { code, password: 'password1234', confirm: 'password1234' });
  t.equal(weak.statusCode, 400);
  t.match(weak.body, /most common/);
  t.match(weak.body, new RegExp(`value="${code}"`), 'the form keeps the code');
  const short = await post(h, '/console/invitation/password', { code, password: 'short', confirm: 'short' });
  t.match(short.body, /at least 12 characters/);

  const pw = 'violet-harbor-engine-42';
  const ok = await post(h, '/console/invitation/password', { code, password: pw, confirm: pw });
  t.equal(ok.statusCode, 303);
  t.equal(ok.headers.location, '/console/account');
  const cookie = cookieOf(ok);
  t.ok(cookie, 'a session cookie is set');
  const setCookie = String(([] as string[]).concat(ok.headers['set-cookie'] as string[]).find((c) => c.startsWith('tessera_console=')));
  t.match(setCookie, /HttpOnly/);
  t.match(setCookie, /SameSite=Lax/);
  t.match(setCookie, /Path=\//);
  const again = await post(h, '/console/invitation/password', { code, password: pw, confirm: pw });
  t.equal(again.statusCode, 400, 'the invitation works once');

  const account = await h.inject({ url: '/console/account', headers: { cookie: cookie! } });
  t.equal(account.statusCode, 200);
  t.match(account.body, /ada@example.com/);
  t.match(account.body, new RegExp(u.id));

  const signIn = await post(h, '/console/sign-in/password', { email: 'ADA@example.com', password: pw });
  t.equal(signIn.statusCode, 303);
  const second = cookieOf(signIn)!;

  const out = await post(h, '/console/sign-out', {}, { cookie: second });
  t.equal(out.statusCode, 200);
  const after = await h.inject({ url: '/console/account', headers: { cookie: second } });
  t.equal(after.statusCode, 303);
  t.equal(after.headers.location, '/console/sign-in');
  const other = await h.instance();
  const elsewhere = await other.inject({ url: '/console/account', headers: { cookie: second } });
  t.equal(elsewhere.statusCode, 303, 'ended on another instance too');
  t.equal((await h.inject({ url: '/console/account', headers: { cookie: cookie! } })).statusCode, 200, 'the other session lives');

  const everywhere = await post(h, '/console/sign-out-everywhere', {}, { cookie: cookie! });
  t.equal(everywhere.statusCode, 200);
  t.equal((await h.inject({ url: '/console/account', headers: { cookie: cookie! } })).statusCode, 303);
});

t.test('a cross-origin or origin-less form post is refused before anything happens', async (t) => {
  const h = await harness(t);
  const u = await h.user();
  const token = await h.apiToken(u, ['api']);
  const signIn = await post(h, '/console/sign-in/token', { api_token: token });
  t.equal(signIn.statusCode, 303);
  const cookie = cookieOf(signIn)!;
  const evil = await post(h, '/console/tokens', { name: 'x', scopes: 'api', expires: '7d' }, { cookie, origin: 'https://evil.example' });
  t.equal(evil.statusCode, 403);
  const bare = await h.inject({
    method: 'POST',
    url: '/console/tokens',
    payload: form({ name: 'x', scopes: 'api', expires: '7d' }),
    headers: { 'content-type': 'application/x-www-form-urlencoded', cookie },
  });
  t.equal(bare.statusCode, 403);
  const crossSite = await h.inject({
    method: 'POST',
    url: '/console/sign-out-everywhere',
    headers: { 'content-type': 'application/x-www-form-urlencoded', cookie, 'sec-fetch-site': 'cross-site' },
    payload: '',
  });
  t.equal(crossSite.statusCode, 403);
  const tokens = await h.inject({ url: '/api/access-tokens', headers: bearer(token) });
  t.equal((tokens.json() as { access_tokens: unknown[] }).access_tokens.length, 1, 'no token was created');
  t.equal((await h.inject({ url: '/console/account', headers: { cookie } })).statusCode, 200, 'the session lives');
});

t.test('a token shown once is in that response only; the created token works against the API', async (t) => {
  const h = await harness(t);
  const u = await h.user();
  const signIn = await post(h, '/console/sign-in/token', { api_token: await h.apiToken(u, ['api', 'quantum_tokens']) });
  const cookie = cookieOf(signIn)!;
  const bad = await post(h, '/console/tokens', { name: '', expires: '7d' }, { cookie });
  t.equal(bad.statusCode, 400);
  t.match(bad.body, /Give the token a name/);
  t.match(bad.body, /Choose at least one scope/);
  const made = await post(h, '/console/tokens', { name: 'laptop', scopes: ['api'], expires: '30d' }, { cookie });
  t.equal(made.statusCode, 201);
  const token = /<code id="secret-value" class="wrap">([^<]+)<\/code>/.exec(made.body)?.[1];
  t.ok(token, 'the token is shown');
  const me = await h.inject({ url: '/api/users/me', headers: bearer(token!) });
  t.equal(me.statusCode, 200);
  const list = await h.inject({ url: '/console/tokens', headers: { cookie } });
  t.match(list.body, /laptop/);
  t.notOk(list.body.includes(token!), 'not shown again');
});

t.test('20 wrong passwords: same answer for known and unknown emails, nothing locked for other people', async (t) => {
  const h = await harness(t, { env: { TESSERA_CONSOLE_FAILED_SIGNINS_PER_IP: '1000' } });
  const pw = 'quiet-lantern-meadow-7';
  const victim = await h.user({ email: 'victim@example.com' });
  const bystander = await h.user({ email: 'bystander@example.com' });
  for (const u of [victim, bystander]) {
    const code = ((await invite(h, u.id)).json() as { url: string }).url.split('#')[1]!;
    t.equal((await post(h, '/console/invitation/password', { code, password: pw, confirm: pw })).statusCode, 303);
  }
  const answers = new Set<string>();
  for (let i = 0; i < 20; i++) {
    const email = i % 2 ? 'victim@example.com' : `nobody${i}@example.com`;
    const res = await post(h, '/console/sign-in/password', { email, password: `wrong-${i}-password` });
    t.equal(res.statusCode, 401);
    t.notOk(cookieOf(res));
    answers.add(res.body.replace(/value="[^"]*@example\.com"/, 'value=""'));
  }
  t.equal(answers.size, 1, 'one answer for every failure');
  const ok = await post(h, '/console/sign-in/password', { email: 'bystander@example.com', password: pw });
  t.equal(ok.statusCode, 303, 'another account signs in');
  const locked = await post(h, '/console/sign-in/password', { email: 'victim@example.com', password: pw });
  t.equal(locked.statusCode, 401, 'the attacked account pauses password sign-in');
  t.match(locked.body, /Sign-in failed/);
});

t.test('tessera users invite creates the user and prints a link', async (t) => {
  const h = await harness(t);
  cliOnHarness(t, h);
  process.env.TESSERA_ISSUER = h.config.issuer;
  let out = '';
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string) => {
    out += chunk;
    return true;
  }) as typeof process.stdout.write;
  let code: number;
  try {
    code = await main(['users', 'invite', '--email', 'new.person@example.com', '--name', 'New Person']);
  } finally {
    process.stdout.write = write;
  }
  t.equal(code, 0);
  const printed = JSON.parse(out) as { url: string; created: boolean; user_id: string };
  t.equal(printed.created, true);
  t.match(printed.url, /\/console\/invitation#[A-Za-z0-9_-]{43}$/);
  const pw = 'sturdy-copper-kettle-9';
  const res = await post(h, '/console/invitation/password', { code: printed.url.split('#')[1]!, password: pw, confirm: pw });
  t.equal(res.statusCode, 303);
});

t.test('console sessions end after the idle timeout, and after the absolute one however busy', async (t) => {
  const h = await harness(t, { env: { TESSERA_CONSOLE_SESSION_IDLE: '10m', TESSERA_CONSOLE_SESSION_MAX: '1h' } });
  const u = await h.user();
  const token = await h.apiToken(u, ['api']);
  const signIn = async () => cookieOf(await post(h, '/console/sign-in/token', { api_token: token }))!;
  const status = async (cookie: string) => (await h.inject({ url: '/console/account', headers: { cookie } })).statusCode;

  const idle = await signIn();
  h.clock.advance(9 * 60);
  t.equal(await status(idle), 200, 'used within the idle timeout');
  h.clock.advance(9 * 60);
  t.equal(await status(idle), 200, 'the idle clock restarted at the last request');
  h.clock.advance(11 * 60);
  t.equal(await status(idle), 303, 'idle too long: signed out');

  const busy = await signIn();
  for (let i = 0; i < 7; i++) {
    h.clock.advance(9 * 60);
    t.equal(await status(busy), i < 6 ? 200 : 303, `after ${(i + 1) * 9} minutes of use`);
  }
});

t.test('a console session ends with the API token it acts for, and with its user', async (t) => {
  const h = await harness(t);
  const u = await h.user();
  const token = await h.apiToken(u, ['api']);
  const cookie = cookieOf(await post(h, '/console/sign-in/token', { api_token: token }))!;
  t.equal((await h.inject({ url: '/console/account', headers: { cookie } })).statusCode, 200);
  const list = (await h.inject({ url: '/api/access-tokens', headers: bearer(token) })).json() as { access_tokens: Array<{ id: string }> };
  const del = await h.inject({ method: 'DELETE', url: `/api/access-tokens/${list.access_tokens[0]!.id}`, headers: bearer(token) });
  t.equal(del.statusCode, 204);
  t.equal((await h.inject({ url: '/console/account', headers: { cookie } })).statusCode, 303, 'revoking the token ends the session');

  const v = await h.user();
  const other = cookieOf(await post(h, '/console/sign-in/token', { api_token: await h.apiToken(v, ['api']) }))!;
  const admin = await h.apiToken(await h.user(), ['admin']);
  t.equal((await h.inject({ method: 'POST', url: `/admin/users/${v.id}/suspend`, headers: bearer(admin) })).statusCode, 200);
  t.equal((await h.inject({ url: '/console/account', headers: { cookie: other } })).statusCode, 303, 'suspension ends it');
});

t.test('console settings are validated', async (t) => {
  const { loadConfig, ConfigError } = await import('../src/platform/config.js');
  const base = { DATABASE_URL: 'postgres://x@localhost/x', TESSERA_MASTER_KEY: Buffer.alloc(32, 1).toString('base64'), TESSERA_PEPPER: 'p'.repeat(32) };
  const c = loadConfig(base).config.console;
  t.same(c, { sessionIdleSeconds: 1800, sessionMaxSeconds: 43200, invitationTtlSeconds: 259200, failedSignInsPerAccount: 10, failedSignInsPerIp: 100 });
  t.throws(() => loadConfig({ ...base, TESSERA_CONSOLE_SESSION_IDLE: '2h', TESSERA_CONSOLE_SESSION_MAX: '1h' }), ConfigError);
  t.throws(() => loadConfig({ ...base, TESSERA_CONSOLE_INVITATION_TTL: 'soon' }), /TESSERA_CONSOLE_INVITATION_TTL/);
  t.equal(loadConfig({ ...base, TESSERA_CONSOLE_INVITATION_TTL: '1d' }).config.console.invitationTtlSeconds, 86400);
});

t.test('expired and unknown invitation codes are refused alike', async (t) => {
  const h = await harness(t);
  const u = await h.user();
  const res = await h.inject({
    method: 'POST',
    url: `/admin/users/${u.id}/invitations`,
    headers: bearer(await h.apiToken(await h.user(), ['admin'])),
    payload: { expires_in: 600 },
  });
  const code = (res.json() as { url: string }).url.split('#')[1]!;
  h.clock.advance(601);
  const pw = 'gentle-orchard-signal-3';
  const expired = await post(h, '/console/invitation/password', { code, password: pw, confirm: pw });
  const unknown = await post(h, '/console/invitation/password', { code: 'A'.repeat(43), password: pw, confirm: pw });
  t.equal(expired.statusCode, 400);
  t.equal(unknown.statusCode, 400);
  t.match(expired.body, /not valid/);
  t.equal(expired.body.replace(code, 'X'), unknown.body.replace('A'.repeat(43), 'X'));
});

t.test('an organization owner invites a maintainer, who sets an organization provider token a member cannot change', async (t) => {
  const h = await harness(t);
  const [owner, maintainer, member] = [await h.user(), await h.user(), await h.user()];
  const org = await h.org('Lab', [
    [owner, 'owner'],
    [member, 'member'],
  ]);
  const signIn = async (u: typeof owner) => cookieOf(await post(h, '/console/sign-in/token', { api_token: await h.apiToken(u, ['api', 'quantum_tokens']) }))!;
  const ownerCookie = await signIn(owner);
  const invited = await post(h, `/console/organizations/${org.id}/members`, { email: maintainer.email, role: 'maintainer' }, { cookie: ownerCookie });
  t.equal(invited.statusCode, 200);
  t.match(invited.body, /is invited as maintainer/);

  const maintainerCookie = await signIn(maintainer);
  const account = await h.inject({ url: '/console/account', headers: { cookie: maintainerCookie } });
  const invitationId = /\/console\/invitations\/([0-9a-f-]{36})\/accept/.exec(account.body)?.[1];
  t.ok(invitationId, 'the invitation is on their account page');
  const accepted = await post(h, `/console/invitations/${invitationId}/accept`, {}, { cookie: maintainerCookie });
  t.match(accepted.body, /You are now maintainer/);

  const saved = await post(
    h,
    `/console/organizations/${org.id}/provider-tokens/ionq`,
    { api_key: 'org-ionq-secret-value-98765' },
    { cookie: maintainerCookie },
  );
  t.equal(saved.statusCode, 200);
  t.match(saved.body, /credential is saved/);
  t.notOk(saved.body.includes('org-ionq-secret-value-98765'), 'write-only');

  const memberCookie = await signIn(member);
  const view = await h.inject({ url: `/console/organizations/${org.id}`, headers: { cookie: memberCookie } });
  t.equal(view.statusCode, 200);
  t.match(view.body, /…8765/, 'members see the hint');
  t.notMatch(view.body, /provider-tokens\/ionq\/delete/, 'and no way to change it');
  const refused = await post(
    h,
    `/console/organizations/${org.id}/provider-tokens/ionq`,
    { api_key: 'member-tries-to-replace-it-000' },
    { cookie: memberCookie },
  );
  t.equal(refused.statusCode, 403);
  const resolve = await h.inject({
    url: `/api/provider-tokens/ionq/resolve?organization_id=${org.id}`,
    headers: bearer(await h.apiToken(member, ['quantum_tokens'])),
  });
  t.equal(resolve.statusCode, 200);
  t.match(resolve.body, /org-ionq-secret-value-98765/, "the maintainer's credential is still the one resolved");

  const outsider = await signIn(await h.user());
  t.equal((await h.inject({ url: `/console/organizations/${org.id}`, headers: { cookie: outsider } })).statusCode, 404);
});

t.test('a password set after signing in with an API token never outlives nor outranks that token', async (t) => {
  const h = await harness(t);
  const u = await h.user({ email: 'bootstrap@example.com' });
  const { issueApiToken } = await import('../src/api-tokens/api-tokens.service.js');
  const expires = new Date(h.clock.now() + 3 * 86400_000);
  const { token, row } = await issueApiToken(h.db, h.config.pepper, { userId: u.id, name: 'boot', scopes: ['api'], expiresAt: expires });
  const cookie = cookieOf(await post(h, '/console/sign-in/token', { api_token: token }))!;
  const pw = 'amber-signal-harvest-11';
  const set = await post(h, '/console/password', { password: pw, confirm: pw }, { cookie });
  t.equal(set.statusCode, 200);
  t.match(set.body, /Your password is set/);
  const grant = await h.db
    .selectFrom('api_tokens')
    .select(['parent_api_token_id', 'scopes', 'expires_at'])
    .where('user_id', '=', u.id)
    .where('name', '=', 'Console sign-in')
    .executeTakeFirstOrThrow();
  t.equal(grant.parent_api_token_id, row.id, 'the sign-in grant is a child of the token');
  t.same(grant.scopes, ['api']);
  t.equal(grant.expires_at?.getTime(), expires.getTime());
  const viaPassword = cookieOf(await post(h, '/console/sign-in/password', { email: u.email, password: pw }))!;
  t.ok(viaPassword);
  t.equal((await h.inject({ method: 'DELETE', url: `/api/access-tokens/${row.id}`, headers: bearer(token) })).statusCode, 204);
  t.equal((await h.inject({ url: '/console/account', headers: { cookie: viaPassword } })).statusCode, 303, 'revoking the token ends the password session');
  t.equal((await post(h, '/console/sign-in/password', { email: u.email, password: pw })).statusCode, 401, 'and password sign-in');
});

t.test('with an https issuer the session cookie is __Host- and Secure', async (t) => {
  const h = await harness(t, { env: { TESSERA_ISSUER: 'https://console.example' } });
  const u = await h.user();
  const res = await h.inject({
    method: 'POST',
    url: '/console/sign-in/token',
    payload: form({ api_token: await h.apiToken(u, ['api']) }),
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: 'https://console.example' },
  });
  t.equal(res.statusCode, 303);
  const set = ([] as string[]).concat(res.headers['set-cookie'] as string[]).find((c) => c.startsWith('__Host-tessera_console='));
  t.ok(set, 'the __Host- cookie');
  t.match(set, /; Secure/);
  t.match(set, /; HttpOnly/);
  t.match(set, /; Path=\//);
  t.notMatch(set, /Domain=/i);
  const page = await h.inject({ url: '/console/sign-in' });
  t.match(page.headers['strict-transport-security'], /max-age=31536000/);
  t.equal(page.headers['x-frame-options'], 'DENY');
  const wrongOrigin = await post(h, '/console/sign-in/token', { api_token: 'x' });
  t.equal(wrongOrigin.statusCode, 403, 'the http origin is not the issuer');
});

t.test('passkeys and sessions: each person manages only their own', async (t) => {
  const h = await harness(t);
  const [a, b] = [await h.user(), await h.user()];
  const signIn = async (u: typeof a) => cookieOf(await post(h, '/console/sign-in/token', { api_token: await h.apiToken(u, ['api']) }))!;
  const [ca, cb] = [await signIn(a), await signIn(b)];
  const people = h.db.withTables<PeopleTables>();
  const pk = await people
    .insertInto('passkeys')
    .values({ user_id: a.id, credential_id: 'cred-a', public_key: Buffer.from('k'), name: 'Phone' })
    .returning('id')
    .executeTakeFirstOrThrow();
  t.equal((await post(h, `/console/passkeys/${pk.id}/rename`, { name: 'Stolen' }, { cookie: cb })).statusCode, 404, "another person's passkey: 404");
  t.equal((await post(h, `/console/passkeys/${pk.id}/remove`, {}, { cookie: cb })).statusCode, 404);
  const renamed = await post(h, `/console/passkeys/${pk.id}/rename`, { name: 'Old phone' }, { cookie: ca });
  t.equal(renamed.statusCode, 200);
  t.match(renamed.body, /value="Old phone"/);
  const removed = await post(h, `/console/passkeys/${pk.id}/remove`, {}, { cookie: ca });
  t.equal(removed.statusCode, 200);
  t.notMatch(removed.body, /Old phone/);

  const other = await signIn(a);
  const sessionOfA = /\/console\/sessions\/([0-9a-f-]{36})\/end/.exec((await h.inject({ url: '/console/security', headers: { cookie: ca } })).body)?.[1];
  t.ok(sessionOfA, "a's other session is listed with an End button");
  t.equal((await post(h, `/console/sessions/${sessionOfA}/end`, {}, { cookie: cb })).statusCode, 404, "b cannot end a's session");
  t.equal((await post(h, `/console/sessions/${sessionOfA}/end`, {}, { cookie: ca })).statusCode, 200, 'a can');
  t.equal((await h.inject({ url: '/console/account', headers: { cookie: other } })).statusCode, 303, 'the ended session is signed out');
  t.equal((await h.inject({ url: '/console/account', headers: { cookie: ca } })).statusCode, 200, 'the current session lives on');
});

t.test('failed sign-ins pause sign-in from that address only', async (t) => {
  const h = await harness(t, { env: { TESSERA_CONSOLE_FAILED_SIGNINS_PER_IP: '5' } });
  const u = await h.user();
  const token = await h.apiToken(u, ['api']);
  const from = (ip: string, apiToken: string) =>
    h.inject({
      method: 'POST',
      url: '/console/sign-in/token',
      remoteAddress: ip,
      payload: form({ api_token: apiToken }),
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: ORIGIN },
    });
  for (let i = 0; i < 5; i++) t.equal((await from('203.0.113.7', `tsr_wrong${i}`)).statusCode, 401);
  const paused = await from('203.0.113.7', token);
  t.equal(paused.statusCode, 401, 'even a good token is refused from that address for now');
  t.match(paused.body, /Sign-in failed/);
  t.equal((await from('198.51.100.2', token)).statusCode, 303, 'another address signs in');
  h.clock.advance(15 * 60);
  t.equal((await from('203.0.113.7', token)).statusCode, 303, 'after the window it works again');
});

t.test('an API token signs in only an account with neither a passkey nor a password', async (t) => {
  const h = await harness(t);
  const op = await h.user({ email: 'cli-operator@example.com' });
  // An operator bootstrapped with the CLI alone: `tessera users create` + `tessera tokens create`.
  cliOnHarness(t, h);
  let out = '';
  const write = process.stdout.write.bind(process.stdout);
  const writeErr = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((chunk: string) => {
    out += chunk;
    return true;
  }) as typeof process.stdout.write;
  process.stderr.write = (() => true) as typeof process.stderr.write;
  let code: number;
  try {
    code = await main(['tokens', 'create', '--user', op.email, '--scopes', 'api,admin']);
  } finally {
    process.stdout.write = write;
    process.stderr.write = writeErr;
  }
  t.equal(code, 0);
  const { token } = JSON.parse(out) as { token: string };
  const first = await post(h, '/console/sign-in/token', { api_token: token });
  t.equal(first.statusCode, 303, 'the CLI token signs in an account that has neither');
  const again = await post(h, '/console/sign-in/token', { api_token: token });
  t.equal(again.statusCode, 303, 'and again, as long as it has neither');

  const pw = 'granite-lantern-orchard-42';
  t.equal((await post(h, '/console/password', { password: pw, confirm: pw }, { cookie: cookieOf(first)! })).statusCode, 200);
  const refused = await post(h, '/console/sign-in/token', { api_token: token });
  t.equal(refused.statusCode, 403, 'once a password is set, the token no longer signs in');
  t.equal(cookieOf(refused), null, 'no session');
  t.match(refused.body, /already has a passkey or a password/);
  t.match(refused.body, /id="api_token-error"|aria-describedby="api_token-/, 'the message is next to the field');
  t.notOk(refused.body.includes(token), 'the token is not echoed back');
  t.equal((await post(h, '/console/sign-in/password', { email: op.email, password: pw })).statusCode, 303, 'the password signs in');
  t.equal((await h.inject({ url: '/api/users/me', headers: bearer(token) })).statusCode, 200, 'the token still works against the API');

  // A passkey closes it the same way.
  const u = await h.user();
  const other = await h.apiToken(u, ['api']);
  t.equal((await post(h, '/console/sign-in/token', { api_token: other })).statusCode, 303);
  await h.db
    .withTables<PeopleTables>()
    .insertInto('passkeys')
    .values({ user_id: u.id, credential_id: 'cred-u', public_key: Buffer.from('k'), name: 'Phone' })
    .execute();
  const closed = await post(h, '/console/sign-in/token', { api_token: other });
  t.equal(closed.statusCode, 403);
  t.match(closed.body, /already has a passkey or a password/);
});

t.test('operators manage organizations in the console, writing the same audit rows as the admin API', async (t) => {
  const h = await harness(t);
  const op = await h.user({ email: 'op@example.com', name: 'Op' });
  const adminToken = await h.apiToken(op, ['admin']);
  const opCookie = cookieOf(await post(h, '/console/sign-in/token', { api_token: adminToken }))!;
  t.ok(opCookie, 'the operator is signed in');
  const owner = await h.user({ email: 'grace@example.com', name: 'Grace' });
  const other = await h.user({ email: 'alan@example.com', name: 'Alan' });
  type AuditRow = {
    action: string;
    target_type: string | null;
    target_id: string | null;
    organization_id: string | null;
    details: unknown;
    actor_user_id: string | null;
  };
  const audit = async (orgId: string) =>
    (await h.db
      .withTables<{ audit_events: AuditRow & { id: number } }>()
      .selectFrom('audit_events')
      .select(['action', 'target_type', 'target_id', 'organization_id', 'details', 'actor_user_id'])
      .where('organization_id', '=', orgId)
      .orderBy('id')
      .execute()) as AuditRow[];
  // The same rows with the organization's ID and the API's own target IDs made comparable.
  const shape = (rows: AuditRow[], orgId: string) =>
    rows.map((r) => ({
      ...r,
      organization_id: r.organization_id === orgId ? 'ORG' : r.organization_id,
      target_id: r.target_id === orgId ? 'ORG' : r.target_id,
    }));

  // Not an operator: refused, nothing created.
  const plain = cookieOf(await post(h, '/console/sign-in/token', { api_token: await h.apiToken(await h.user(), ['api']) }))!;
  t.equal((await h.inject({ url: '/console/admin/organizations', headers: { cookie: plain } })).statusCode, 403);
  const refused = await post(h, '/console/admin/organizations', { name: 'Sneaky' }, { cookie: plain });
  t.equal(refused.statusCode, 403);
  t.equal((await h.inject({ url: '/console/admin/organizations' })).statusCode, 303, 'signed out: to the sign-in page');

  // An empty name and an unknown owner: errors next to their fields, what was typed kept.
  const empty = await post(h, '/console/admin/organizations', { name: '  ', owner_email: '' }, { cookie: opCookie });
  t.equal(empty.statusCode, 400);
  t.match(empty.body, /id="name-error">Enter a name\./);
  const unknown = await post(h, '/console/admin/organizations', { name: 'Lab <One>', owner_email: 'nobody@example.com' }, { cookie: opCookie });
  t.equal(unknown.statusCode, 400);
  t.match(unknown.body, /id="owner_email-error">No user has this email address/);
  t.match(unknown.body, /id="name" name="name" type="text" value="Lab &lt;One&gt;"/, 'the typed name is kept (escaped)');
  t.match(unknown.body, /value="nobody@example\.com"/);
  t.equal(((await h.inject({ url: '/admin/organizations', headers: bearer(adminToken) })).json() as { organizations: unknown[] }).organizations.length, 0);

  // Create with an owner, in the console and through the API: the same audit rows.
  const created = await post(h, '/console/admin/organizations', { name: 'Lab One', owner_email: 'GRACE@example.com' }, { cookie: opCookie });
  t.equal(created.statusCode, 201);
  t.match(created.body, /Lab One is created, with grace@example\.com as its owner/);
  const consoleOrg = /\/console\/admin\/organizations\/([0-9a-f-]{36})"/.exec(created.body)![1]!;
  const apiCreated = await h.inject({
    method: 'POST',
    url: '/admin/organizations',
    headers: bearer(adminToken),
    payload: { name: 'Lab One', owner_id: owner.id },
  });
  t.equal(apiCreated.statusCode, 201);
  const apiOrg = (apiCreated.json() as { id: string }).id;
  t.same(shape(await audit(consoleOrg), consoleOrg), shape(await audit(apiOrg), apiOrg), 'creation: the same audit rows');
  t.same(
    (await audit(consoleOrg)).map((r) => r.action),
    ['organization.create', 'membership.set'],
  );
  t.equal((await audit(consoleOrg))[0]!.actor_user_id, op.id, 'the operator is the actor');

  // Without an owner.
  const bare = await post(h, '/console/admin/organizations', { name: 'Empty Co', owner_email: '' }, { cookie: opCookie });
  t.equal(bare.statusCode, 201);
  t.match(bare.body, /Empty Co is created, without members yet/);
  const bareId = /\/console\/admin\/organizations\/([0-9a-f-]{36})"/.exec(bare.body)![1]!;
  t.same(
    (await audit(bareId)).map((r) => r.action),
    ['organization.create'],
  );

  // The list: member counts, search by name (any case), copyable IDs.
  const all = await h.inject({ url: '/console/admin/organizations', headers: { cookie: opCookie } });
  t.equal(all.statusCode, 200);
  t.match(all.body, /aria-current="page">Organizations</);
  t.equal(all.body.split('data-copy="o-').length - 1, 3);
  const found = await h.inject({ url: '/console/admin/organizations?q=empty', headers: { cookie: opCookie } });
  t.match(found.body, /Empty Co<\/a><\/td><td><code id="o-0">[0-9a-f-]{36}<\/code>.*?<\/td><td>0<\/td>/s);
  t.notMatch(found.body, /Lab One/);
  const wildcard = await h.inject({ url: '/console/admin/organizations?q=%25', headers: { cookie: opCookie } });
  t.match(wildcard.body, /No organization has a name containing this/, 'LIKE wildcards are matched literally');

  // Members: add by email with a role, change the role, remove; each as the API does it.
  const apiMember = (orgId: string, method: 'PUT' | 'DELETE', userId: string, role?: string) =>
    h.inject({ method, url: `/admin/organizations/${orgId}/members/${userId}`, headers: bearer(adminToken), ...(role ? { payload: { role } } : {}) });
  const noSuch = await post(h, `/console/admin/organizations/${consoleOrg}/members`, { email: 'ghost@example.com', role: 'maintainer' }, { cookie: opCookie });
  t.equal(noSuch.statusCode, 400);
  t.match(noSuch.body, /id="email-error">No user has this email address\./);
  t.match(noSuch.body, /value="ghost@example\.com"/);
  t.match(noSuch.body, /<option value="maintainer" selected>/, 'the chosen role is kept');
  const added = await post(h, `/console/admin/organizations/${consoleOrg}/members`, { email: 'alan@example.com', role: 'maintainer' }, { cookie: opCookie });
  t.equal(added.statusCode, 200);
  t.match(added.body, /alan@example\.com is now maintainer/);
  t.equal((await apiMember(apiOrg, 'PUT', other.id, 'maintainer')).statusCode, 201);
  const changed = await post(h, `/console/admin/organizations/${consoleOrg}/members/${other.id}`, { role: 'member' }, { cookie: opCookie });
  t.match(changed.body, /The role is changed/);
  t.equal((await apiMember(apiOrg, 'PUT', other.id, 'member')).statusCode, 200);
  const removed = await post(h, `/console/admin/organizations/${consoleOrg}/members/${other.id}/remove`, {}, { cookie: opCookie });
  t.match(removed.body, /The member is removed/);
  t.equal((await apiMember(apiOrg, 'DELETE', other.id)).statusCode, 204);
  const lastOwner = await post(h, `/console/admin/organizations/${consoleOrg}/members/${owner.id}/remove`, {}, { cookie: opCookie });
  t.equal(lastOwner.statusCode, 409, 'the last-owner rule of the service holds');
  t.match(lastOwner.body, /class="error-box" role="alert"/);
  t.equal((await apiMember(apiOrg, 'DELETE', owner.id)).statusCode, 409);
  const rows = await audit(consoleOrg);
  t.same(shape(rows, consoleOrg), shape(await audit(apiOrg), apiOrg), 'memberships: the same audit rows');
  t.same(
    rows.map((r) => r.action),
    ['organization.create', 'membership.set', 'membership.set', 'membership.set', 'membership.remove'],
  );

  const detail = await h.inject({ url: `/console/admin/organizations/${consoleOrg}`, headers: { cookie: opCookie } });
  t.equal(detail.statusCode, 200);
  t.match(detail.body, /grace@example\.com<\/td>\s*<td><form[^>]*>.*?<option value="owner" selected>/s);
  t.notMatch(detail.body, /alan@example\.com<\/td>/);
  t.equal((await h.inject({ url: '/console/admin/organizations/00000000-0000-4000-8000-000000000000', headers: { cookie: opCookie } })).statusCode, 404);
  t.equal((await h.inject({ url: `/console/admin/organizations/${consoleOrg}`, headers: { cookie: plain } })).statusCode, 403);
  const plainPut = await post(h, `/console/admin/organizations/${consoleOrg}/members/${other.id}`, { role: 'owner' }, { cookie: plain });
  t.equal(plainPut.statusCode, 403);
});

t.test('the organizations page pages by 50, keeping the name filter in the next link', async (t) => {
  const h = await harness(t);
  const opCookie = cookieOf(await post(h, '/console/sign-in/token', { api_token: await h.apiToken(await h.user(), ['admin']) }))!;
  for (let i = 0; i < 51; i++) await h.org(`Bulk ${i}`);
  await h.org('Other');
  const rowsOf = (body: string) => body.split('data-copy="o-').length - 1;
  const first = await h.inject({ url: '/console/admin/organizations?q=BULK', headers: { cookie: opCookie } });
  t.equal(rowsOf(first.body), 50);
  const next = /<a href="(\/console\/admin\/organizations\?q=BULK&amp;after=[0-9a-f-]{36})">Next page<\/a>/.exec(first.body)?.[1];
  t.ok(next, 'a next link with the filter');
  const second = await h.inject({ url: next!.replace(/&amp;/g, '&'), headers: { cookie: opCookie } });
  t.equal(rowsOf(second.body), 1);
  t.notMatch(second.body, /Next page|>Other</);
  const unfiltered = await h.inject({ url: '/console/admin/organizations', headers: { cookie: opCookie } });
  t.equal(rowsOf(unfiltered.body), 50);
  t.match(unfiltered.body, /href="\/console\/admin\/organizations\?after=[0-9a-f-]{36}">Next page/);
});
