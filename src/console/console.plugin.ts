import type { FastifyInstance } from 'fastify';
import cookie from '@fastify/cookie';
import formbody from '@fastify/formbody';
import helmet from '@fastify/helmet';
import view from '@fastify/view';
import { Eta } from 'eta';
import { findUserById, type User } from '../identity/users.repository.js';
import { findLiveSession, principalOf, type ConsoleSession } from '../people/sessions.js';
import { HIDDEN, PREFIX } from './forms.js';
import { consoleDir } from './assets.js';
import { consoleContext } from './context.js';
import { signInPages } from './sign-in.pages.js';
import { accountPages } from './account.pages.js';
import { tokensPages } from './tokens.pages.js';
import { sdkKeysPages } from './sdk-keys.pages.js';
import { organizationsPages } from './organizations.pages.js';
import { adminPages } from './admin.pages.js';

declare module 'fastify' {
  interface FastifyRequest {
    consoleSession: ConsoleSession | null;
    consoleUser: User | null;
  }
}

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
  const ctx = consoleContext(app);
  const { config, secure, cookieName, origin, assets, now, page } = ctx;

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

  // --- Static assets -------------------------------------------------------------------------

  app.get<{ Params: { file: string } }>('/assets/:file', HIDDEN, async (request, reply) => {
    const a = assets.files.get(request.params.file);
    if (!a) return reply.code(404).type('text/plain; charset=utf-8').send('not found');
    return reply.header('cache-control', 'public, max-age=31536000, immutable').type(a.type).send(a.body);
  });

  signInPages(app, ctx);
  accountPages(app, ctx);
  tokensPages(app, ctx);
  sdkKeysPages(app, ctx);
  organizationsPages(app, ctx);
  adminPages(app, ctx);
}
