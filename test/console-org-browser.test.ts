import t from 'tap';
import type { BrowserContext, Page } from 'playwright-core';
import { bearer, freePort, harness } from './support/helper.js';
import { chromiumMissing, launchChromium } from './support/browser.js';

// An organization in a real headless Chromium: its owner adds a maintainer on the organization page,
// the maintainer (after accepting) saves an organization provider token there, and a member sees it
// read-only: no form, and a post made anyway is refused. The API resolves the maintainer's value.

t.test('an organization owner adds a maintainer who sets a provider token a member cannot change', { skip: chromiumMissing }, async (t) => {
  const port = await freePort();
  const issuer = `http://localhost:${port}`;
  const h = await harness(t, { env: { TESSERA_ISSUER: issuer } });
  await h.app.listen({ port, host: '127.0.0.1' });

  const owner = await h.user({ email: 'olivia@example.com', name: 'Olivia Owner' });
  const maintainer = await h.user({ email: 'max@example.com', name: 'Max Maintainer' });
  const member = await h.user({ email: 'mia@example.com', name: 'Mia Member' });
  const org = await h.org('Photon Lab', [
    [owner, 'owner'],
    [member, 'member'],
  ]);
  const orgPage = `${issuer}/console/organizations/${org.id}`;

  const browser = await launchChromium();
  t.teardown(() => browser.close());
  const problems: string[] = [];
  // Each person in their own browser profile, signed in with an API token (the bootstrap of accounts
  // that have neither a passkey nor a password).
  async function signedIn(u: typeof owner): Promise<{ context: BrowserContext; page: Page }> {
    const context = await browser.newContext({ viewport: { width: 1000, height: 800 } });
    const page = await context.newPage();
    page.on('console', (m) => {
      if (m.type() === 'error' && m.text().includes('status of 403')) return;
      if (m.type() === 'error' || m.type() === 'warning') problems.push(`${u.email} ${page.url()}: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`${u.email} ${page.url()}: page error: ${e.message}`));
    page.on('dialog', (d) => void d.accept());
    await page.goto(`${issuer}/console/sign-in`);
    await page.fill('#api_token', await h.apiToken(u, ['api', 'quantum_tokens']));
    await page.click('button:has-text("Sign in with the token")');
    await page.waitForURL(`${issuer}/console/account`);
    t.teardown(() => context.close());
    return { context, page };
  }

  // The owner adds the maintainer on the organization page.
  const o = await signedIn(owner);
  await o.page.goto(orgPage);
  await o.page.fill('#email', maintainer.email);
  await o.page.selectOption('#role', 'maintainer');
  await o.page.click('button:has-text("Invite")');
  t.match(await o.page.textContent('main'), /max@example\.com is invited as maintainer/);

  // The maintainer accepts on their account page and saves the organization's IonQ credential.
  const m = await signedIn(maintainer);
  await m.page.goto(`${issuer}/console/account`);
  await m.page.click('button:has-text("Accept")');
  t.match(await m.page.textContent('main'), /You are now maintainer/);
  await m.page.goto(orgPage);
  t.match(await m.page.textContent('main'), /Your role: maintainer/);
  await m.page.fill('#ionq-api_key', 'org-photon-ionq-secret-24680');
  await m.page.fill('#ionq-label', 'shared lab account');
  await m.page.click('form[action$="/provider-tokens/ionq"] button[type="submit"]');
  t.match(await m.page.textContent('main'), /credential is saved/);
  t.notOk((await m.page.content()).includes('org-photon-ionq-secret-24680'), 'the secret is write-only');

  // The member sees it read-only: the hint, no form, no delete button; a post made anyway is refused.
  const mb = await signedIn(member);
  await mb.page.goto(orgPage);
  const view = (await mb.page.textContent('main'))!;
  t.match(view, /Your role: member/);
  t.match(view, /shared lab account/, 'the member sees what is saved');
  t.match(view, /…4680/, 'with its hint');
  t.equal(await mb.page.locator(`form[action^="/console/organizations/${org.id}/provider-tokens"]`).count(), 0, 'no form to change it');
  t.equal(await mb.page.locator('#ionq-api_key').count(), 0);
  const refused = await mb.context.request.post(`${orgPage}/provider-tokens/ionq`, {
    form: { api_key: 'member-overwrite-attempt-13579' },
    headers: { origin: issuer },
    maxRedirects: 0,
  });
  t.equal(refused.status(), 403, "the member's post is refused");
  const refusedDelete = await mb.context.request.post(`${orgPage}/provider-tokens/ionq/delete`, { form: {}, headers: { origin: issuer }, maxRedirects: 0 });
  t.equal(refusedDelete.status(), 403, 'and so is a delete');

  // The API: the metadata names the maintainer's label; resolve returns the maintainer's value.
  const memberToken = await h.apiToken(member, ['api', 'quantum_tokens']);
  const meta = await fetch(`${issuer}/api/organizations/${org.id}/provider-tokens/ionq`, { headers: bearer(memberToken) });
  t.equal(meta.status, 200);
  t.match(await meta.text(), /shared lab account/);
  const resolved = await fetch(`${issuer}/api/provider-tokens/ionq/resolve?organization_id=${org.id}`, { headers: bearer(memberToken) });
  t.equal(resolved.status, 200);
  t.match(await resolved.text(), /org-photon-ionq-secret-24680/, "resolve returns the maintainer's credential");
  t.same(problems, [], 'no console errors on any page');
});
