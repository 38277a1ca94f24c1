import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { Counter, Gauge } from 'prom-client';
import { SigningKeyLifecycle, type KeyEvent } from './rotation.js';

export interface KeyRotationServices {
  lifecycle: SigningKeyLifecycle;
  /** One run of the scheduled job (what the timer does), then a reload of this instance's keys. */
  runOnce(): Promise<KeyEvent[]>;
}

declare module 'fastify' {
  interface FastifyInstance {
    keyRotation: KeyRotationServices;
  }
}

/**
 * The signing-key job: every `TESSERA_KEY_CHECK_INTERVAL` each instance runs the lifecycle steps
 * (the advisory lock lets one instance do each) and reloads its keys from the database, a safety
 * net under LISTEN/NOTIFY. Counters for rotation events; a gauge of the keys held per state.
 */
export const keyRotationPlugin = fp(
  async function keyRotationPlugin(app: FastifyInstance) {
    const { config, clock } = app;
    const keys = app.oauth.keys;
    const events = new Counter({
      name: 'tessera_signing_key_events_total',
      help: 'Signing-key lifecycle changes made by this instance, by event (created, activated, retired, revoked, removed)',
      labelNames: ['event'] as const,
      registers: [app.metrics],
    });
    const rotations = new Counter({
      name: 'tessera_signing_key_rotations_total',
      help: 'New signing keys put into service by this instance, by kind (scheduled, manual, immediate, revocation, bootstrap)',
      labelNames: ['kind'] as const,
      registers: [app.metrics],
    });
    new Gauge({
      name: 'tessera_signing_keys',
      help: 'Signing keys this instance holds, by state (next, active, retired)',
      labelNames: ['state'] as const,
      registers: [app.metrics],
      collect() {
        this.reset();
        for (const state of ['next', 'active', 'retired']) this.set({ state }, 0);
        for (const k of keys.loaded()) this.inc({ state: k.state });
      },
    });

    const lifecycle = new SigningKeyLifecycle({
      db: app.jobDb,
      config,
      clock,
      log: app.log,
      async onCommitted(evs) {
        for (const e of evs) {
          events.inc({ event: e.event });
          if (e.event === 'activated') rotations.inc({ kind: e.kind ?? 'scheduled' });
        }
        // This instance follows at once; the others on the notification.
        await keys.reload().catch((err) => app.log.error({ err }, 'could not reload signing keys'));
      },
    });

    // Runs one after another (a call made during a run gets a run of its own, at its own clock reading).
    let queue: Promise<unknown> = Promise.resolve();
    const runOnce = (): Promise<KeyEvent[]> => {
      const run = queue.then(async () => {
        const changed = await lifecycle.runScheduled();
        await keys.reload();
        return changed;
      });
      queue = run.catch(() => undefined);
      return run;
    };
    app.decorate('keyRotation', { lifecycle, runOnce });

    app.readinessChecks.set('signing_key_reload', async () => {
      const err = keys.lastReloadError();
      return err ? `signing keys could not be reloaded: ${err}` : null;
    });

    let timer: NodeJS.Timeout | null = null;
    app.jobs.register({
      name: 'signing-key-lifecycle',
      async start() {
        // Finish whatever a crashed run left half done before serving.
        await runOnce().catch((err) => app.log.error({ err }, 'signing-key job failed'));
        timer = setInterval(() => {
          runOnce().catch((err) => app.log.error({ err }, 'signing-key job failed'));
        }, config.keyCheckIntervalSeconds * 1000);
        timer.unref();
      },
      async stop() {
        if (timer) clearInterval(timer);
        await queue;
      },
    });
    app.addHook('onClose', async () => {
      await queue;
    });
  },
  { name: 'tessera-key-rotation', dependencies: ['tessera-oauth', 'tessera-metrics'] },
);
