// Saved accounts and branding in the TypeScript client: the file format the Python client shares
// (~/.tessera/accounts.json, 0600, refused when others can read it), resolution from a saved account
// against a real listening Tessera, and a platform's own prefix, default issuer and file.
import t from 'tap';
import { chmodSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  ClientCredentials,
  deleteAccount,
  listAccounts,
  loadAccount,
  resolveCredentials,
  saveAccount,
  TesseraConfigError,
  TokenLogin,
} from '../src/client/index.js';
import { claimsOf, createSdkKey } from './support/oauth-helper.js';
import { liveTessera } from './support/client-helper.js';

const home = () => mkdtempSync(path.join(tmpdir(), 'tessera-home-'));

t.test('save, load, list, delete: the shared file format, created 0600, first account the default', async (t) => {
  const env = { HOME: home() };
  const file = path.join(env.HOME, '.tessera', 'accounts.json');
  saveAccount('dev', { issuer: 'https://auth.example.com', clientId: 's_1', clientSecret: 'sec1' }, { env });
  saveAccount('ops', { issuer: 'https://auth.example.com', apiToken: 'tsr_pat_x', organizationId: 'org-1' }, { env });
  t.equal(statSync(file).mode & 0o777, 0o600, 'created 0600');
  t.equal(statSync(path.dirname(file)).mode & 0o777, 0o700, 'its folder 0700');
  t.same(JSON.parse(readFileSync(file, 'utf8')), {
    version: 1,
    default: 'dev',
    accounts: {
      dev: { issuer: 'https://auth.example.com', client_id: 's_1', client_secret: 'sec1', secret_store: 'file' },
      ops: { issuer: 'https://auth.example.com', organization_id: 'org-1', api_token: 'tsr_pat_x', secret_store: 'file' },
    },
  });
  t.match(loadAccount(undefined, { env }), { name: 'dev', clientId: 's_1', clientSecret: 'sec1', isDefault: true });
  saveAccount('ops', { issuer: 'https://auth.example.com', apiToken: 'tsr_pat_y', setAsDefault: true }, { env });
  t.match(loadAccount(undefined, { env }), { name: 'ops', apiToken: 'tsr_pat_y', isDefault: true });
  t.same(
    listAccounts({ env }).map((a) => [a.name, a.isDefault]),
    [
      ['dev', false],
      ['ops', true],
    ],
  );
  deleteAccount('ops', { env });
  t.same(
    listAccounts({ env }).map((a) => a.name),
    ['dev'],
  );
  t.throws(() => loadAccount(undefined, { env }), /no default account in .*accounts\.json/);
  t.throws(() => deleteAccount('ops', { env }), /no account named 'ops'/);
});

t.test('clear errors: a file others can read, an unknown account, a keyring-held secret, bad JSON', async (t) => {
  const env = { HOME: home() };
  const file = path.join(env.HOME, '.tessera', 'accounts.json');
  saveAccount('dev', { issuer: 'https://a.example.com', clientId: 's_1', clientSecret: 'x' }, { env });
  saveAccount('prod', { issuer: 'https://a.example.com', clientId: 's_2', clientSecret: 'y' }, { env });
  const err = (() => {
    try {
      loadAccount('staging', { env });
    } catch (e) {
      return e as Error;
    }
    return null;
  })();
  t.type(err, TesseraConfigError);
  t.match(err?.message, `no account named 'staging' in ${file} (saved accounts: dev, prod)`);
  t.throws(() => new ClientCredentials({ account: 'staging', env }), TesseraConfigError);

  chmodSync(file, 0o644);
  t.throws(() => loadAccount('dev', { env }), { message: new RegExp(`${file} can be read by other users .*chmod 600 ${file}`) });
  t.throws(() => resolveCredentials({ env }), /chmod 600/);
  chmodSync(file, 0o600);

  // What the Python client writes when the secret went to the system keyring.
  writeFileSync(
    file,
    JSON.stringify({ version: 1, default: 'k', accounts: { k: { issuer: 'https://a.example.com', client_id: 's_3', secret_store: 'keyring' } } }),
    {
      mode: 0o600,
    },
  );
  t.throws(() => loadAccount('k', { env }), /system keyring, which this client cannot read/);
  writeFileSync(file, '{oops', { mode: 0o600 });
  t.throws(() => loadAccount('k', { env }), new RegExp(`accounts file ${file} is not valid JSON`));
});

t.test('resolution: options, account option, key file, variables, then TESSERA_ACCOUNT or the default account', async (t) => {
  const live = await liveTessera(t);
  const u1 = await live.h.user();
  const u2 = await live.h.user();
  const [a, b] = [await createSdkKey(live.h, u1, { name: 'a' }), await createSdkKey(live.h, u1, { name: 'b' })];
  const [c, d] = [await createSdkKey(live.h, u2, { name: 'c' }), await createSdkKey(live.h, u2, { name: 'd' })];
  const HOME = home();
  const keyFile = path.join(HOME, 'key.json');
  writeFileSync(keyFile, JSON.stringify({ client_id: b.client_id, client_secret: b.client_secret }));
  saveAccount('a', { issuer: live.issuer, clientId: a.client_id, clientSecret: a.client_secret }, { env: { HOME } });
  saveAccount(
    'd',
    { issuer: live.issuer, clientId: d.client_id, clientSecret: d.client_secret, organizationId: 'org-d', setAsDefault: true },
    { env: { HOME } },
  );
  const vars = { TESSERA_CLIENT_ID: c.client_id, TESSERA_CLIENT_SECRET: c.client_secret };
  const full = { HOME, TESSERA_URL: live.issuer, TESSERA_SDK_KEY: keyFile, ...vars };

  t.match(resolveCredentials({ account: 'a', env: full }), { clientId: a.client_id, source: 'account', issuer: live.issuer });
  t.match(resolveCredentials({ env: full }), { clientId: b.client_id, source: 'key_file' });
  t.match(resolveCredentials({ env: { HOME, ...vars } }), { clientId: c.client_id, source: 'environment' });
  t.match(resolveCredentials({ env: { HOME, TESSERA_ACCOUNT: 'a' } }), { clientId: a.client_id, account: 'a' });
  t.match(resolveCredentials({ env: { HOME } }), { clientId: d.client_id, source: 'account', account: 'd', organizationId: 'org-d' });

  // A saved account alone: credentials, issuer and organization.
  const cc = new ClientCredentials({ env: { HOME } });
  t.equal(cc.issuer, live.issuer);
  t.equal(claimsOf(await cc.getToken()).client_id, d.client_id);
  t.equal(await cc.organizationId(), 'org-d');

  // Token login from a saved account's API token.
  const apiToken = await live.h.apiToken(u1, ['api']);
  saveAccount('pat', { issuer: live.issuer, apiToken }, { env: { HOME } });
  const login = new TokenLogin({ account: 'pat', env: { HOME } });
  t.match(await login.getToken(), /^tsr_ses_/);
  t.throws(() => new TokenLogin({ account: 'a', env: { HOME } }), /holds no api_token/);
  // A default account without an API token does not stand in the way of a token passed to login().
  const plain = new TokenLogin({ env: { HOME, TESSERA_URL: live.issuer } });
  t.match((await plain.login(apiToken)).token, /^tsr_ses_/);
});

t.test('branding: prefix, default issuer and accounts file of a platform', async (t) => {
  const live = await liveTessera(t);
  const key = await createSdkKey(live.h, await live.h.user());
  const HOME = home();
  const branding = { envPrefix: 'QPLAT', defaultIssuer: live.issuer, accountsFile: '~/.qplat/accounts.json', product: 'QPlat' };
  const cc = new ClientCredentials({ branding, env: { HOME, QPLAT_CLIENT_ID: key.client_id, QPLAT_CLIENT_SECRET: key.client_secret } });
  t.equal(cc.issuer, live.issuer, 'the default issuer');
  t.equal(claimsOf(await cc.getToken()).client_id, key.client_id);
  t.throws(
    () => new ClientCredentials({ branding, env: { HOME, TESSERA_CLIENT_ID: 'x', TESSERA_CLIENT_SECRET: 'y' } }),
    /no QPlat credentials: .*QPLAT_SDK_KEY/,
  );
  t.throws(() => new ClientCredentials({ branding, env: { HOME, QPLAT_CLIENT_ID: 'x' } }), /QPLAT_CLIENT_SECRET is not set/);
  saveAccount('q', { clientId: key.client_id, clientSecret: key.client_secret }, { branding, env: { HOME } });
  t.ok(statSync(path.join(HOME, '.qplat', 'accounts.json')).isFile());
  t.match(resolveCredentials({ branding, env: { HOME } }), { source: 'account', account: 'q' });
  const other = path.join(HOME, 'elsewhere.json');
  saveAccount('e', { clientId: 's_e', clientSecret: 'z' }, { branding, env: { HOME, QPLAT_ACCOUNTS_FILE: other } });
  t.ok(statSync(other).isFile(), '<PREFIX>_ACCOUNTS_FILE overrides the file');
});
