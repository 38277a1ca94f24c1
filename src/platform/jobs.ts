import type { FastifyBaseLogger } from 'fastify';

/**
 * A background job of a running server: timers, the change listener, periodic maintenance. `start`
 * may do a first run the server must not serve without (it is awaited); `stop` ends what start began.
 */
export interface Job {
  name: string;
  start(): Promise<void> | void;
  stop?(): Promise<void> | void;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The background jobs plugins registered; whoever runs the server starts them (see src/server.ts). */
    jobs: JobRunner;
  }
}

/**
 * Holds the jobs features register while the app is built. Nothing runs until `start()`: an app
 * built only to read its routes and contract (or a test that needs no jobs) never starts any.
 * Jobs start one after another in registration order and stop in reverse order.
 */
export class JobRunner {
  private readonly jobs: Job[] = [];
  private started: Job[] = [];
  private starting: Promise<void> | null = null;

  constructor(private readonly log: Pick<FastifyBaseLogger, 'debug'>) {}

  register(job: Job): void {
    if (this.starting) throw new Error(`job ${job.name} registered after the jobs started`);
    this.jobs.push(job);
  }

  /** Starts every job, once, each awaited; a failing start fails this (stop() then stops those begun). */
  start(): Promise<void> {
    this.starting ??= (async () => {
      for (const job of this.jobs) {
        this.started.push(job);
        await job.start();
        this.log.debug({ job: job.name }, 'job started');
      }
    })();
    return this.starting;
  }

  get isStarted(): boolean {
    return this.starting !== null;
  }

  /** Stops the started jobs, last started first. */
  async stop(): Promise<void> {
    await this.starting?.catch(() => undefined);
    const started = this.started.reverse();
    this.started = [];
    for (const job of started) await job.stop?.();
  }
}
