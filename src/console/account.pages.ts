import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { RegistrationResponseJSON } from '@simplewebauthn/server';
import { requestActor } from '../platform/auth/request-actor.js';
import { endSession, listSessions } from '../people/sessions.js';
import { accountOf, ensureGrant, setPasswordHash } from '../people/accounts.js';
import { hashPassword, passwordProblem } from '../people/password.js';
import { addPasskey, listPasskeys, registrationOptions, removePasskey, renamePasskey } from '../people/passkeys.js';
import { peopleDb } from '../people/db.js';
import { HIDDEN, PREFIX, PASSWORD_HINT, field, when, METHOD_LABEL, passkeyName } from './forms.js';
import type { ConsoleContext } from './context.js';

/** The account page and the sign-in methods and sessions of the person signed in. */
export function accountPages(app: FastifyInstance, ctx: ConsoleContext): void {
  const { config, rp, now, page, setChallenge, takeChallenge, jsonError, signedIn, accountPage } = ctx;

  // --- Account -------------------------------------------------------------------------------

  app.get('/account', { ...HIDDEN, preHandler: signedIn }, async (request, reply) => accountPage(request, reply));

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
