import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { SessionCache } from './session-cache.js';
import { pruneSessions } from './sessions.repository.js';
import { SessionWrites, slidingOf } from './sessions.service.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Verified sessions of this instance, invalidated through change events. */
    sessionCache: SessionCache;
    /** Logins and logouts of this instance, committed in groups (durable before they resolve). */
    sessionWrites: SessionWrites;
    /** Deletes expired and long-revoked sessions now; the periodic job calls it. Returns how many. */
    pruneSessions(): Promise<number>;
  }
}

/** How often expired sessions are deleted, and how long revoked rows stay for people to read. */
const PRUNE_EVERY_MS = 5 * 60_000;
const KEEP_REVOKED_MS = 24 * 3600_000;

/**
 * Session state of an instance: the cache of verified sessions (dropped by `session`,
 * `api_token` and `user` change events from every instance, and wholly on listener reconnects)
 * and the job pruning expired rows.
 */
export const sessionsPlugin = fp(
  async function sessionsPlugin(app: FastifyInstance) {
    const cache = new SessionCache();
    app.decorate('sessionCache', cache);
    app.decorate('sessionWrites', new SessionWrites(app.db, app.config));
    const offs = [
      app.changes.on('session', (e) => e.id && cache.invalidate('session', e.id)),
      app.changes.on('api_token', (e) => e.id && cache.invalidate('api_token', e.id)),
      app.changes.on('user', (e) => e.id && cache.invalidate('user', e.id)),
      app.changes.onReset(() => cache.clear()),
    ];

    app.decorate('pruneSessions', async function prune() {
      const now = app.clock.now();
      return pruneSessions(app.db, new Date(now), new Date(now - KEEP_REVOKED_MS), slidingOf(app.config));
    });

    let timer: NodeJS.Timeout | null = null;
    app.jobs.register({
      name: 'session-pruning',
      start() {
        timer = setInterval(() => {
          app.pruneSessions().then(
            (n) => n > 0 && app.log.debug({ pruned: n }, 'expired sessions pruned'),
            (err: Error) => app.log.warn({ err: { message: err.message } }, 'could not prune sessions'),
          );
        }, PRUNE_EVERY_MS);
        timer.unref();
      },
      stop() {
        if (timer) clearInterval(timer);
      },
    });
    app.addHook('onClose', async () => {
      for (const off of offs) off();
      cache.clear();
    });
  },
  { name: 'tessera-sessions', dependencies: ['tessera-auth'] },
);
