import t from 'tap';
import { ClientCredentials, DpopKey, PrivateKeyJwt } from '../src/client/index.js';
import { freePort, harness } from './support/helper.js';
import { claimsOf } from './support/oauth-helper.js';
import { chromiumMissing, fillKeyPairForm, keyPairToPaste, launchChromium, seriousViolations, watchPage } from './support/browser.js';

// The console's SDK-keys page in a real headless Chromium against a real Tessera on real Postgres:
// a key registered with a pasted public JWK (a refused JWK keeps what was typed and says why), the
// DPoP-bound choice at creation and its switch later, and the key then really getting tokens with
// private_key_jwt from the TypeScript client.

t.test('SDK keys with a public key and DPoP-bound tokens, made in the console', { skip: chromiumMissing }, async (t) => {
  const port = await freePort();
  const issuer = `http://localhost:${port}`;
  const h = await harness(t, { env: { TESSERA_ISSUER: issuer } });
  await h.app.listen({ port, host: '127.0.0.1' });
  const user = await h.user({ email: 'ada@example.com', name: 'Ada' });
  const apiToken = await h.apiToken(user, ['api']);

  const { privateJwk, publicJwkText } = await keyPairToPaste();

  const browser = await launchChromium();
  t.teardown(() => browser.close());
  const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  const page = await context.newPage();
  page.on('dialog', (d) => void d.accept());
  const problems: string[] = [];
  const expecting: { status: number | null } = { status: null };
  watchPage(page, problems, expecting);
  const a11y = async (name: string) => t.same(await seriousViolations(page), [], `${name}: no serious or critical accessibility violation`);

  await page.goto(`${issuer}/console/sign-in`);
  await page.fill('#api_token', apiToken);
  await page.click('button:has-text("Sign in with the token")');
  await page.waitForURL(`${issuer}/console/account`);
  await page.goto(`${issuer}/console/sdk-keys`);
  await a11y('sdk keys');

  // A JWK with its private half: the server's own check refuses it, the form keeps what was typed.
  const privateText = JSON.stringify(privateJwk);
  await fillKeyPairForm(page, { name: 'laptop', jwk: privateText, dpopBound: true });
  expecting.status = 400;
  await page.click('button:has-text("Create key")');
  t.match(await page.textContent('#jwk-error'), /public .*without private members/, 'the API’s reason is next to the field');
  t.equal(await page.inputValue('#jwk'), privateText, 'the pasted text is kept');
  t.equal(await page.inputValue('#name'), 'laptop', 'the name is kept');
  t.ok(await page.isChecked('input[name="auth_method"][value="private_key_jwt"]'), 'the method is kept');
  t.ok(await page.isChecked('#dpop_bound'), 'the DPoP choice is kept');
  t.equal(await page.getAttribute('#jwk', 'aria-invalid'), 'true');
  await a11y('sdk keys (refused JWK)');

  // Not JSON at all.
  await page.fill('#jwk', '{"kty": "EC", oops');
  await page.click('button:has-text("Create key")');
  t.match(await page.textContent('#jwk-error'), /not JSON/);
  t.equal(await page.inputValue('#jwk'), '{"kty": "EC", oops');

  // A pasted key with the secret method chosen: nothing is made, the choice is asked for.
  await page.fill('#jwk', publicJwkText);
  await page.check('input[name="auth_method"][value="client_secret_basic"]');
  await page.click('button:has-text("Create key")');
  t.match(await page.textContent('#auth_method-error'), /You pasted a public key/);
  t.equal(await page.inputValue('#jwk'), publicJwkText);
  await page.check('input[name="auth_method"][value="private_key_jwt"]');

  // A private_key_jwt key without a JWK.
  await page.fill('#jwk', '');
  await page.click('button:has-text("Create key")');
  t.match(await page.textContent('#jwk-error'), /Paste the public key/);
  expecting.status = null;
  t.equal(
    await h.db
      .selectFrom('sdk_keys')
      .select('client_id')
      .execute()
      .then((r) => r.length),
    0,
    'no key was made by the refused forms',
  );

  // The public half: registered, no secret shown, DPoP-bound.
  await page.fill('#jwk', publicJwkText);
  await page.click('button:has-text("Create key")');
  const clientId = (await page.textContent('#registered-client-id'))!.trim();
  t.match(clientId, /^s_[0-9a-f-]{36}$/);
  t.equal(await page.locator('#secret-value').count(), 0, 'no secret exists to show');
  await a11y('sdk keys (registered)');
  const row = page.locator('tr', { hasText: 'laptop' });
  t.match(await row.textContent(), /Key pair \(private_key_jwt\)/);
  t.match(await row.textContent(), /DPoP-bound tokens only/);
  t.equal(await row.locator('button:has-text("Rotate secret")').count(), 0, 'no Rotate secret button for a key without a secret');
  const stored = await h.db
    .selectFrom('sdk_keys')
    .select(['secret_hash', 'public_jwk', 'dpop_bound_access_tokens', 'token_endpoint_auth_method'])
    .where('client_id', '=', clientId)
    .executeTakeFirstOrThrow();
  t.equal(stored.secret_hash, null);
  t.equal(stored.token_endpoint_auth_method, 'private_key_jwt');
  t.equal(stored.dpop_bound_access_tokens, true);
  t.notOk(stored.public_jwk && 'd' in stored.public_jwk);

  // The key really authenticates with private_key_jwt; as it is DPoP-bound, only with a proof.
  const assertions = await PrivateKeyJwt.fromJwk(clientId, privateJwk);
  const dpop = await DpopKey.generate('ES256');
  const bound = await new ClientCredentials({ issuer, privateKeyJwt: assertions, dpop, env: {} }).getAccessToken();
  t.equal(bound.tokenType, 'DPoP');
  t.same(claimsOf(bound.accessToken).cnf, { jkt: await dpop.thumbprint() });
  t.equal(claimsOf(bound.accessToken).client_id, clientId);
  await t.rejects(new ClientCredentials({ issuer, privateKeyJwt: assertions, env: {} }).getToken(), { code: 'invalid_request' }, 'no bearer token');

  // Switched off: bearer tokens again; switched on: refused again.
  await row.locator('button:has-text("Allow bearer tokens")').click();
  t.match(await page.textContent('.notice'), /may get bearer tokens again/);
  t.match(await page.locator('tr', { hasText: 'laptop' }).textContent(), /Bearer or DPoP tokens/);
  const bearer = await new ClientCredentials({ issuer, privateKeyJwt: assertions, env: {} }).getAccessToken();
  t.equal(bearer.tokenType, 'Bearer');
  t.notOk(claimsOf(bearer.accessToken).cnf);
  await page.locator('tr', { hasText: 'laptop' }).locator('button:has-text("Require DPoP")').click();
  t.match(await page.textContent('.notice'), /DPoP-bound tokens only/);
  await t.rejects(new ClientCredentials({ issuer, privateKeyJwt: assertions, env: {} }).getToken(), { code: 'invalid_request' });
  const audit = await h.db.selectFrom('audit_events').select('action').where('target_id', '=', clientId).orderBy('id').execute();
  t.same(
    audit.map((a) => a.action),
    ['sdk_key.create', 'sdk_key.dpop_binding', 'sdk_key.dpop_binding'],
  );

  // A secret key beside it keeps its Rotate secret button and shows its method.
  await page.fill('#name', 'ci');
  await page.click('button:has-text("Create key")');
  await page.waitForSelector('#secret-value');
  const secretRow = page.locator('tr', { hasText: 'ci' }).filter({ hasNotText: 'laptop' });
  t.match(await secretRow.textContent(), /Secret/);
  t.match(await secretRow.textContent(), /Bearer or DPoP tokens/);
  t.equal(await secretRow.locator('button:has-text("Rotate secret")').count(), 1);
  await a11y('sdk keys (two kinds)');

  t.same(problems, [], 'no console errors or warnings');
});
