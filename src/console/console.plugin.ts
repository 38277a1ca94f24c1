import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import cookie from '@fastify/cookie';
import formbody from '@fastify/formbody';
import helmet from '@fastify/helmet';
import view from '@fastify/view';
import { Eta } from 'eta';
import type { AuthenticationResponseJSON, RegistrationResponseJSON } from '@simplewebauthn/server';
import { ApiError } from '../platform/errors/api-error.js';
import { requestActor } from '../platform/auth/request-actor.js';
import { API_SCOPES } from '../platform/auth/scopes.js';
import { findUserByEmail, findUserById, listUsers, normaliseEmail, type User } from '../identity/users.repository.js';
import { activateUser, createUserAudited, suspendUser } from '../identity/users.service.js';
import { listAuditEvents } from '../platform/database/audit.repository.js';
import { findMembership, findOrganization, organizationsOfUser, ROLES } from '../identity/organizations.repository.js';
import { listMembers, listOrganizations } from '../identity/memberships.repository.js';
import { changeMembership, requireMembership, requireWriter, type MembershipActor } from '../identity/memberships.service.js';
import { createOrganizationAsOperator } from '../identity/organizations.service.js';
import { myInvitations, putMember, respondToInvitation } from '../identity/invitations.service.js';
import type { Role } from '../identity/identity.table.js';
import { createChildApiToken, regenerateApiToken, revokeApiToken } from '../api-tokens/api-tokens.service.js';
import { findApiTokenByHash, listLiveApiTokens } from '../api-tokens/api-tokens.repository.js';
import { hashApiToken, isWellFormedApiToken } from '../api-tokens/api-token.js';
import { createSdkKey, deleteSdkKeyFor, registrationKey, rotateSdkKeySecret, updateSdkKeyFor } from '../oauth/sdk-keys.service.js';
import { listSdkKeys, SDK_KEYS_PER_USER } from '../oauth/sdk-keys.repository.js';
import { SDK_KEY_SCOPES } from '../oauth/scopes.js';
import {
  endAllSessions,
  endSession,
  findLiveSession,
  listSessions,
  principalOf,
  startSession,
  type ConsoleSession,
  type SignInMethod,
} from '../people/sessions.js';
import { accountOf, ensureGrant, liveGrant, passwordAccountByEmail, setPasswordHash } from '../people/accounts.js';
import { hashPassword, passwordProblem, PASSWORD_MIN_LENGTH, verifyPassword } from '../people/password.js';
import { DEFAULT_INVITATION_SCOPES, inviteUser, peekInvitation, useInvitation } from '../people/invitations.js';
import {
  addPasskey,
  authenticationOptions,
  listPasskeys,
  registrationOptions,
  relyingPartyOf,
  removePasskey,
  renamePasskey,
  verifyPasskeySignIn,
} from '../people/passkeys.js';
import { SignInLimiter } from '../people/sign-in-limiter.js';
import { peopleDb } from '../people/db.js';
import { ProviderRegistry } from '../provider-tokens/registry.js';
import { putProviderToken, removeProviderToken, type ProviderTokenDeps } from '../provider-tokens/provider-tokens.service.js';
import { listProviderTokens, type ProviderTokenOwner } from '../provider-tokens/provider-tokens.repository.js';
import { consoleDir, loadAssets } from './assets.js';
import { openChallenge, sealChallenge, type Challenge } from './challenge.js';

declare module 'fastify' {
  interface FastifyRequest {
    consoleSession: ConsoleSession | null;
    consoleUser: User | null;
  }
}

/** Console routes are HTML for browsers, not API operations: kept out of openapi.yaml (their contract is test/console-browser.test.ts). */
const HIDDEN = { schema: { hide: true } } as const;
const PREFIX = '/console';
const CHALLENGE_TTL_MS = 5 * 60_000;
const FAILURE_WINDOW_MS = 15 * 60_000;
const SIGN_IN_FAILED = 'Sign-in failed: check what you typed, or wait a few minutes and try again.';
const TOKEN_SIGN_IN_CLOSED = 'This account already has a passkey or a password: sign in with it. An API token signs in only accounts that have neither yet.';
const PASSWORD_HINT = `At least ${PASSWORD_MIN_LENGTH} characters; not one of the most common passwords.`;

const EXPIRY_CHOICES = [
  { value: '7d', label: '7 days', seconds: 7 * 86400 },
  { value: '30d', label: '30 days', seconds: 30 * 86400 },
  { value: '90d', label: '90 days', seconds: 90 * 86400 },
  { value: '365d', label: '1 year', seconds: 365 * 86400 },
  { value: 'never', label: 'Never (until revoked)', seconds: null },
] as const;

/** How long a rotated-out SDK-key secret keeps working, as the console offers it (the first is the default). */
const OVERLAP_CHOICES = [
  { value: '24h', label: '24 hours', seconds: 24 * 3600 },
  { value: '1h', label: '1 hour', seconds: 3600 },
  { value: '7d', label: '7 days', seconds: 7 * 86400 },
  { value: 'now', label: 'Stop it at once', seconds: 0 },
] as const;

type Form = Record<string, string | string[] | undefined>;

function field(body: unknown, name: string, max = 1024): string {
  const v = (body as Form | undefined)?.[name];
  const s = Array.isArray(v) ? v[0] : v;
  return typeof s === 'string' ? s.slice(0, max) : '';
}

function list(body: unknown, name: string): string[] {
  const v = (body as Form | undefined)?.[name];
  return (Array.isArray(v) ? v : typeof v === 'string' ? [v] : []).filter((s): s is string => typeof s === 'string');
}

const when = (d: Date | null | undefined) => (d ? d.toISOString().replace('T', ' ').slice(0, 16) + ' UTC' : 'never');

const METHOD_LABEL: Record<SignInMethod, string> = { passkey: 'a passkey', password: 'a password', api_token: 'an API token' };

/**
 * The Tessera Console under /console: server-rendered pages (forms work without JavaScript) for
 * signing in and managing one's own credentials, through the same services the API uses.
 *
 * Security: a strict Content-Security-Policy (scripts and styles only from this origin, nothing
 * inline, no framing), every state-changing request must come from the issuer's own origin
 * (Origin, else Sec-Fetch-Site), the session cookie is HttpOnly, SameSite=Lax, `__Host-` and
 * Secure when the issuer is https (a plain-http localhost issuer cannot use the `__Host-` prefix,
 * which requires Secure, so the cookie is then `tessera_console`), and stored server-side only as
 * a keyed hash. Secrets shown once are in the response that created them only (`no-store`).
 */
export async function consolePlugin(app: FastifyInstance): Promise<void> {
  app.get(
    '/',
    {
      schema: {
        tags: ['operations'],
        operationId: 'getRoot',
        summary: 'The start page: redirects to the console',
        response: { 302: { type: 'null', description: 'Redirect to /console' } },
      },
    },
    async (_request, reply) => reply.redirect(PREFIX, 302),
  );
  await app.register(consolePages, { prefix: PREFIX });
}

async function consolePages(app: FastifyInstance): Promise<void> {
  const { config } = app;
  const secure = config.issuer.startsWith('https:');
  const cookieName = secure ? '__Host-tessera_console' : 'tessera_console';
  const challengeCookie = secure ? '__Host-tessera_webauthn' : 'tessera_webauthn';
  const origin = new URL(config.issuer).origin;
  const rp = relyingPartyOf(config.issuer);
  const assets = loadAssets(`${PREFIX}/assets`);
  const now = () => new Date(app.clock.now());
  const counts = (name: string) => app.counters.store(name, { now: () => app.clock.now(), maxKeys: 50_000 });
  const perAccount = new SignInLimiter({ max: config.console.failedSignInsPerAccount, windowMs: FAILURE_WINDOW_MS, store: counts('sign-in-account') });
  const perIp = new SignInLimiter({ max: config.console.failedSignInsPerIp, windowMs: FAILURE_WINDOW_MS, store: counts('sign-in-ip') });
  const sdkDeps = { db: app.db, pepper: config.pepper, clock: app.clock };
  const registry = new ProviderRegistry(config.providers);
  const providerDeps: ProviderTokenDeps = { db: app.db, config, registry, clock: app.clock, usage: app.usage, log: app.log };

  await app.register(formbody, { bodyLimit: 16 * 1024 });
  await app.register(cookie);
  await app.register(helmet, {
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'none'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'"],
        imgSrc: ["'self'", 'data:'],
        connectSrc: ["'self'"],
        formAction: ["'self'"],
        frameAncestors: ["'none'"],
        baseUri: ["'none'"],
      },
    },
    referrerPolicy: { policy: 'same-origin' },
    xFrameOptions: { action: 'deny' },
    crossOriginEmbedderPolicy: false,
    hsts: secure ? { maxAge: 31536000 } : false,
  });
  await app.register(view, {
    engine: { eta: new Eta({ views: consoleDir('views'), cache: true, autoEscape: true }) },
    root: consoleDir('views'),
    defaultContext: { assets: assets.urls },
  });

  app.decorateRequest('consoleSession', null);
  app.decorateRequest('consoleUser', null);

  // Cross-site request refusal: a state-changing request must say it comes from this origin.
  app.addHook('onRequest', async (request, reply) => {
    if (request.method === 'GET' || request.method === 'HEAD') return;
    const o = request.headers.origin;
    const site = request.headers['sec-fetch-site'];
    // `Origin: null` is what browsers send under some referrer policies: then Sec-Fetch-Site decides.
    const sameOrigin = o !== undefined && o !== 'null' ? o === origin : site === 'same-origin';
    if (!sameOrigin) {
      reply.code(403).header('cache-control', 'no-store');
      return page(reply, 'message', { title: 'Request refused', message: 'This request did not come from the Tessera Console, so it was refused.' });
    }
  });
  // Who is signed in (pages decide what to do without a session).
  app.addHook('preHandler', async (request) => {
    const value = request.cookies[cookieName];
    if (!value) return;
    const s = await findLiveSession(app.db, config, value, now());
    if (!s) return;
    const user = await findUserById(app.db, s.userId);
    if (!user) return;
    request.consoleSession = s;
    request.consoleUser = user;
    // The audit actor and the services' parent rules see the console session as any other principal.
    request.principal = principalOf(s);
  });
  app.addHook('onSend', async (request, reply) => {
    if (!request.url.startsWith(`${PREFIX}/assets/`)) reply.header('cache-control', 'no-store');
  });

  function page(reply: FastifyReply, template: string, data: Record<string, unknown>) {
    const request = reply.request;
    reply.type('text/html; charset=utf-8');
    return reply.view(template, {
      me: request.consoleUser,
      isAdmin: request.consoleSession?.scopes.includes('admin') === true,
      nav: null,
      notice: null,
      formError: null,
      errors: {},
      values: {},
      ...data,
    });
  }

  function setSessionCookie(reply: FastifyReply, value: string) {
    reply.setCookie(cookieName, value, { path: '/', httpOnly: true, secure, sameSite: 'lax', maxAge: config.console.sessionMaxSeconds });
  }
  function clearSessionCookie(reply: FastifyReply) {
    reply.clearCookie(cookieName, { path: '/', httpOnly: true, secure, sameSite: 'lax' });
  }
  function setChallenge(reply: FastifyReply, c: Omit<Challenge, 'expiresAt'>) {
    reply.setCookie(challengeCookie, sealChallenge(config.pepper, { ...c, expiresAt: app.clock.now() + CHALLENGE_TTL_MS }), {
      path: '/',
      httpOnly: true,
      secure,
      sameSite: 'strict',
      maxAge: CHALLENGE_TTL_MS / 1000,
    });
  }
  function takeChallenge(request: FastifyRequest, reply: FastifyReply, purpose: Challenge['purpose']) {
    reply.clearCookie(challengeCookie, { path: '/', httpOnly: true, secure, sameSite: 'strict' });
    return openChallenge(config.pepper, request.cookies[challengeCookie], purpose, app.clock.now());
  }
  async function signIn(request: FastifyRequest, reply: FastifyReply, userId: string, apiTokenId: string, method: SignInMethod) {
    const s = await startSession(app.db, config, {
      userId,
      apiTokenId,
      method,
      now: now(),
      ip: request.ip,
      userAgent: request.headers['user-agent'] ?? null,
      requestId: request.id,
    });
    setSessionCookie(reply, s.cookie);
  }
  const jsonError = (reply: FastifyReply, status: number, message: string) =>
    reply.code(status).send({ error: status === 401 ? 'invalid_token' : status === 403 ? 'forbidden' : 'invalid_request', message });

  /** preHandler of pages for signed-in people: without a session, the sign-in page. */
  const signedIn = async (request: FastifyRequest, reply: FastifyReply) => {
    if (request.consoleSession) return;
    if (request.headers['content-type']?.startsWith('application/json')) return jsonError(reply, 401, 'You are signed out.');
    return reply.redirect(`${PREFIX}/sign-in`, 303);
  };

  /** preHandlers of self-service pages: signed in, with the scope the matching API routes require. */
  const selfService = [
    signedIn,
    async (request: FastifyRequest, reply: FastifyReply) => {
      if (request.consoleSession?.scopes.includes('api')) return;
      reply.code(403);
      return page(reply, 'message', { title: 'Not available', message: 'Your sign-in lacks the api scope this page needs.' });
    },
  ];

  /** preHandlers of operator pages: signed in with scope admin. */
  const operator = [
    signedIn,
    async (request: FastifyRequest, reply: FastifyReply) => {
      if (request.consoleSession?.scopes.includes('admin')) return;
      reply.code(403);
      return page(reply, 'message', { title: 'Operators only', message: 'This page needs the admin scope.' });
    },
  ];

  // --- Static assets -------------------------------------------------------------------------

  app.get<{ Params: { file: string } }>('/assets/:file', HIDDEN, async (request, reply) => {
    const a = assets.files.get(request.params.file);
    if (!a) return reply.code(404).type('text/plain; charset=utf-8').send('not found');
    return reply.header('cache-control', 'public, max-age=31536000, immutable').type(a.type).send(a.body);
  });

  // --- Signing in ----------------------------------------------------------------------------

  app.get('/', HIDDEN, async (request, reply) => reply.redirect(request.consoleSession ? `${PREFIX}/account` : `${PREFIX}/sign-in`, 302));

  app.get('/sign-in', HIDDEN, async (request, reply) => {
    if (request.consoleSession) return reply.redirect(`${PREFIX}/account`, 303);
    return page(reply, 'sign-in', { title: 'Sign in' });
  });

  app.post('/sign-in/password', HIDDEN, async (request, reply) => {
    const email = field(request.body, 'email', 320).trim();
    const password = field(request.body, 'password', 1024);
    const errors: Record<string, string> = {};
    if (!email) errors.email = 'Enter your email address.';
    if (!password) errors.password = 'Enter your password.';
    if (Object.keys(errors).length) return page(reply.code(400), 'sign-in', { title: 'Sign in', errors, values: { email } });
    const accountKey = `account:${normaliseEmail(email)}`;
    const ipKey = `ip:${request.ip}`;
    const allowed = (await perAccount.allows(accountKey)) && (await perIp.allows(ipKey));
    // One query and one argon2 verification whatever the cause of a failure (a dummy hash when there is no account or password).
    const account = allowed ? await passwordAccountByEmail(app.db, email) : undefined;
    const ok = (await verifyPassword(account?.password_hash ?? null, password)) && allowed && account?.status === 'active';
    const grant = ok && account ? await liveGrant(app.db, account.id, now()) : null;
    if (!ok || !account || !grant) {
      await Promise.all([perAccount.fail(accountKey), perIp.fail(ipKey)]);
      return page(reply.code(401), 'sign-in', { title: 'Sign in', formError: SIGN_IN_FAILED, values: { email } });
    }
    await signIn(request, reply, account.id, grant, 'password');
    return reply.redirect(`${PREFIX}/account`, 303);
  });

  app.post('/sign-in/token', HIDDEN, async (request, reply) => {
    const token = field(request.body, 'api_token', 512).trim();
    const ipKey = `ip:${request.ip}`;
    if (!token) return page(reply.code(400), 'sign-in', { title: 'Sign in', errors: { api_token: 'Paste an API token.' } });
    const row = (await perIp.allows(ipKey)) && isWellFormedApiToken(token) ? await findApiTokenByHash(app.db, hashApiToken(config.pepper, token)) : undefined;
    const t = now();
    if (!row || row.user_status !== 'active' || (row.expires_at && row.expires_at <= t)) {
      await perIp.fail(ipKey);
      return page(reply.code(401), 'sign-in', { title: 'Sign in', formError: SIGN_IN_FAILED });
    }
    // The bootstrap for accounts with neither a passkey nor a password: once one is set, a leaked
    // API token no longer opens a browser session. Saying so leaks nothing: the caller holds a live token.
    const account = await accountOf(peopleDb(app.db), row.user_id);
    if (account.passwordHash !== null || account.passkeys > 0) {
      return page(reply.code(403), 'sign-in', {
        title: 'Sign in',
        errors: { api_token: TOKEN_SIGN_IN_CLOSED },
      });
    }
    await signIn(request, reply, row.user_id, row.id, 'api_token');
    return reply.redirect(`${PREFIX}/account`, 303);
  });

  app.post('/passkey/sign-in/options', HIDDEN, async (_request, reply) => {
    const options = await authenticationOptions(rp);
    setChallenge(reply, { purpose: 'sign-in', challenge: options.challenge, userId: '' });
    return options;
  });

  app.post<{ Body: { response?: AuthenticationResponseJSON } }>('/passkey/sign-in', HIDDEN, async (request, reply) => {
    const c = takeChallenge(request, reply, 'sign-in');
    const ipKey = `ip:${request.ip}`;
    const proved =
      c && (await perIp.allows(ipKey)) && request.body?.response
        ? await verifyPasskeySignIn(app.db, rp, { response: request.body.response, expectedChallenge: c.challenge, now: now() })
        : null;
    const grant = proved ? await liveGrant(app.db, proved.userId, now()) : null;
    const user = proved ? await findUserById(app.db, proved.userId) : undefined;
    if (!proved || !grant || user?.status !== 'active') {
      await perIp.fail(ipKey);
      return jsonError(reply, 401, 'That passkey did not sign you in. Try again, or use another way.');
    }
    await signIn(request, reply, proved.userId, grant, 'passkey');
    return { redirect: `${PREFIX}/account` };
  });

  app.post('/sign-out', HIDDEN, async (request, reply) => {
    if (request.consoleSession) await endSession(app.db, requestActor(request), request.consoleUser!.id, request.consoleSession.id, now());
    clearSessionCookie(reply);
    request.consoleUser = null;
    return page(reply, 'message', { title: 'Signed out', message: 'You are signed out.', link: `${PREFIX}/sign-in`, linkText: 'Sign in again' });
  });

  app.post('/sign-out-everywhere', { ...HIDDEN, preHandler: signedIn }, async (request, reply) => {
    const n = await endAllSessions(app.db, requestActor(request), request.consoleUser!.id, now());
    clearSessionCookie(reply);
    request.consoleUser = null;
    return page(reply, 'message', {
      title: 'Signed out everywhere',
      message: `${n} session${n === 1 ? '' : 's'} ended, on every device.`,
      link: `${PREFIX}/sign-in`,
      linkText: 'Sign in again',
    });
  });

  // --- Invitations ---------------------------------------------------------------------------

  const invitationPage = (reply: FastifyReply, data: Record<string, unknown>) =>
    page(reply, 'invitation', { title: 'Set up your sign-in', passwordHint: PASSWORD_HINT, ...data });

  app.get('/invitation', HIDDEN, async (_request, reply) => invitationPage(reply, {}));

  app.post('/invitation/password', HIDDEN, async (request, reply) => {
    const code = field(request.body, 'code', 128).trim();
    const password = field(request.body, 'password', 1024);
    const confirm = field(request.body, 'confirm', 1024);
    const values = { code, passkey_name: field(request.body, 'passkey_name', 100) };
    const inv = code ? await peekInvitation(app.db, config.pepper, code, now()) : null;
    const errors: Record<string, string> = {};
    if (!inv) errors.code = 'This invitation code is not valid: it may have expired or been used. Ask your operator for a new link.';
    else {
      const problem = passwordProblem(password, inv.user);
      if (problem) errors.password = problem;
      else if (password !== confirm) errors.confirm = 'The two passwords differ.';
    }
    if (Object.keys(errors).length) return invitationPage(reply.code(400), { errors, values });
    const passwordHash = await hashPassword(password);
    const t = now();
    const done = await app.db.transaction().execute(async (trx) => {
      const used = await useInvitation(trx, config.pepper, code, t);
      if (!used) return null;
      await setPasswordHash(trx, used.userId, passwordHash, t);
      return { userId: used.userId, grant: await ensureGrant(trx, config.pepper, used.userId, used.scopes, t) };
    });
    if (!done) return invitationPage(reply.code(400), { errors: { code: 'This invitation code was just used.' }, values });
    await signIn(request, reply, done.userId, done.grant, 'password');
    return reply.redirect(`${PREFIX}/account`, 303);
  });

  app.post<{ Body: { code?: string } }>('/invitation/passkey/options', HIDDEN, async (request, reply) => {
    const code = typeof request.body?.code === 'string' ? request.body.code.trim() : '';
    const inv = code ? await peekInvitation(app.db, config.pepper, code, now()) : null;
    if (!inv) return jsonError(reply, 400, 'This invitation code is not valid: it may have expired or been used.');
    const options = await registrationOptions(app.db, rp, inv.user);
    setChallenge(reply, { purpose: 'invite', challenge: options.challenge, userId: inv.user.id });
    return options;
  });

  app.post<{ Body: { code?: string; name?: string; response?: RegistrationResponseJSON } }>('/invitation/passkey', HIDDEN, async (request, reply) => {
    const c = takeChallenge(request, reply, 'invite');
    const code = typeof request.body?.code === 'string' ? request.body.code.trim() : '';
    const name = passkeyName(request.body?.name);
    if (!c || !request.body?.response || !code) return jsonError(reply, 400, 'Start again: the passkey prompt expired.');
    const t = now();
    type Outcome = { error: string } | { userId: string; grant: string };
    const done: Outcome = await app.db
      .transaction()
      .execute(async (trx): Promise<Outcome> => {
        const used = await useInvitation(trx, config.pepper, code, t);
        if (!used || used.userId !== c.userId) return { error: 'This invitation code is not valid: it may have expired or been used.' };
        const added = await addPasskey(
          trx,
          rp,
          { userId: used.userId, credential: `user_invitation`, ip: request.ip, requestId: request.id },
          {
            userId: used.userId,
            response: request.body.response!,
            expectedChallenge: c.challenge,
            name,
          },
        );
        if (!added.ok) throw new PasskeyRefused(added.reason);
        return { userId: used.userId, grant: await ensureGrant(trx, config.pepper, used.userId, used.scopes, t) };
      })
      .catch((err: unknown): Outcome => {
        if (err instanceof PasskeyRefused) return { error: err.message };
        throw err;
      });
    if (!('grant' in done)) return jsonError(reply, 400, done.error);
    await signIn(request, reply, done.userId, done.grant, 'passkey');
    return { redirect: `${PREFIX}/account` };
  });

  // --- Account -------------------------------------------------------------------------------

  async function accountPage(request: FastifyRequest, reply: FastifyReply, data: Record<string, unknown> = {}) {
    const [orgs, invitations] = await Promise.all([
      organizationsOfUser(app.db, request.consoleUser!.id),
      myInvitations(membershipDeps, request.consoleUser!.id),
    ]);
    return page(reply, 'account', {
      title: 'Account',
      nav: 'account',
      user: request.consoleUser,
      orgs,
      invitations: invitations.map((i) => ({ id: i.id, organization_name: i.organization_name, role: i.role, expires: when(i.expires_at) })),
      method: METHOD_LABEL[request.consoleSession!.method],
      scopes: request.consoleSession!.scopes,
      ...data,
    });
  }

  app.get('/account', { ...HIDDEN, preHandler: signedIn }, async (request, reply) => accountPage(request, reply));

  // --- Personal access tokens ----------------------------------------------------------------

  async function tokensPage(request: FastifyRequest, reply: FastifyReply, data: Record<string, unknown> = {}) {
    const s = request.consoleSession!;
    const rows = await listLiveApiTokens(app.db, s.userId);
    return page(reply, 'tokens', {
      title: 'Access tokens',
      nav: 'tokens',
      scopes: s.scopes,
      scopeChoices: API_SCOPES.filter((x) => s.scopes.includes(x)),
      expiryChoices: EXPIRY_CHOICES,
      tokens: rows.map((r) => ({
        id: r.id,
        name: r.name,
        display_prefix: r.display_prefix,
        scopes: r.scopes,
        expires: when(r.expires_at),
        lastUsed: when(r.last_used_at),
        isSession: r.id === s.apiTokenId,
      })),
      values: { name: '', scopes: ['api'], expires: '90d' },
      ...data,
    });
  }

  app.get('/tokens', { ...HIDDEN, preHandler: selfService }, async (request, reply) => tokensPage(request, reply));

  app.post('/tokens', { ...HIDDEN, preHandler: selfService }, async (request, reply) => {
    const s = request.consoleSession!;
    const name = field(request.body, 'name', 300).trim();
    const scopes = [...new Set(list(request.body, 'scopes'))];
    const expires = field(request.body, 'expires', 10);
    const values = { name, scopes, expires };
    const errors: Record<string, string> = {};
    if (!name) errors.name = 'Give the token a name.';
    else if (name.length > 200) errors.name = 'Use at most 200 characters.';
    if (scopes.length === 0) errors.scopes = 'Choose at least one scope.';
    else if (scopes.some((x) => !(API_SCOPES as readonly string[]).includes(x))) errors.scopes = 'Choose among the scopes listed.';
    const choice = EXPIRY_CHOICES.find((c) => c.value === expires);
    if (!choice) errors.expires = 'Choose an expiry.';
    if (Object.keys(errors).length) return tokensPage(request, reply.code(400), { errors, values });
    const t = now();
    try {
      const issued = await createChildApiToken(app.db, config.pepper, principalOf(s), {
        name,
        scopes,
        expiresAt: choice!.seconds === null ? null : new Date(t.getTime() + choice!.seconds * 1000),
        now: t,
        actor: requestActor(request),
      });
      return tokensPage(request, reply.code(201), { created: { name, token: issued.token } });
    } catch (err) {
      if (err instanceof ApiError && err.statusCode < 500) return tokensPage(request, reply.code(err.statusCode), { formError: err.message, values });
      throw err;
    }
  });

  app.post<{ Params: { id: string } }>('/tokens/:id/revoke', { ...HIDDEN, preHandler: selfService }, async (request, reply) => {
    const s = request.consoleSession!;
    if (!/^[0-9a-f-]{36}$/i.test(request.params.id) || request.params.id === s.apiTokenId) {
      return tokensPage(request, reply.code(400), { formError: 'That token cannot be revoked here.' });
    }
    const done = await revokeApiToken(app, { userId: s.userId, tokenId: request.params.id, now: now(), actor: requestActor(request) });
    if (done) app.forgetCredentials({ apiTokenIds: done.apiTokenIds, sdkKeyClientIds: done.sdkKeyClientIds });
    return tokensPage(request, reply.code(done ? 200 : 404), done ? { notice: 'The token is revoked.' } : { formError: 'No such token.' });
  });

  app.post<{ Params: { id: string } }>('/tokens/:id/regenerate', { ...HIDDEN, preHandler: selfService }, async (request, reply) => {
    const s = request.consoleSession!;
    if (!/^[0-9a-f-]{36}$/i.test(request.params.id) || request.params.id === s.apiTokenId) {
      return tokensPage(request, reply.code(400), { formError: 'That token cannot be regenerated here.' });
    }
    try {
      const done = await regenerateApiToken({ db: app.db, cascades: app.cascades, pepper: config.pepper }, principalOf(s), {
        tokenId: request.params.id,
        now: now(),
        actor: requestActor(request),
      });
      if (!done) return tokensPage(request, reply.code(404), { formError: 'No such token.' });
      app.forgetCredentials({ apiTokenIds: done.revoked.apiTokenIds, sdkKeyClientIds: done.revoked.sdkKeyClientIds });
      return tokensPage(request, reply.code(201), { created: { name: done.row.name, token: done.token, regenerated: true } });
    } catch (err) {
      if (err instanceof ApiError && err.statusCode < 500) return tokensPage(request, reply.code(err.statusCode), { formError: err.message });
      throw err;
    }
  });

  // --- SDK keys ------------------------------------------------------------------------------

  async function keysPage(request: FastifyRequest, reply: FastifyReply, data: Record<string, unknown> = {}) {
    const s = request.consoleSession!;
    const [keys, orgs] = await Promise.all([listSdkKeys(app.db, s.userId), organizationsOfUser(app.db, s.userId)]);
    return page(reply, 'sdk-keys', {
      title: 'SDK keys',
      nav: 'sdk-keys',
      limit: SDK_KEYS_PER_USER,
      scopeChoices: SDK_KEY_SCOPES.filter((x) => s.scopes.includes(x)),
      orgs,
      overlapChoices: OVERLAP_CHOICES,
      keys: keys.map((k) => ({
        client_id: k.client_id,
        name: k.name,
        scopes: k.scopes,
        status: k.status,
        lastUsed: when(k.last_used_at),
        expires: when(k.expires_at),
        audiences: k.audiences,
        privateKeyJwt: k.token_endpoint_auth_method === 'private_key_jwt',
        dpopBound: k.dpop_bound_access_tokens,
        previousSecretUntil:
          k.previous_secret_expires_at && k.previous_secret_expires_at.getTime() > app.clock.now() ? when(k.previous_secret_expires_at) : null,
      })),
      values: {
        name: '',
        scopes: SDK_KEY_SCOPES.filter((x) => x === 'api' && s.scopes.includes(x)),
        organization_id: '',
        auth_method: 'client_secret_basic',
        jwk: '',
        dpop_bound: false,
      },
      jwkAlgorithms: config.proofOfPossession.clientAssertionAlgorithms,
      ...data,
    });
  }

  app.get('/sdk-keys', { ...HIDDEN, preHandler: selfService }, async (request, reply) => keysPage(request, reply));

  app.post('/sdk-keys', { ...HIDDEN, preHandler: selfService }, async (request, reply) => {
    const s = request.consoleSession!;
    const name = field(request.body, 'name', 300).trim();
    const scopes = [...new Set(list(request.body, 'scopes'))];
    const organizationId = field(request.body, 'organization_id', 64).trim();
    const authMethod = field(request.body, 'auth_method', 40) || 'client_secret_basic';
    const jwkText = field(request.body, 'jwk', 8192);
    const dpopBound = field(request.body, 'dpop_bound', 10) === 'on';
    const values = { name, scopes, organization_id: organizationId, auth_method: authMethod, jwk: jwkText, dpop_bound: dpopBound };
    const errors: Record<string, string> = {};
    if (!name) errors.name = 'Give the key a name.';
    else if (name.length > 200) errors.name = 'Use at most 200 characters.';
    if (scopes.length === 0) errors.scopes = 'Choose at least one scope.';
    else if (scopes.some((x) => !(SDK_KEY_SCOPES as readonly string[]).includes(x))) errors.scopes = 'Choose among the scopes listed.';
    if (organizationId && !/^[0-9a-f-]{36}$/i.test(organizationId)) errors.organization_id = 'Choose an organization from the list.';
    if (authMethod !== 'client_secret_basic' && authMethod !== 'private_key_jwt') errors.auth_method = 'Choose how the key authenticates.';
    else if (authMethod === 'client_secret_basic' && jwkText.trim()) {
      errors.auth_method = 'You pasted a public key: choose "A key pair you hold", or clear the public key to get a secret.';
    }
    // The JWK is parsed here; whether it is an acceptable public key is the API's own check (registrationKey).
    let jwk: unknown;
    if (authMethod === 'private_key_jwt') {
      if ((list(request.body, 'jwk')[0] ?? '').length > jwkText.length) errors.jwk = 'This is too long for a public key: paste the public JWK only.';
      else if (!jwkText.trim()) errors.jwk = 'Paste the public key (a JWK) that the key will sign its assertions with.';
      else {
        try {
          jwk = JSON.parse(jwkText);
        } catch {
          errors.jwk = 'The public key is not JSON: paste a JWK object such as {"kty":"EC","crv":"P-256","x":"…","y":"…"}.';
        }
      }
    }
    if (Object.keys(errors).length) return keysPage(request, reply.code(400), { errors, values });
    let publicJwk: Awaited<ReturnType<typeof registrationKey>> = null;
    if (authMethod === 'private_key_jwt') {
      try {
        publicJwk = await registrationKey('private_key_jwt', jwk, config.proofOfPossession.clientAssertionAlgorithms);
      } catch (err) {
        if (err instanceof ApiError && err.statusCode === 400) return keysPage(request, reply.code(400), { errors: { jwk: err.message }, values });
        throw err;
      }
    }
    try {
      const { row, secret } = await createSdkKey(sdkDeps, requestActor(request), principalOf(s), {
        name,
        scopes,
        organizationId: organizationId || null,
        publicJwk,
        dpopBound,
      });
      app.forgetCredentials({ sdkKeyClientIds: [row.client_id] });
      if (secret === null) {
        return keysPage(request, reply.code(201), { registered: { name, clientId: row.client_id } });
      }
      const json = JSON.stringify({ client_id: row.client_id, client_secret: secret, issuer: config.issuer }, null, 2) + '\n';
      return keysPage(request, reply.code(201), {
        created: { name, clientId: row.client_id, secret, download: { filename: `tessera-sdk-key-${row.client_id}.json`, json } },
      });
    } catch (err) {
      if (err instanceof ApiError && err.statusCode < 500) return keysPage(request, reply.code(err.statusCode), { formError: err.message, values });
      throw err;
    }
  });

  app.post<{ Params: { clientId: string; action: string } }>('/sdk-keys/:clientId/:action', { ...HIDDEN, preHandler: selfService }, async (request, reply) => {
    const { clientId, action } = request.params;
    const s = request.consoleSession!;
    try {
      if (action === 'enable' || action === 'disable') {
        await updateSdkKeyFor(sdkDeps, requestActor(request), s.userId, clientId, { status: action === 'enable' ? 'enabled' : 'disabled' });
        app.forgetCredentials({ sdkKeyClientIds: [clientId] });
        return keysPage(request, reply, { notice: `The key is ${action}d.` });
      }
      if (action === 'dpop-on' || action === 'dpop-off') {
        const dpopBound = action === 'dpop-on';
        await updateSdkKeyFor(sdkDeps, requestActor(request), s.userId, clientId, { dpopBound });
        app.forgetCredentials({ sdkKeyClientIds: [clientId] });
        return keysPage(request, reply, {
          notice: dpopBound ? 'The key now gets DPoP-bound tokens only.' : 'The key may get bearer tokens again.',
        });
      }
      if (action === 'rotate') {
        const overlap = OVERLAP_CHOICES.find((c) => c.value === field(request.body, 'overlap', 10));
        if (!overlap) return keysPage(request, reply.code(400), { formError: 'Choose how long the previous secret keeps working.' });
        const { row, secret } = await rotateSdkKeySecret(sdkDeps, requestActor(request), s.userId, clientId, {
          overlapSeconds: overlap.seconds,
          revokeIssuedTokens: field(request.body, 'revoke_issued_tokens', 10) === 'on',
        });
        app.forgetCredentials({ sdkKeyClientIds: [clientId] });
        const json = JSON.stringify({ client_id: row.client_id, client_secret: secret, issuer: config.issuer }, null, 2) + '\n';
        return keysPage(request, reply, {
          rotated: { name: row.name, clientId: row.client_id, secret, download: { filename: `tessera-sdk-key-${row.client_id}.json`, json } },
        });
      }
      if (action === 'delete') {
        await deleteSdkKeyFor(sdkDeps, requestActor(request), s.userId, clientId);
        app.forgetCredentials({ sdkKeyClientIds: [clientId] });
        return keysPage(request, reply, { notice: 'The key is deleted.' });
      }
      return keysPage(request, reply.code(404), { formError: 'Unknown action.' });
    } catch (err) {
      if (err instanceof ApiError && err.statusCode < 500) return keysPage(request, reply.code(err.statusCode), { formError: err.message });
      throw err;
    }
  });

  // --- Provider tokens (the user's and organizations') -----------------------------------------

  type FieldView = { name: string; required: boolean; secret: boolean; options: string[] | null; value: string; error: string | null };
  type ProviderInput = { providerValues?: Record<string, Record<string, string>>; providerErrors?: Record<string, Record<string, string>> };

  /** One form per configured provider, its fields generated from the provider's JSON Schema; secret fields are never filled in. */
  async function providerViews(owner: ProviderTokenOwner, input: ProviderInput) {
    const saved = new Map((await listProviderTokens(app.db, owner)).map((r) => [r.provider, r]));
    return registry.names.map((name) => {
      const spec = registry.get(name)!;
      const schema = spec.schema as { required?: string[]; properties?: Record<string, { enum?: string[] }> };
      const values = input.providerValues?.[name] ?? {};
      const errors = input.providerErrors?.[name] ?? {};
      const fields: FieldView[] = Object.entries(schema.properties ?? {}).map(([f, prop]) => ({
        name: f,
        required: (schema.required ?? []).includes(f),
        secret: spec.secretFields.includes(f),
        options: Array.isArray(prop.enum) ? prop.enum : null,
        value: spec.secretFields.includes(f) ? '' : (values[f] ?? ''),
        error: errors[f] ?? null,
      }));
      const row = saved.get(name);
      return {
        name,
        title: spec.title,
        fields,
        label: values.label ?? row?.label ?? '',
        saved: row ? { label: row.label, hint: row.hint, updated: when(row.updated_at), lastUsed: when(row.last_used_at) } : null,
      };
    });
  }

  /**
   * Reads a provider form and saves it through the provider-token service; what to show again
   * (never the secret fields) and the errors by field when the schema refuses it.
   */
  async function saveProvider(
    request: FastifyRequest,
    owner: ProviderTokenOwner,
    provider: string,
  ): Promise<{ ok: true; title: string } | { ok: false; status: number; input: ProviderInput; formError?: string }> {
    const spec = registry.get(provider);
    if (!spec) return { ok: false, status: 404, input: {}, formError: 'No such provider.' };
    const props = Object.keys((spec.schema as { properties?: Record<string, unknown> }).properties ?? {});
    const credential: Record<string, string> = {};
    for (const f of props) {
      const v = field(request.body, f, 4096).trim();
      if (v) credential[f] = v;
    }
    const label = field(request.body, 'label', 200).trim();
    const shown = Object.fromEntries(Object.entries(credential).filter(([f]) => !spec.secretFields.includes(f)));
    const problems = registry.validate(provider, credential);
    if (problems.length) {
      const errors: Record<string, string> = {};
      for (const p of problems) {
        const name = p.field.replace(/^\//, '').split('/')[0] || props[0]!;
        errors[name] ??= p.message === 'is required' ? 'Fill this in.' : `This ${p.message}.`;
      }
      return { ok: false, status: 400, input: { providerValues: { [provider]: { ...shown, label } }, providerErrors: { [provider]: errors } } };
    }
    await putProviderToken(providerDeps, owner, provider, { label: label || null, credential }, requestActor(request));
    return { ok: true, title: spec.title };
  }

  async function providersPage(request: FastifyRequest, reply: FastifyReply, data: ProviderInput & Record<string, unknown> = {}) {
    const providers = await providerViews({ type: 'user', id: request.consoleSession!.userId }, data);
    return page(reply, 'provider-tokens', { title: 'Provider tokens', nav: 'provider-tokens', ...data, providers });
  }

  app.get('/provider-tokens', { ...HIDDEN, preHandler: selfService }, async (request, reply) => providersPage(request, reply));

  app.post<{ Params: { provider: string } }>('/provider-tokens/:provider', { ...HIDDEN, preHandler: selfService }, async (request, reply) => {
    const r = await saveProvider(request, { type: 'user', id: request.consoleUser!.id }, request.params.provider);
    if (!r.ok) return providersPage(request, reply.code(r.status), { ...r.input, formError: r.formError ?? null });
    return providersPage(request, reply, { notice: `Your ${r.title} credential is saved.` });
  });

  app.post<{ Params: { provider: string } }>('/provider-tokens/:provider/delete', { ...HIDDEN, preHandler: selfService }, async (request, reply) => {
    try {
      await removeProviderToken(providerDeps, { type: 'user', id: request.consoleUser!.id }, request.params.provider, requestActor(request));
      return providersPage(request, reply, { notice: 'The credential is deleted.' });
    } catch (err) {
      if (err instanceof ApiError && err.statusCode < 500) return providersPage(request, reply.code(err.statusCode), { formError: err.message });
      throw err;
    }
  });

  // --- Organizations -------------------------------------------------------------------------

  const membershipDeps = { db: app.db, clock: app.clock, cascades: app.cascades, forget: app.forgetCredentials };
  const userActor = (request: FastifyRequest) => ({ kind: 'user' as const, userId: request.consoleUser!.id, audit: requestActor(request) });
  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

  /** The organization page as its member sees it (members and roles; provider tokens writable by owners and maintainers). */
  async function orgPage(request: FastifyRequest, reply: FastifyReply, orgId: string, data: ProviderInput & Record<string, unknown> = {}) {
    const me = request.consoleUser!.id;
    const org = UUID.test(orgId) ? await findOrganization(app.db, orgId) : undefined;
    const role = org ? (await findMembership(app.db, org.id, me))?.role : undefined;
    if (!org || !role) {
      reply.code(404);
      return page(reply, 'message', { title: 'Not found', message: 'No such organization, or you are not a member of it.' });
    }
    const [members, providers] = await Promise.all([listMembers(app.db, org.id), providerViews({ type: 'organization', id: org.id }, data)]);
    return page(reply, 'organization', {
      title: org.name,
      nav: 'account',
      org,
      role,
      isOwner: role === 'owner',
      canWrite: role === 'owner' || role === 'maintainer',
      roles: ROLES,
      members,
      providers,
      ...data,
    });
  }

  /** Runs a service call for the organization page, showing a refusal (403/404/409) on the page. */
  async function orgAction(request: FastifyRequest, reply: FastifyReply, orgId: string, fn: () => Promise<string>) {
    try {
      return orgPage(request, reply, orgId, { notice: await fn() });
    } catch (err) {
      if (err instanceof ApiError && err.statusCode < 500) return orgPage(request, reply.code(err.statusCode), orgId, { formError: err.message });
      throw err;
    }
  }

  app.get<{ Params: { orgId: string } }>('/organizations/:orgId', { ...HIDDEN, preHandler: selfService }, async (request, reply) =>
    orgPage(request, reply, request.params.orgId),
  );

  app.post<{ Params: { orgId: string } }>('/organizations/:orgId/members', { ...HIDDEN, preHandler: selfService }, async (request, reply) => {
    const { orgId } = request.params;
    const email = field(request.body, 'email', 320).trim();
    const role = field(request.body, 'role', 20) as Role;
    if (!UUID.test(orgId)) return orgPage(request, reply.code(404), orgId);
    const target = email ? await findUserByEmail(app.db, email) : undefined;
    if (!target || !ROLES.includes(role)) {
      return orgPage(request, reply.code(400), orgId, { errors: { email: 'No user has this email address.' }, values: { email, role } });
    }
    return orgAction(request, reply, orgId, async () => {
      const r = await putMember(membershipDeps, userActor(request), orgId, target.id, role);
      return r.kind === 'invited' ? `${target.email} is invited as ${role}; they become a member when they accept.` : `${target.email} is now ${role}.`;
    });
  });

  app.post<{ Params: { orgId: string; userId: string } }>(
    '/organizations/:orgId/members/:userId',
    { ...HIDDEN, preHandler: selfService },
    async (request, reply) => {
      const { orgId, userId } = request.params;
      const role = field(request.body, 'role', 20) as Role;
      if (!UUID.test(orgId) || !UUID.test(userId) || !ROLES.includes(role)) return orgPage(request, reply.code(400), orgId, { formError: 'Choose a role.' });
      return orgAction(request, reply, orgId, async () => {
        await putMember(membershipDeps, userActor(request), orgId, userId, role);
        return 'The role is changed.';
      });
    },
  );

  app.post<{ Params: { orgId: string; userId: string } }>(
    '/organizations/:orgId/members/:userId/remove',
    { ...HIDDEN, preHandler: selfService },
    async (request, reply) => {
      const { orgId, userId } = request.params;
      if (!UUID.test(orgId) || !UUID.test(userId)) return orgPage(request, reply.code(404), orgId);
      return orgAction(request, reply, orgId, async () => {
        await changeMembership(membershipDeps, userActor(request), orgId, userId, null);
        return 'The member is removed.';
      });
    },
  );

  app.post<{ Params: { orgId: string; provider: string } }>(
    '/organizations/:orgId/provider-tokens/:provider',
    { ...HIDDEN, preHandler: selfService },
    async (request, reply) => {
      const { orgId, provider } = request.params;
      if (!UUID.test(orgId)) return orgPage(request, reply.code(404), orgId);
      try {
        requireWriter(await requireMembership(app.db, orgId, request.consoleUser!.id));
        const r = await saveProvider(request, { type: 'organization', id: orgId }, provider);
        if (!r.ok) return orgPage(request, reply.code(r.status), orgId, { ...r.input, formError: r.formError ?? null });
        return orgPage(request, reply, orgId, { notice: `The organization's ${r.title} credential is saved.` });
      } catch (err) {
        if (err instanceof ApiError && err.statusCode < 500) return orgPage(request, reply.code(err.statusCode), orgId, { formError: err.message });
        throw err;
      }
    },
  );

  app.post<{ Params: { orgId: string; provider: string } }>(
    '/organizations/:orgId/provider-tokens/:provider/delete',
    { ...HIDDEN, preHandler: selfService },
    async (request, reply) => {
      const { orgId, provider } = request.params;
      if (!UUID.test(orgId)) return orgPage(request, reply.code(404), orgId);
      return orgAction(request, reply, orgId, async () => {
        requireWriter(await requireMembership(app.db, orgId, request.consoleUser!.id));
        await removeProviderToken(providerDeps, { type: 'organization', id: orgId }, provider, requestActor(request));
        return 'The credential is deleted.';
      });
    },
  );

  app.post<{ Params: { id: string; answer: string } }>('/invitations/:id/:answer', { ...HIDDEN, preHandler: selfService }, async (request, reply) => {
    const { id, answer } = request.params;
    try {
      if (!UUID.test(id) || (answer !== 'accept' && answer !== 'decline')) throw new ApiError(404, 'not_found', 'invitation not found');
      const change = await respondToInvitation(membershipDeps, requestActor(request), request.consoleUser!.id, id, answer === 'accept');
      return accountPage(request, reply, { notice: change ? `You are now ${change.role} of the organization.` : 'The invitation is declined.' });
    } catch (err) {
      if (err instanceof ApiError && err.statusCode < 500) return accountPage(request, reply.code(err.statusCode), { formError: err.message });
      throw err;
    }
  });

  // --- Operators: users ----------------------------------------------------------------------

  const ADMIN_PAGE = 50;
  async function usersPage(request: FastifyRequest<{ Querystring: { q?: string; after?: string } }>, reply: FastifyReply, data: Record<string, unknown> = {}) {
    const q = typeof request.query?.q === 'string' ? request.query.q.trim().slice(0, 320) : '';
    const after = typeof request.query?.after === 'string' && /^[0-9a-f-]{36}$/i.test(request.query.after) ? request.query.after : undefined;
    let users: User[];
    if (q) {
      const found = /^[0-9a-f-]{36}$/i.test(q) ? await findUserById(app.db, q) : await findUserByEmail(app.db, q);
      users = found ? [found] : [];
    } else users = await listUsers(app.db, { limit: ADMIN_PAGE, after });
    return page(reply, 'admin-users', {
      title: 'Users',
      nav: 'admin-users',
      q,
      users,
      next: !q && users.length === ADMIN_PAGE ? users[users.length - 1]!.id : null,
      scopeChoices: API_SCOPES,
      values: { email: '', name: '', scopes: [...DEFAULT_INVITATION_SCOPES] },
      ...data,
    });
  }

  app.get<{ Querystring: { q?: string; after?: string } }>('/admin/users', { ...HIDDEN, preHandler: operator }, async (request, reply) =>
    usersPage(request, reply),
  );

  app.post('/admin/users/invite', { ...HIDDEN, preHandler: operator }, async (request, reply) => {
    const email = field(request.body, 'email', 400).trim();
    const name = field(request.body, 'name', 300).trim();
    const scopes = [...new Set(list(request.body, 'scopes'))];
    const values = { email, name, scopes };
    const errors: Record<string, string> = {};
    if (!/^[^\s@]+@[^\s@]+$/.test(email) || email.length > 320) errors.email = 'Enter an email address.';
    if (name.length > 200) errors.name = 'Use at most 200 characters.';
    if (scopes.length === 0) errors.scopes = 'Choose at least one scope.';
    else if (scopes.some((x) => !(API_SCOPES as readonly string[]).includes(x))) errors.scopes = 'Choose among the scopes listed.';
    if (Object.keys(errors).length) return usersPage(request as never, reply.code(400), { errors, values });
    const actor = requestActor(request);
    const user = (await findUserByEmail(app.db, email)) ?? (await createUserAudited(app.db, actor, { email, name: name || email.split('@')[0]! }));
    const inv = await inviteUser(app.db, config.pepper, actor, {
      userId: user.id,
      scopes,
      ttlSeconds: config.console.invitationTtlSeconds,
      now: now(),
      issuer: config.issuer,
    });
    return usersPage(request as never, reply.code(201), { invited: { email: user.email, url: inv!.url, expires: when(inv!.expiresAt) } });
  });

  app.post<{ Params: { id: string; action: string } }>('/admin/users/:id/:action', { ...HIDDEN, preHandler: operator }, async (request, reply) => {
    const { id, action } = request.params;
    if (!/^[0-9a-f-]{36}$/i.test(id) || (action !== 'suspend' && action !== 'activate'))
      return usersPage(request as never, reply.code(404), { formError: 'No such user or action.' });
    if (id === request.consoleUser!.id && action === 'suspend')
      return usersPage(request as never, reply.code(400), { formError: 'You cannot suspend yourself here.' });
    const done =
      action === 'suspend'
        ? (await suspendUser(app, { userId: id, now: now(), actor: requestActor(request) }))?.user
        : await activateUser(app.db, { userId: id, actor: requestActor(request) });
    if (done && action === 'suspend') app.forgetCredentials({ userIds: [done.id] });
    if (!done) return usersPage(request as never, reply.code(404), { formError: 'No such user.' });
    return usersPage(request as never, reply, { notice: `${done.email} is ${done.status}.` });
  });

  // --- Operators: organizations --------------------------------------------------------------

  const asOperator = (request: FastifyRequest): MembershipActor => ({ kind: 'operator', audit: requestActor(request) });
  type OrgListQuery = { Querystring: { q?: string; after?: string } };

  async function orgsAdminPage(request: FastifyRequest<OrgListQuery>, reply: FastifyReply, data: Record<string, unknown> = {}) {
    const q = typeof request.query?.q === 'string' ? request.query.q.trim().slice(0, 200) : '';
    const after = typeof request.query?.after === 'string' && UUID.test(request.query.after) ? request.query.after : undefined;
    const rows = await listOrganizations(app.db, { limit: ADMIN_PAGE, after, nameContains: q || undefined });
    const last = rows[rows.length - 1];
    return page(reply, 'admin-organizations', {
      title: 'Organizations',
      nav: 'admin-organizations',
      q,
      organizations: rows.map((r) => ({ id: r.id, name: r.name, created: when(r.created_at), members: Number(r.member_count ?? 0) })),
      next:
        rows.length === ADMIN_PAGE && last ? `/console/admin/organizations?${new URLSearchParams({ ...(q ? { q } : {}), after: last.id }).toString()}` : null,
      values: { name: '', owner_email: '' },
      ...data,
    });
  }

  /** One organization as an operator sees it: every member, each role changeable and removable. */
  async function orgAdminPage(reply: FastifyReply, orgId: string, data: Record<string, unknown> = {}) {
    const org = UUID.test(orgId) ? await findOrganization(app.db, orgId) : undefined;
    if (!org) {
      reply.code(404);
      return page(reply, 'message', { title: 'Not found', message: 'No such organization.' });
    }
    return page(reply, 'admin-organization', {
      title: org.name,
      nav: 'admin-organizations',
      org: { id: org.id, name: org.name, created: when(org.created_at) },
      roles: ROLES,
      members: await listMembers(app.db, org.id),
      values: { email: '', role: 'member' },
      ...data,
    });
  }

  /** Runs an operator's membership change, showing a refusal (404/409) on the organization page. */
  async function orgAdminAction(reply: FastifyReply, orgId: string, fn: () => Promise<string>) {
    try {
      return orgAdminPage(reply, orgId, { notice: await fn() });
    } catch (err) {
      if (err instanceof ApiError && err.statusCode < 500) return orgAdminPage(reply.code(err.statusCode), orgId, { formError: err.message });
      throw err;
    }
  }

  app.get<OrgListQuery>('/admin/organizations', { ...HIDDEN, preHandler: operator }, async (request, reply) => orgsAdminPage(request, reply));

  app.post('/admin/organizations', { ...HIDDEN, preHandler: operator }, async (request, reply) => {
    const name = field(request.body, 'name', 300).trim();
    const ownerEmail = field(request.body, 'owner_email', 400).trim();
    const values = { name, owner_email: ownerEmail };
    const errors: Record<string, string> = {};
    if (!name) errors.name = 'Enter a name.';
    else if (name.length > 200) errors.name = 'Use at most 200 characters.';
    const owner = ownerEmail ? await findUserByEmail(app.db, ownerEmail) : undefined;
    if (ownerEmail && !owner) errors.owner_email = 'No user has this email address. Invite them on the Users page first, or leave this empty.';
    if (Object.keys(errors).length) return orgsAdminPage(request as never, reply.code(400), { errors, values });
    try {
      const org = await createOrganizationAsOperator(app.db, requestActor(request), { name, ...(owner ? { ownerId: owner.id } : {}) });
      return orgsAdminPage(request as never, reply.code(201), {
        notice: owner ? `${org.name} is created, with ${owner.email} as its owner.` : `${org.name} is created, without members yet.`,
        created: { id: org.id, name: org.name },
      });
    } catch (err) {
      // The owner can disappear between the look-up and the transaction: the service then refuses.
      if (err instanceof ApiError && err.statusCode === 404) {
        return orgsAdminPage(request as never, reply.code(400), { errors: { owner_email: 'No user has this email address.' }, values });
      }
      throw err;
    }
  });

  app.get<{ Params: { orgId: string } }>('/admin/organizations/:orgId', { ...HIDDEN, preHandler: operator }, async (request, reply) =>
    orgAdminPage(reply, request.params.orgId),
  );

  app.post<{ Params: { orgId: string } }>('/admin/organizations/:orgId/members', { ...HIDDEN, preHandler: operator }, async (request, reply) => {
    const { orgId } = request.params;
    const email = field(request.body, 'email', 400).trim();
    const role = field(request.body, 'role', 20) as Role;
    const values = { email, role };
    if (!UUID.test(orgId)) return orgAdminPage(reply.code(404), orgId);
    const errors: Record<string, string> = {};
    const target = email ? await findUserByEmail(app.db, email) : undefined;
    if (!email) errors.email = 'Enter the email address of an existing user.';
    else if (!target) errors.email = 'No user has this email address.';
    if (!ROLES.includes(role)) errors.role = 'Choose a role.';
    if (Object.keys(errors).length) return orgAdminPage(reply.code(400), orgId, { errors, values });
    try {
      const c = await changeMembership(membershipDeps, asOperator(request), orgId, target!.id, role);
      return orgAdminPage(reply, orgId, {
        notice: c.previousRole === null ? `${target!.email} is now ${role}.` : `${target!.email} was ${c.previousRole} and is now ${role}.`,
      });
    } catch (err) {
      if (err instanceof ApiError && err.statusCode < 500) return orgAdminPage(reply.code(err.statusCode), orgId, { formError: err.message, values });
      throw err;
    }
  });

  app.post<{ Params: { orgId: string; userId: string } }>(
    '/admin/organizations/:orgId/members/:userId',
    { ...HIDDEN, preHandler: operator },
    async (request, reply) => {
      const { orgId, userId } = request.params;
      const role = field(request.body, 'role', 20) as Role;
      if (!UUID.test(orgId) || !UUID.test(userId)) return orgAdminPage(reply.code(404), orgId);
      if (!ROLES.includes(role)) return orgAdminPage(reply.code(400), orgId, { formError: 'Choose a role.' });
      return orgAdminAction(reply, orgId, async () => {
        await changeMembership(membershipDeps, asOperator(request), orgId, userId, role);
        return 'The role is changed.';
      });
    },
  );

  app.post<{ Params: { orgId: string; userId: string } }>(
    '/admin/organizations/:orgId/members/:userId/remove',
    { ...HIDDEN, preHandler: operator },
    async (request, reply) => {
      const { orgId, userId } = request.params;
      if (!UUID.test(orgId) || !UUID.test(userId)) return orgAdminPage(reply.code(404), orgId);
      return orgAdminAction(reply, orgId, async () => {
        await changeMembership(membershipDeps, asOperator(request), orgId, userId, null);
        return 'The member is removed.';
      });
    },
  );

  // --- Operators: signing keys ---------------------------------------------------------------

  const span = (s: number) => (s % 86400 === 0 ? `${s / 86400} days` : s % 3600 === 0 ? `${s / 3600} hours` : `${s} seconds`);
  const isoWhen = (s: string | null) => (s ? when(new Date(s)) : '—');
  async function keysAdminPage(reply: FastifyReply, data: Record<string, unknown> = {}) {
    const { lifecycle } = app.keyRotation;
    const keys = await lifecycle.list();
    const next = await lifecycle.nextRotationAt();
    return page(reply, 'admin-keys', {
      title: 'Signing keys',
      nav: 'admin-keys',
      alg: config.signingAlg,
      period: span(config.keyRotationPeriodSeconds),
      prepublish: span(config.keyPrepublishSeconds),
      nextRotation: isoWhen(next),
      keys: keys.map((k) => ({
        kid: k.kid,
        state: k.state,
        created: isoWhen(k.created_at),
        activated: isoWhen(k.activated_at),
        retired: isoWhen(k.retired_at),
        revoked: isoWhen(k.revoked_at),
      })),
      ...data,
    });
  }

  app.get('/admin/keys', { ...HIDDEN, preHandler: operator }, async (_request, reply) => keysAdminPage(reply));

  app.post('/admin/keys/rotate', { ...HIDDEN, preHandler: operator }, async (request, reply) => {
    const immediate = field(request.body, 'immediate', 5) === '1';
    const r = await app.keyRotation.lifecycle.rotate(requestActor(request), { immediate });
    const what = {
      scheduled: 'is published and starts signing after the pre-publication window',
      already_scheduled: 'was already waiting',
      activated: 'signs from now on',
      concurrent: 'was made by a concurrent rotation',
    }[r.outcome];
    return keysAdminPage(reply, { notice: `Key ${r.key.kid} ${what}.` });
  });

  app.post('/admin/keys/revoke', { ...HIDDEN, preHandler: operator }, async (request, reply) => {
    const kid = field(request.body, 'kid', 200).trim();
    const confirm = field(request.body, 'confirm_kid', 200).trim();
    if (!kid) return keysAdminPage(reply.code(400), { errors: { kid: 'Enter the key ID.' }, values: { kid } });
    if (confirm !== kid) return keysAdminPage(reply.code(400), { errors: { confirm_kid: 'Type the same key ID to confirm.' }, values: { kid } });
    try {
      await app.keyRotation.lifecycle.revoke(requestActor(request), kid);
      return keysAdminPage(reply, { notice: `Key ${kid} is revoked: every token it signed is refused.` });
    } catch (err) {
      if (err instanceof ApiError && (err.statusCode === 404 || err.statusCode === 409)) {
        const message = err.statusCode === 404 ? `No signing key ${kid}.` : err.message;
        return keysAdminPage(reply.code(err.statusCode), { errors: { kid: message }, values: { kid } });
      }
      throw err;
    }
  });

  // --- Operators: audit log ------------------------------------------------------------------

  app.get<{ Querystring: { action?: string; actor?: string; target?: string; before?: string } }>(
    '/admin/audit',
    { ...HIDDEN, preHandler: operator },
    async (request, reply) => {
      const str = (v: unknown, max: number) => (typeof v === 'string' ? v.trim().slice(0, max) : '');
      const filters = { action: str(request.query.action, 100), actor: str(request.query.actor, 36), target: str(request.query.target, 200) };
      const beforeRaw = str(request.query.before, 20);
      const before = /^\d{1,15}$/.test(beforeRaw) ? Number(beforeRaw) : undefined;
      if (filters.actor && !/^[0-9a-f-]{36}$/i.test(filters.actor)) {
        return page(reply.code(400), 'admin-audit', {
          title: 'Audit log',
          nav: 'admin-audit',
          filters,
          events: [],
          next: null,
          formError: 'The actor is a user ID.',
        });
      }
      const events = await listAuditEvents(app.db, {
        limit: ADMIN_PAGE,
        before,
        action: filters.action || undefined,
        actorUserId: filters.actor || undefined,
        targetId: filters.target || undefined,
      });
      const last = events[events.length - 1];
      const next =
        events.length === ADMIN_PAGE && last ? `/console/admin/audit?${new URLSearchParams({ ...filters, before: String(last.id) }).toString()}` : null;
      return page(reply, 'admin-audit', {
        title: 'Audit log',
        nav: 'admin-audit',
        filters,
        next,
        events: events.map((e) => ({
          when: when(e.occurred_at),
          action: e.action,
          actor: [e.actor_user_id, e.actor_credential].filter(Boolean).join(' · '),
          target: [e.target_type, e.target_id].filter(Boolean).join(' '),
          details: JSON.stringify(e.details),
        })),
      });
    },
  );

  // --- Sign-in methods and sessions ----------------------------------------------------------

  async function securityPage(request: FastifyRequest, reply: FastifyReply, data: Record<string, unknown> = {}) {
    const s = request.consoleSession!;
    const t = now();
    const [passkeys, sessions, acc] = await Promise.all([
      listPasskeys(app.db, s.userId),
      listSessions(peopleDb(app.db), config, s.userId, t),
      accountOf(peopleDb(app.db), s.userId),
    ]);
    return page(reply, 'security', {
      title: 'Sign-in & sessions',
      nav: 'security',
      passwordHint: PASSWORD_HINT,
      hasPassword: acc.passwordHash !== null,
      passkeys: passkeys.map((p) => ({ id: p.id, name: p.name, created: when(p.created_at), lastUsed: when(p.last_used_at) })),
      sessions: sessions.map((x) => ({
        id: x.id,
        method: METHOD_LABEL[x.method],
        created: when(x.created_at),
        lastSeen: when(x.last_seen_at),
        from: [x.ip, x.user_agent?.slice(0, 60)].filter(Boolean).join(' · '),
        current: x.id === s.id,
      })),
      ...data,
    });
  }

  app.get('/security', { ...HIDDEN, preHandler: signedIn }, async (request, reply) => securityPage(request, reply));

  app.post('/password', { ...HIDDEN, preHandler: signedIn }, async (request, reply) => {
    const user = request.consoleUser!;
    const password = field(request.body, 'password', 1024);
    const confirm = field(request.body, 'confirm', 1024);
    const problem = passwordProblem(password, user);
    if (problem) return securityPage(request, reply.code(400), { errors: { password: problem } });
    if (password !== confirm) return securityPage(request, reply.code(400), { errors: { confirm: 'The two passwords differ.' } });
    const passwordHash = await hashPassword(password);
    await app.db.transaction().execute(async (trx) => {
      await setPasswordHash(trx, user.id, passwordHash, now());
      await ensureGrant(trx, config.pepper, user.id, [], now(), request.consoleSession!.apiTokenId);
    });
    return securityPage(request, reply, { notice: 'Your password is set.' });
  });

  app.post('/passkeys/options', { ...HIDDEN, preHandler: signedIn }, async (request, reply) => {
    const options = await registrationOptions(app.db, rp, request.consoleUser!);
    setChallenge(reply, { purpose: 'register', challenge: options.challenge, userId: request.consoleUser!.id });
    return options;
  });

  app.post<{ Body: { name?: string; response?: RegistrationResponseJSON } }>('/passkeys', { ...HIDDEN, preHandler: signedIn }, async (request, reply) => {
    const c = takeChallenge(request, reply, 'register');
    const user = request.consoleUser!;
    if (!c || c.userId !== user.id || !request.body?.response) return jsonError(reply, 400, 'Start again: the passkey prompt expired.');
    const t = now();
    const result = await app.db.transaction().execute(async (trx) => {
      const added = await addPasskey(trx, rp, requestActor(request), {
        userId: user.id,
        response: request.body.response!,
        expectedChallenge: c.challenge,
        name: passkeyName(request.body.name),
      });
      if (added.ok) await ensureGrant(trx, config.pepper, user.id, [], t, request.consoleSession!.apiTokenId);
      return added;
    });
    if (!result.ok) return jsonError(reply, 400, result.reason);
    return { redirect: `${PREFIX}/security` };
  });

  app.post<{ Params: { id: string } }>('/passkeys/:id/rename', { ...HIDDEN, preHandler: signedIn }, async (request, reply) => {
    const name = field(request.body, 'name', 200).trim();
    if (!name || name.length > 100 || !/^[0-9a-f-]{36}$/i.test(request.params.id)) {
      return securityPage(request, reply.code(400), { formError: 'A passkey name has 1 to 100 characters.' });
    }
    const ok = await renamePasskey(app.db, requestActor(request), request.consoleUser!.id, request.params.id, name);
    return securityPage(request, reply.code(ok ? 200 : 404), ok ? { notice: 'The passkey is renamed.' } : { formError: 'No such passkey.' });
  });

  app.post<{ Params: { id: string } }>('/passkeys/:id/remove', { ...HIDDEN, preHandler: signedIn }, async (request, reply) => {
    const ok = /^[0-9a-f-]{36}$/i.test(request.params.id) && (await removePasskey(app.db, requestActor(request), request.consoleUser!.id, request.params.id));
    return securityPage(request, reply.code(ok ? 200 : 404), ok ? { notice: 'The passkey is removed.' } : { formError: 'No such passkey.' });
  });

  app.post<{ Params: { id: string } }>('/sessions/:id/end', { ...HIDDEN, preHandler: signedIn }, async (request, reply) => {
    const ok =
      /^[0-9a-f-]{36}$/i.test(request.params.id) && (await endSession(app.db, requestActor(request), request.consoleUser!.id, request.params.id, now()));
    return securityPage(request, reply.code(ok ? 200 : 404), ok ? { notice: 'The session is ended.' } : { formError: 'No such session.' });
  });
}

class PasskeyRefused extends Error {}

function passkeyName(raw: unknown): string {
  const s = typeof raw === 'string' ? raw.trim().slice(0, 100) : '';
  return s || 'Passkey';
}
