import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import type { Browser, BrowserContext, CDPSession, Page } from 'playwright-core';

/** Debian's chromium package; the browser tests skip (saying so) when it is absent. */
export const CHROMIUM = '/usr/bin/chromium';
export const chromiumMissing = existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed (apt-get install -y chromium; .ci/run installs it)`;

export async function launchChromium(): Promise<Browser> {
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--host-resolver-rules=MAP localhost 127.0.0.1',
    ],
  });
}

/**
 * A platform authenticator over CDP (what a phone or laptop passkey is to the site): CTAP2,
 * resident keys, user verification that always succeeds.
 */
export async function addVirtualAuthenticator(context: BrowserContext, page: Page): Promise<{ cdp: CDPSession; authenticatorId: string }> {
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  return { cdp, authenticatorId: await newAuthenticator(cdp) };
}

/** Another authenticator (a second device); `WebAuthn.enable` must have run on this session. */
export async function newAuthenticator(cdp: CDPSession): Promise<string> {
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2',
      transport: 'internal',
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });
  return authenticatorId;
}

const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

export interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: Array<{ target: unknown }>;
}

/**
 * Runs axe-core in the page (evaluated over the DevTools protocol, so the page's CSP stays as it
 * is) and returns the serious and critical violations.
 */
export async function seriousViolations(page: Page): Promise<AxeViolation[]> {
  await page.evaluate(axeSource);
  // A string, evaluated in the page (whose globals the test's types do not describe).
  const violations = (await page.evaluate(`(async () => {
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => ({ target: n.target })) }));
  })()`)) as AxeViolation[];
  return violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

/**
 * Collects a page's console errors and warnings and its uncaught errors into `problems`. While
 * `expecting.status` is set, Chromium's log of a failed load with that status (a form sent with
 * mistakes on purpose) is not a problem.
 */
export function watchPage(page: Page, problems: string[], expecting: { status: number | null }): void {
  page.on('console', (m) => {
    if (expecting.status !== null && m.text().includes(`status of ${expecting.status}`)) return;
    if (m.type() === 'error' || m.type() === 'warning') problems.push(`${page.url()}: console ${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`${page.url()}: page error: ${e.message}`));
}

/** An ES256 key pair as a developer holds it: the private JWK, and the public one as the JSON text they paste. */
export async function keyPairToPaste(): Promise<{ privateJwk: JWK; publicJwkText: string }> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  return {
    privateJwk: { ...(await exportJWK(privateKey)), alg: 'ES256' },
    publicJwkText: JSON.stringify({ ...(await exportJWK(publicKey)), alg: 'ES256' }, null, 2),
  };
}

/**
 * Fills the console's SDK-key creation form (on /console/sdk-keys) in key-pair mode
 * (private_key_jwt): the name, the pasted JWK text, and the DPoP-bound choice. Nothing is sent.
 */
export async function fillKeyPairForm(page: Page, form: { name: string; jwk: string; dpopBound: boolean }): Promise<void> {
  await page.fill('#name', form.name);
  await page.check('input[name="auth_method"][value="private_key_jwt"]');
  await page.fill('#jwk', form.jwk);
  await page.setChecked('#dpop_bound', form.dpopBound);
}
