import type { FastifyBaseLogger } from 'fastify';

interface Sample {
  message: string;
  code: string | undefined;
}

/**
 * Logs "database unavailable" answers at a volume that does not grow with the request rate: the
 * first 503 of an outage is logged at once (with its request), and the ones after it as one
 * warning per interval carrying their count and the last error. An interval with none ends the
 * summary; the next 503 is logged at once again. `close()` writes what is still counted.
 */
export class UnavailableLog {
  private count = 0;
  private last: Sample | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly log: Pick<FastifyBaseLogger, 'warn'>,
    private readonly intervalMs = 10_000,
  ) {}

  record(err: unknown, requestLog: Pick<FastifyBaseLogger, 'warn'>): void {
    const sample: Sample = { message: (err as Error)?.message ?? String(err), code: (err as { code?: string })?.code };
    if (this.timer === null) {
      requestLog.warn({ err: sample }, `database unavailable: answering 503 (further 503s are counted and logged every ${this.intervalMs / 1000} s)`);
      this.timer = setTimeout(() => this.tick(), this.intervalMs);
      this.timer.unref();
      return;
    }
    this.count++;
    this.last = sample;
  }

  private tick(): void {
    if (this.count === 0) {
      this.timer = null;
      return;
    }
    this.summarise();
    this.timer = setTimeout(() => this.tick(), this.intervalMs);
    this.timer.unref();
  }

  private summarise(): void {
    this.log.warn(
      { count: this.count, intervalSeconds: this.intervalMs / 1000, err: this.last },
      `database unavailable: ${this.count} more requests answered 503`,
    );
    this.count = 0;
    this.last = null;
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.count > 0) this.summarise();
  }
}
