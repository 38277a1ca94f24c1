import type { FastifyInstance } from 'fastify';
import { OAUTH_BODY_LIMIT, registerFormParser } from '../platform/http/form.js';
import { introspectRoute } from './introspect.routes.js';
import { revokeRoute } from './revoke.routes.js';
import { tokenRoute } from './token.routes.js';

/** /oauth/token, /oauth/introspect, /oauth/revoke: the only routes that read form bodies (in this context only). */
export async function oauthRoutes(app: FastifyInstance): Promise<void> {
  registerFormParser(app, OAUTH_BODY_LIMIT);
  await tokenRoute(app);
  await introspectRoute(app);
  await revokeRoute(app);
}
