import type { FastifyInstance, FastifyReply } from 'fastify';
import type { AuthenticationResponseJSON, RegistrationResponseJSON } from '@simplewebauthn/server';
import { requestActor } from '../platform/auth/request-actor.js';
import { findUserById, normaliseEmail } from '../identity/users.repository.js';
import { findApiTokenByHash } from '../api-tokens/api-tokens.repository.js';
import { hashApiToken, isWellFormedApiToken } from '../api-tokens/api-token.js';
import { endAllSessions, endSession } from '../people/sessions.js';
import { accountOf, ensureGrant, liveGrant, passwordAccountByEmail, setPasswordHash } from '../people/accounts.js';
import { hashPassword, passwordProblem, verifyPassword } from '../people/password.js';
import { peekInvitation, useInvitation } from '../people/invitations.js';
import { addPasskey, authenticationOptions, registrationOptions, verifyPasskeySignIn } from '../people/passkeys.js';
import { peopleDb } from '../people/db.js';
import { HIDDEN, PREFIX, SIGN_IN_FAILED, TOKEN_SIGN_IN_CLOSED, PASSWORD_HINT, field, PasskeyRefused, passkeyName } from './forms.js';
import type { ConsoleContext } from './context.js';

/** Signing in, signing out and accepting an invitation: the pages open to people without a session. */
export function signInPages(app: FastifyInstance, ctx: ConsoleContext): void {
  const { config, rp, now, perAccount, perIp, page, clearSessionCookie, setChallenge, takeChallenge, signIn, jsonError, signedIn } = ctx;

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
}
