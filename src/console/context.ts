// Everything the console's pages share: settings, sign-in limiters, service dependencies, the page
// renderer, the session and challenge cookies, and the preHandlers that guard pages.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { organizationsOfUser } from '../identity/organizations.repository.js';
import { myInvitations } from '../identity/invitations.service.js';
import { startSession, type SignInMethod } from '../people/sessions.js';
import { relyingPartyOf } from '../people/passkeys.js';
import { SignInLimiter } from '../people/sign-in-limiter.js';
import { ProviderRegistry } from '../provider-tokens/registry.js';
import type { ProviderTokenDeps } from '../provider-tokens/provider-tokens.service.js';
import { PREFIX, CHALLENGE_TTL_MS, FAILURE_WINDOW_MS, when, METHOD_LABEL } from './forms.js';
import { loadAssets } from './assets.js';
import { openChallenge, sealChallenge, type Challenge } from './challenge.js';

/** What every page module gets: built once per console instance by {@link consoleContext}. */
export type ConsoleContext = ReturnType<typeof consoleContext>;

/** The shared helpers of the console, bound to `app` (its database, clock, config and counters). */
export function consoleContext(app: FastifyInstance) {
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

  /** preHandlers of pages that need `scope`: signed in, and a 403 page naming what is missing otherwise. */
  const withScope = (scope: string, title: string, message: string) => [
    signedIn,
    async (request: FastifyRequest, reply: FastifyReply) => {
      if (request.consoleSession?.scopes.includes(scope)) return;
      reply.code(403);
      return page(reply, 'message', { title, message });
    },
  ];
  /** Self-service pages: the scope the matching API routes require. */
  const selfService = withScope('api', 'Not available', 'Your sign-in lacks the api scope this page needs.');
  /** Operator pages: scope admin. */
  const operator = withScope('admin', 'Operators only', 'This page needs the admin scope.');

  /** What the membership and invitation services need. */
  const membershipDeps = { db: app.db, clock: app.clock, cascades: app.cascades, forget: app.forgetCredentials };

  /** The account page (its organizations and open invitations), also where an answered invitation lands. */
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

  return {
    config,
    secure,
    cookieName,
    origin,
    rp,
    assets,
    now,
    perAccount,
    perIp,
    sdkDeps,
    registry,
    providerDeps,
    page,
    clearSessionCookie,
    setChallenge,
    takeChallenge,
    signIn,
    jsonError,
    signedIn,
    selfService,
    operator,
    membershipDeps,
    accountPage,
  };
}
