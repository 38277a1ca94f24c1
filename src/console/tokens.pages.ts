import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ApiError } from '../platform/errors/api-error.js';
import { requestActor } from '../platform/auth/request-actor.js';
import { API_SCOPES } from '../platform/auth/scopes.js';
import { createChildApiToken, regenerateApiToken, revokeApiToken } from '../api-tokens/api-tokens.service.js';
import { listLiveApiTokens } from '../api-tokens/api-tokens.repository.js';
import { principalOf } from '../people/sessions.js';
import { HIDDEN, EXPIRY_CHOICES, field, list, when } from './forms.js';
import type { ConsoleContext } from './context.js';

/** Settings > Personal Access Tokens: create (shown once), regenerate and revoke. */
export function tokensPages(app: FastifyInstance, ctx: ConsoleContext): void {
  const { config, now, page, selfService } = ctx;

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
}
