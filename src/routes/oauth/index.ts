import type { FastifyInstance } from 'fastify';
import { oauthRouteContext } from './common.js';
import { introspectRoute } from './introspect.js';
import { revokeRoute } from './revoke.js';
import { tokenRoute } from './token.js';

/** /oauth/token, /oauth/introspect, /oauth/revoke. */
export async function oauthRoutes(app: FastifyInstance): Promise<void> {
  const ctx = oauthRouteContext(app);
  await tokenRoute(app, ctx);
  await introspectRoute(app, ctx);
  await revokeRoute(app, ctx);
}
