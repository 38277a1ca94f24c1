import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ApiError } from '../platform/errors/api-error.js';
import { requestActor } from '../platform/auth/request-actor.js';
import { organizationsOfUser } from '../identity/organizations.repository.js';
import { createSdkKey, deleteSdkKeyFor, registrationKey, rotateSdkKeySecret, updateSdkKeyFor } from '../oauth/sdk-keys.service.js';
import { listSdkKeys, SDK_KEYS_PER_USER } from '../oauth/sdk-keys.repository.js';
import { SDK_KEY_SCOPES } from '../oauth/scopes.js';
import { principalOf } from '../people/sessions.js';
import { HIDDEN, OVERLAP_CHOICES, field, list, when } from './forms.js';
import type { ConsoleContext } from './context.js';

/** SDK Keys: create with a secret (shown once) or a public key, enable, disable, rotate the secret, delete. */
export function sdkKeysPages(app: FastifyInstance, ctx: ConsoleContext): void {
  const { config, sdkDeps, page, selfService } = ctx;

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
}
