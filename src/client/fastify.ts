import type { FastifyPluginAsync, FastifyReply, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import fp from 'fastify-plugin';
import { TesseraVerifyError } from './errors.js';
import { createVerifier, type VerifiedToken, type Verifier, type VerifierOptions } from './verifier.js';

export interface TesseraAuthOptions extends Partial<VerifierOptions> {
  /** A verifier to use (else one is made from the other options: `issuer` and `audience` then required). */
  verifier?: Verifier;
  /** `realm` of the WWW-Authenticate challenges (default `tessera`). */
  realm?: string;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** A preHandler that requires a valid Tessera token holding every scope given. */
    tesseraAuth(scopes?: readonly string[] | string): preHandlerAsyncHookHandler;
    tesseraVerifier: Verifier;
  }
  interface FastifyRequest {
    /** The verified token, set by `app.tesseraAuth()` (null on unprotected routes). */
    tessera: VerifiedToken | null;
  }
}

const quote = (s: string) => s.replace(/["\\]/g, "'");

/** RFC 6750 §3 challenge and the body Tessera's own API answers. */
function reject(reply: FastifyReply, err: TesseraVerifyError, realm: string): FastifyReply {
  // A DPoP failure is answered with the DPoP scheme (RFC 9449 §7.1), everything else with Bearer.
  let challenge = `${err.reason === 'dpop' ? 'DPoP' : 'Bearer'} realm="${quote(realm)}"`;
  if (err.reason !== 'missing') {
    if (err.code === 'insufficient_scope') challenge += `, error="insufficient_scope", scope="${quote(err.scopes.join(' '))}"`;
    else if (err.code === 'invalid_token') challenge += `, error="invalid_token", error_description="${quote(err.message)}"`;
  }
  if (err.code === 'temporarily_unavailable') {
    return reply.code(503).header('retry-after', '1').send({ error: 'service_unavailable', message: err.message });
  }
  return reply.code(err.status).header('www-authenticate', challenge).header('cache-control', 'no-store').send({ error: err.code, message: err.message });
}

const plugin: FastifyPluginAsync<TesseraAuthOptions> = async (app, opts) => {
  const { verifier: given, realm = 'tessera', ...rest } = opts;
  let verifier = given;
  if (!verifier) {
    if (!rest.issuer || !rest.audience) throw new Error('tessera auth plugin: pass issuer and audience (or a verifier)');
    verifier = createVerifier(rest as VerifierOptions);
  }
  const v = verifier;
  app.decorate('tesseraVerifier', v);
  app.decorateRequest('tessera', null);
  app.decorate('tesseraAuth', (scopes: readonly string[] | string = []) => {
    const required = typeof scopes === 'string' ? scopes.split(' ').filter(Boolean) : [...scopes];
    return async function tesseraPreHandler(request: FastifyRequest, reply: FastifyReply) {
      try {
        const url = `${request.protocol}://${request.host}${request.url}`;
        request.tessera = await v.verifyRequest(request.headers, { scopes: required, method: request.method, url });
      } catch (err) {
        if (err instanceof TesseraVerifyError) {
          request.log.debug({ reason: err.reason }, 'tessera: token refused');
          return reject(reply, err, realm);
        }
        throw err;
      }
    } as preHandlerAsyncHookHandler;
  });
};

/**
 * Protects Fastify routes with Tessera tokens:
 * ```js
 * await app.register(tesseraAuth, { issuer: 'https://auth.example.com', audience: 'https://api.example.com' });
 * app.get('/jobs', { preHandler: app.tesseraAuth(['api']) }, async (req) => ({ caller: req.tessera.subject }));
 * ```
 * 401 without a valid token, 403 without the scopes (RFC 6750 `WWW-Authenticate` challenges), 503
 * when a required check with Tessera cannot be made.
 */
export const tesseraAuth = fp(plugin, { fastify: '5.x', name: 'tessera-auth-client' });
export default tesseraAuth;
