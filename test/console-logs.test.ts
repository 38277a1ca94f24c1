import t from 'tap';
import { Writable } from 'node:stream';
import pino from 'pino';
import { buildApp } from '../src/app.js';
import { createDb } from '../src/platform/database/database.js';
import { migrateToLatest } from '../src/platform/database/migrate.js';
import { loggerOptions } from '../src/platform/log.js';
import { createUser } from '../src/identity/users.repository.js';
import { createOrganization, upsertMembership } from '../src/identity/organizations.repository.js';
import { issueApiToken } from '../src/api-tokens/api-tokens.service.js';
import { bearer, contractValidator, freshDatabase, testConfig } from './support/helper.js';

// Every secret the console shows once (or is typed into it) stays out of the logs, even at the most
// verbose level: a real pino logger at 'trace' writes into a captured stream while the console's
// flows run, and no line holds any of those values.

const ORIGIN = 'http://localhost:8080';
const form = (o: Record<string, string | string[]>) => {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(o)) for (const x of Array.isArray(v) ? v : [v]) p.append(k, x);
  return p.toString();
};
const cookieOf = (res: { headers: Record<string, unknown> }) => {
  const raw = res.headers['set-cookie'];
  const all = (Array.isArray(raw) ? raw : [raw]).filter((x): x is string => typeof x === 'string');
  const c = all.find((x) => x.startsWith('tessera_console=') && !x.startsWith('tessera_console=;'));
  return c ? c.split(';')[0]! : null;
};
const shown = (body: string) => /<code id="secret-value" class="wrap">([^<]+)<\/code>/.exec(body)?.[1];

t.test('secrets shown once or typed into the console never reach a log line, even at trace level', async (t) => {
  const connectionString = await freshDatabase(t);
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(chunk.toString());
      cb();
    },
  });
  const log = pino(loggerOptions('trace'), stream);
  const config = testConfig(connectionString, { TESSERA_LOG_LEVEL: 'trace' });
  const handle = createDb({ connectionString, max: 5, log });
  await migrateToLatest(handle.db);
  const app = await buildApp({ config, db: handle.db, connectionString, logger: log, inspectResponse: contractValidator(t).inspect });
  t.teardown(async () => {
    await app.close();
    await handle.close();
  });
  await app.ready();
  await app.jobs.start();
  const post = (url: string, body: Record<string, string | string[]>, cookie?: string) =>
    app.inject({
      method: 'POST',
      url,
      payload: form(body),
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: ORIGIN, ...(cookie ? { cookie } : {}) },
    });

  const secrets: Record<string, string> = {};
  const opUser = await createUser(handle.db, { email: 'op@example.com', name: 'Op' });
  const { token: opToken } = await issueApiToken(handle.db, config.pepper, { userId: opUser.id, name: 'boot', scopes: ['api', 'admin'], expiresAt: null });
  secrets['operator API token'] = opToken;

  // The operator signs in with the bootstrap token and invites a person from the console.
  const opSignIn = await post('/console/sign-in/token', { api_token: opToken });
  t.equal(opSignIn.statusCode, 303);
  const opCookie = cookieOf(opSignIn)!;
  secrets['operator session cookie'] = opCookie.split('=')[1]!;
  const invited = await post('/console/admin/users/invite', { email: 'lin@example.com', name: 'Lin', scopes: ['api', 'quantum_tokens'] }, opCookie);
  t.equal(invited.statusCode, 201);
  const link = shown(invited.body)!;
  t.match(link, /\/console\/invitation#[A-Za-z0-9_-]{43}$/);
  const code = link.split('#')[1]!;
  secrets['invitation code'] = code;

  // The same through the admin API.
  const apiInvite = await app.inject({ method: 'POST', url: `/admin/users/${opUser.id}/invitations`, headers: bearer(opToken), payload: {} });
  t.equal(apiInvite.statusCode, 201);
  secrets['admin API invitation code'] = (apiInvite.json() as { url: string }).url.split('#')[1]!;

  // The invited person opens the link and sets a password, then signs in with it.
  t.equal((await app.inject({ url: '/console/invitation' })).statusCode, 200);
  const password = 'lilac-meridian-compass-77';
  secrets.password = password;
  const set = await post('/console/invitation/password', { code, password, confirm: password });
  t.equal(set.statusCode, 303);
  const signIn = await post('/console/sign-in/password', { email: 'lin@example.com', password });
  t.equal(signIn.statusCode, 303);
  const cookie = cookieOf(signIn)!;
  secrets['session cookie'] = cookie.split('=')[1]!;
  t.equal((await post('/console/sign-in/password', { email: 'lin@example.com', password: `${password}-wrong` })).statusCode, 401);
  secrets['wrong password'] = `${password}-wrong`;
  const changed = 'saffron-glacier-willow-31';
  secrets['new password'] = changed;
  t.equal((await post('/console/password', { password: changed, confirm: changed }, cookie)).statusCode, 200);

  // A personal access token, used against the API.
  const made = await post('/console/tokens', { name: 'laptop', scopes: ['api', 'quantum_tokens'], expires: '30d' }, cookie);
  t.equal(made.statusCode, 201);
  const pat = shown(made.body)!;
  t.ok(pat, 'the PAT is shown');
  secrets.PAT = pat;
  t.equal((await app.inject({ url: '/api/users/me', headers: bearer(pat) })).statusCode, 200);

  // An SDK key, used for a client_credentials token.
  const key = await post('/console/sdk-keys', { name: 'ci', scopes: ['quantum_tokens'] }, cookie);
  t.equal(key.statusCode, 201);
  const clientSecret = shown(key.body)!;
  t.ok(clientSecret, 'the SDK client secret is shown');
  secrets['SDK client secret'] = clientSecret;
  const clientId = /client ID ([^)\s]+)\)/.exec(key.body)?.[1];
  t.ok(clientId, 'the client id is shown');
  const cc = await app.inject({
    method: 'POST',
    url: '/oauth/token',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: form({ grant_type: 'client_credentials', client_id: clientId!, client_secret: clientSecret }),
  });
  t.equal(cc.statusCode, 200);
  secrets['SDK access token'] = (cc.json() as { access_token: string }).access_token;

  // Provider tokens: personal, and an organization's saved by its owner.
  secrets['provider token'] = 'ionq-personal-secret-value-4242';
  t.equal((await post('/console/provider-tokens/ionq', { api_key: secrets['provider token']!, label: 'mine' }, cookie)).statusCode, 200);
  const resolved = await app.inject({ url: '/api/provider-tokens/ionq/resolve', headers: bearer(pat) });
  t.match(resolved.body, /ionq-personal-secret-value-4242/);
  const org = await createOrganization(handle.db, 'Lab');
  const lin = (await app.inject({ url: '/api/users/me', headers: bearer(pat) })).json() as { id: string };
  await upsertMembership(handle.db, org.id, lin.id, 'owner');
  secrets['organization provider token'] = 'ionq-org-secret-value-8686';
  t.equal((await post(`/console/organizations/${org.id}/provider-tokens/ionq`, { api_key: secrets['organization provider token']! }, cookie)).statusCode, 200);

  await new Promise((r) => setImmediate(r));
  const all = lines.join('');
  t.ok(lines.length > 20, `the logger wrote (${lines.length} lines)`);
  t.match(all, /"level":20/, 'debug lines included');
  for (const [what, value] of Object.entries(secrets)) t.notOk(all.includes(value), `the ${what} is in no log line`);
});
