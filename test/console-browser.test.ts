import t from 'tap';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Page, Response } from 'playwright-core';
import { bearer, freePort, harness } from './support/helper.js';
import {
  addVirtualAuthenticator,
  chromiumMissing,
  fillKeyPairForm,
  keyPairToPaste,
  launchChromium,
  newAuthenticator,
  seriousViolations,
  watchPage,
} from './support/browser.js';

// A new person's first visit in a real headless Chromium against a real Tessera on real Postgres:
// invited by an operator, they create a passkey, sign out and back in with it, make a personal
// access token and an SDK key and use both, and sign out. Screenshots for the README come from here.

// `npm run screenshots` writes them to docs/screenshots (the README's); any other run to .tap/screenshots,
// so a test run leaves the working tree as it was.
const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const SHOTS = path.resolve(ROOT, process.env.TESSERA_SCREENSHOTS_DIR ?? path.join('.tap', 'screenshots'));

t.test('the console as a new user meets it', { skip: chromiumMissing }, async (t) => {
  const port = await freePort();
  const issuer = `http://localhost:${port}`;
  const h = await harness(t, { env: { TESSERA_ISSUER: issuer } });
  await h.app.listen({ port, host: '127.0.0.1' });
  mkdirSync(SHOTS, { recursive: true });

  // The operator creates the user and an invitation through the admin API.
  const operator = await h.apiToken(await h.user({ email: 'operator@example.com', name: 'Operator' }), ['admin']);
  const created = await fetch(`${issuer}/admin/users`, {
    method: 'POST',
    headers: { ...bearer(operator), 'content-type': 'application/json' },
    body: JSON.stringify({ email: 'grace@example.com', name: 'Grace Hopper' }),
  });
  t.equal(created.status, 201);
  const user = (await created.json()) as { id: string };
  const org = await h.org('Quantum Lab', [[{ id: user.id } as never, 'owner']]);
  const invited = await fetch(`${issuer}/admin/users/${user.id}/invitations`, {
    method: 'POST',
    headers: { ...bearer(operator), 'content-type': 'application/json' },
    body: JSON.stringify({ scopes: ['api', 'quantum_tokens'] }),
  });
  t.equal(invited.status, 201);
  const { url: invitation } = (await invited.json()) as { url: string };

  const browser = await launchChromium();
  t.teardown(() => browser.close());
  const context = await browser.newContext({ viewport: { width: 1100, height: 800 }, acceptDownloads: true });
  const page = await context.newPage();
  const authn = await addVirtualAuthenticator(context, page);
  page.on('dialog', (d) => void d.accept());

  const problems: string[] = [];
  // A form sent with mistakes on purpose answers 400, which Chromium logs as a failed load.
  const expecting: { status: number | null } = { status: null };
  watchPage(page, problems, expecting);
  const documents: Array<{ url: string; status: number; csp: string }> = [];
  const record = (r: Response) => {
    if (r.request().resourceType() === 'document') documents.push({ url: r.url(), status: r.status(), csp: r.headers()['content-security-policy'] ?? '' });
  };
  page.on('response', record);

  const pagesChecked: string[] = [];
  async function check(p: Page, name: string) {
    await p.waitForLoadState('load');
    const violations = await seriousViolations(p);
    t.same(violations, [], `${name}: no serious or critical accessibility violation`);
    pagesChecked.push(name);
  }
  const shot = (name: string) => page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });

  // The invitation: the code arrives in the fragment and leaves the address bar.
  await page.goto(invitation);
  t.equal(await page.inputValue('#code'), invitation.split('#')[1], 'the code is filled in from the link');
  t.notOk(page.url().includes('#'), 'the code is no longer in the address bar');
  await check(page, 'invitation');
  await shot('invitation');
  await page.fill('#passkey_name', 'Laptop passkey');
  await page.click('button[data-passkey="invite"]');
  await page.waitForURL(`${issuer}/console/account`);
  t.match(await page.textContent('main'), /Grace Hopper/);
  t.match(await page.textContent('main'), new RegExp(org.id), 'the organization id is shown');
  await check(page, 'account');
  await shot('account');

  // Cookie flags.
  const cookies = await context.cookies(issuer);
  const session = cookies.find((c) => c.name === 'tessera_console');
  t.ok(session, 'the session cookie (plain-http localhost issuer: no __Host- prefix)');
  t.equal(session?.httpOnly, true);
  t.equal(session?.sameSite, 'Lax');
  t.equal(session?.path, '/');
  t.equal(session?.secure, false, 'not Secure over plain http');

  // Sign out, then in again with the passkey.
  await page.click('header button:has-text("Sign out")');
  await page.waitForSelector('h1:has-text("Signed out")');
  await page.goto(`${issuer}/console`);
  await page.waitForURL(`${issuer}/console/sign-in`);
  await check(page, 'sign-in');
  await shot('sign-in');
  await page.click('button[data-passkey="sign-in"]');
  await page.waitForURL(`${issuer}/console/account`);

  // A personal access token: shown once, works against the API, gone from later pages.
  await page.goto(`${issuer}/console/tokens`);
  expecting.status = 400;
  await page.click('button:has-text("Create token")');
  t.match(await page.textContent('#name-error'), /Give the token a name/, 'the error is next to the field');
  expecting.status = null;
  await page.fill('#name', 'notebook');
  await page.check('input[name="scopes"][value="api"]');
  await page.check('input[name="scopes"][value="quantum_tokens"]');
  await page.selectOption('#expires', '30d');
  await page.click('button:has-text("Create token")');
  let pat = (await page.textContent('#secret-value'))!.trim();
  t.match(pat, /^\S{40,}$/);
  await check(page, 'tokens (token shown once)');
  await shot('access-token-created');
  const me = await fetch(`${issuer}/api/users/me`, { headers: bearer(pat) });
  t.equal(me.status, 200);
  t.equal(((await me.json()) as { id: string }).id, user.id);
  await page.goto(`${issuer}/console/tokens`);
  t.notOk((await page.content()).includes(pat), 'the token is not on a later page');
  t.match(await page.textContent('main'), /notebook/);

  // Regenerate it: a new value shown once; the old one is refused at once.
  await page.click('tr:has-text("notebook") button:has-text("Regenerate")');
  const regenerated = (await page.textContent('#secret-value'))!.trim();
  t.not(regenerated, pat);
  await check(page, 'tokens (regenerated)');
  t.equal((await fetch(`${issuer}/api/users/me`, { headers: bearer(pat) })).status, 401, 'the old value is refused');
  t.equal((await fetch(`${issuer}/api/users/me`, { headers: bearer(regenerated) })).status, 200, 'the new value works');
  pat = regenerated;

  // An SDK key: secret shown once, key file downloaded, client_credentials gets a JWT.
  await page.goto(`${issuer}/console/sdk-keys`);
  await check(page, 'sdk keys');
  await page.fill('#name', 'ci runner');
  await page.click('button:has-text("Create key")');
  await page.waitForSelector('#secret-value');
  await shot('sdk-key-created');
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download-key')]);
  const keyFile = JSON.parse(readFileSync((await download.path())!, 'utf8')) as { client_id: string; client_secret: string; issuer: string };
  t.same(Object.keys(keyFile).sort(), ['client_id', 'client_secret', 'issuer']);
  t.equal(keyFile.issuer, issuer);
  const tokenRes = await fetch(`${issuer}/oauth/token`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${encodeURIComponent(keyFile.client_id)}:${encodeURIComponent(keyFile.client_secret)}`).toString('base64')}`,
    },
    body: 'grant_type=client_credentials',
  });
  t.equal(tokenRes.status, 200);
  const jwt = ((await tokenRes.json()) as { access_token: string }).access_token;
  t.match(jwt, /^[\w-]+\.[\w-]+\.[\w-]+$/, 'a JWT');
  await page.goto(`${issuer}/console/sdk-keys`);
  t.notOk((await page.content()).includes(keyFile.client_secret), 'the secret is not on a later page');
  // Rotate the secret, the previous one stopping at once: the new secret is shown once and works.
  await page.selectOption('#overlap-0', 'now');
  await page.click('button:has-text("Rotate secret")');
  const rotatedSecret = (await page.textContent('#secret-value'))!.trim();
  t.not(rotatedSecret, keyFile.client_secret);
  await check(page, 'sdk keys (secret rotated)');
  const withSecret = (secret: string) =>
    fetch(`${issuer}/oauth/token`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`${encodeURIComponent(keyFile.client_id)}:${encodeURIComponent(secret)}`).toString('base64')}`,
      },
      body: 'grant_type=client_credentials',
    });
  t.equal((await withSecret(keyFile.client_secret)).status, 401, 'the previous secret stopped');
  t.equal((await withSecret(rotatedSecret)).status, 200, 'the new secret works');
  await page.goto(`${issuer}/console/sdk-keys`);
  await page.click('button:has-text("Disable")');
  t.match(await page.textContent('main'), /disabled/);

  // A key pair instead of a secret: the public JWK pasted, DPoP-bound tokens chosen; the key is listed with its method.
  await fillKeyPairForm(page, { name: 'laptop', jwk: (await keyPairToPaste()).publicJwkText, dpopBound: true });
  await check(page, 'sdk keys (key-pair form)');
  await page.evaluate("document.getElementById('jwk').scrollTop = 0"); // the pasted key from its first line
  await page.locator('section[aria-labelledby="create-h"]').screenshot({ path: path.join(SHOTS, 'sdk-key-form-key-pair.png') });
  await page.click('button:has-text("Create key")');
  t.match(await page.textContent('#registered-client-id'), /^\s*s_[0-9a-f-]{36}\s*$/, 'registered: its client_id shown');
  t.equal(await page.locator('#secret-value').count(), 0, 'no secret exists to show');
  const keyPairRow = page.locator('tr', { hasText: 'laptop' });
  t.match(await keyPairRow.textContent(), /Key pair \(private_key_jwt\)/);
  t.match(await keyPairRow.textContent(), /DPoP-bound tokens only/);
  await check(page, 'sdk keys (key pair registered)');
  await shot('sdk-key-pair-registered');

  // A provider token from the form generated from the provider's JSON Schema; resolve returns it.
  await page.goto(`${issuer}/console/provider-tokens`);
  expecting.status = 400;
  await page.click('button:has-text("Save the IonQ credential")');
  t.match(await page.textContent('#ionq-api_key-error'), /Fill this in/, 'the missing field is named next to it');
  expecting.status = null;
  await page.fill('#ionq-api_key', 'ionq-live-secret-0123456789abcd');
  await page.fill('#ionq-label', 'lab account');
  await page.click('button:has-text("Save the IonQ credential")');
  await page.waitForSelector('text=Your IonQ credential is saved.');
  t.notOk((await page.content()).includes('ionq-live-secret-0123456789abcd'), 'the secret is write-only');
  t.match(await page.textContent('main'), /…abcd/, 'only a hint is shown');
  await check(page, 'provider tokens');
  await shot('provider-tokens');
  const resolved = await fetch(`${issuer}/api/provider-tokens/ionq/resolve`, { headers: bearer(pat) });
  t.equal(resolved.status, 200);
  t.match(await resolved.text(), /ionq-live-secret-0123456789abcd/, 'resolve returns the saved credential');

  // The organization, as its owner sees it.
  await page.goto(`${issuer}/console/account`);
  await page.click('a:has-text("Quantum Lab")');
  t.match(await page.textContent('main'), /Your role: owner/);
  await check(page, 'organization');
  await shot('organization');

  // Sign-in methods and sessions; a phone-sized view of it.
  await page.goto(`${issuer}/console/security`);
  t.match(await page.textContent('main'), /Laptop passkey/);
  await page.fill('#pk-0', 'Work laptop');
  await page.click('button:has-text("Rename")');
  t.match(await page.textContent('.notice'), /renamed/);
  t.equal(await page.inputValue('#pk-0'), 'Work laptop', 'the passkey has its new name');
  // A second device: its own passkey, then the first one removed; signing in uses the new one.
  await authn.cdp.send('WebAuthn.removeVirtualAuthenticator', { authenticatorId: authn.authenticatorId });
  await newAuthenticator(authn.cdp);
  await page.fill('#passkey_name', 'Phone');
  await page.click('button[data-passkey="register"]');
  await page.waitForSelector('#pk-1');
  t.equal(await page.inputValue('#pk-1'), 'Phone', 'a second passkey');
  await page.click('button:has-text("Remove Work laptop")');
  await page.waitForSelector('text=The passkey is removed.');
  t.equal(await page.inputValue('#pk-0'), 'Phone');
  t.equal(await page.locator('#pk-1').count(), 0, 'one passkey left');
  await page.click('header button:has-text("Sign out")');
  await page.waitForSelector('h1:has-text("Signed out")');
  await page.goto(`${issuer}/console/sign-in`);
  await page.click('button[data-passkey="sign-in"]');
  await page.waitForURL(`${issuer}/console/account`);
  await page.goto(`${issuer}/console/security`);
  await check(page, 'sign-in and sessions');
  await shot('sessions-and-passkeys');
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${issuer}/console/account`);
  await shot('account-phone');
  const overflow = await page.evaluate('document.documentElement.scrollWidth > window.innerWidth + 1');
  t.notOk(overflow, 'no sideways scrolling on a phone-sized screen');

  // Sign-out ends the session: the old cookie gets the sign-in page, here and on another instance.
  const old = (await context.cookies(issuer)).find((c) => c.name === 'tessera_console')!.value;
  await page.click('header button:has-text("Sign out")');
  await page.waitForSelector('h1:has-text("Signed out")');
  const replay = await fetch(`${issuer}/console/account`, { headers: { cookie: `tessera_console=${old}` }, redirect: 'manual' });
  t.equal(replay.status, 303);
  t.equal(replay.headers.get('location'), '/console/sign-in');
  const other = await h.instance();
  const elsewhere = await other.inject({ url: '/console/account', headers: { cookie: `tessera_console=${old}` } });
  t.equal(elsewhere.headers.location, '/console/sign-in', 'another instance agrees');

  // A cross-origin form post from another site's page is refused.
  const evil = await fetch(`${issuer}/console/sign-out-everywhere`, {
    method: 'POST',
    headers: { origin: 'https://evil.example', 'content-type': 'application/x-www-form-urlencoded' },
    body: '',
    redirect: 'manual',
  });
  t.equal(evil.status, 403);

  // The operator, signed in with their admin API token: invites someone, creates an organization
  // with them as its owner, rotates the signing key (the JWKS shows the new key), reads the audit log.
  const ops = await browser.newContext({ viewport: { width: 1100, height: 800 } });
  const opPage = await ops.newPage();
  opPage.on('dialog', (d) => void d.accept());
  watchPage(opPage, problems, expecting);
  opPage.on('response', record);
  await opPage.goto(`${issuer}/console/sign-in`);
  await opPage.fill('#api_token', operator);
  await opPage.click('button:has-text("Sign in with the token")');
  await opPage.waitForURL(`${issuer}/console/account`);
  await opPage.click('nav a:has-text("Users")');
  await opPage.fill('#email', 'alan@example.com');
  await opPage.fill('#name', 'Alan Turing');
  await opPage.click('button:has-text("Create invitation link")');
  t.match(await opPage.textContent('#secret-value'), /\/console\/invitation#[A-Za-z0-9_-]{43}$/, 'an invitation link, shown once');
  await check(opPage, 'operator users');
  await opPage.screenshot({ path: path.join(SHOTS, 'operator-users.png'), fullPage: true });
  t.match(await opPage.textContent('main'), /alan@example\.com/);

  // Organizations: created with its first owner, then opened from the list.
  await opPage.click('nav a:has-text("Organizations")');
  await opPage.fill('#name', 'Photonics Group');
  await opPage.fill('#owner_email', 'alan@example.com');
  await opPage.click('button:has-text("Create the organization")');
  t.match(await opPage.textContent('.notice'), /Photonics Group is created, with alan@example\.com as its owner/);
  await check(opPage, 'operator organizations');
  await opPage.screenshot({ path: path.join(SHOTS, 'operator-organizations.png'), fullPage: true });
  await opPage.click('table a:has-text("Photonics Group")');
  await opPage.waitForURL(/\/console\/admin\/organizations\/[0-9a-f-]{36}$/);
  t.equal(await opPage.inputValue('select[id^="role-"]'), 'owner', 'alan@example.com is its owner');
  await check(opPage, 'operator organization');

  const kidsBefore = ((await (await fetch(`${issuer}/.well-known/jwks.json`)).json()) as { keys: Array<{ kid: string }> }).keys.map((k) => k.kid);
  await opPage.click('nav a:has-text("Signing keys")');
  await opPage.check('input[name="immediate"]');
  await opPage.click('button:has-text("Rotate the signing key")');
  const notice = (await opPage.textContent('.notice'))!;
  const newKid = /Key (\S+) signs from now on/.exec(notice)?.[1];
  t.ok(newKid, `rotated: ${notice}`);
  const kidsAfter = ((await (await fetch(`${issuer}/.well-known/jwks.json`)).json()) as { keys: Array<{ kid: string }> }).keys.map((k) => k.kid);
  t.notOk(kidsBefore.includes(newKid!), 'a new key');
  t.ok(kidsAfter.includes(newKid!), 'the JWKS shows the new key');
  expecting.status = 400;
  await opPage.fill('#kid', newKid!);
  await opPage.fill('#confirm_kid', 'something else');
  await opPage.click('button:has-text("Revoke the key")');
  t.match(await opPage.textContent('#confirm_kid-error'), /Type the same key ID/, 'revocation needs the key ID typed twice');
  expecting.status = null;
  await check(opPage, 'operator signing keys');
  await opPage.screenshot({ path: path.join(SHOTS, 'operator-signing-keys.png'), fullPage: true });
  await opPage.click('nav a:has-text("Audit log")');
  await opPage.fill('#action', 'signing_key.rotate');
  await opPage.click('button:has-text("Filter")');
  await check(opPage, 'operator audit log');
  await opPage.goto(`${issuer}/console/admin/audit`);
  t.match(await opPage.textContent('main'), /user\.invite/);
  await opPage.screenshot({ path: path.join(SHOTS, 'operator-audit.png'), fullPage: true });
  await ops.close();

  // Every HTML page carried the CSP, and nothing broke under it.
  t.ok(documents.length >= 10, `${documents.length} pages loaded`);
  for (const d of documents) {
    if (d.status >= 300 && d.status < 400) continue;
    t.match(d.csp, /default-src 'none'.*frame-ancestors 'none'/, `CSP on ${d.url}`);
    t.notMatch(d.csp, /unsafe-inline/);
  }
  t.same(problems, [], 'no console errors or warnings on any page');
  t.ok(pagesChecked.length >= 6, `axe ran on ${pagesChecked.length} pages`);
});
