import type { FastifyInstance, FastifyPluginAsync, preHandlerAsyncHookHandler } from 'fastify';
import { guardScope } from './contract.js';

/**
 * The operators' surface: register it with `{ prefix: '/admin', routes }`. Every route the given
 * plugins declare (paths relative to `/admin`) is guarded once, for the whole scope: scope
 * `admin`, and writes only for credentials that may manage credentials (an SDK key's JWT gets
 * 403 `insufficient_scope` on them, see `requireCredentialManager`).
 */
export async function adminSurface(app: FastifyInstance, opts: { routes: readonly FastifyPluginAsync[] }): Promise<void> {
  const read = app.requireAuth('admin');
  const write = app.requireCredentialManager('admin');
  const guard: preHandlerAsyncHookHandler = async function adminGuard(request, reply) {
    return (request.method === 'GET' || request.method === 'HEAD' ? read : write).call(this, request, reply);
  };
  guardScope(app, ['admin'], guard);
  for (const routes of opts.routes) await app.register(routes);
}
