import { isDatabaseUnavailable } from '../errors/handler.js';

export interface GroupCommitOptions {
  /** Most requests one statement carries. */
  maxBatch: number;
  /** Most statements in flight at once; requests arriving meanwhile wait and go together in the next. */
  maxInFlight: number;
}

interface Waiting<I, O> {
  input: I;
  resolve: (out: O) => void;
  reject: (err: unknown) => void;
}

/**
 * Group commit for writes of concurrent requests: `submit` queues one request's write; the
 * requests that arrive within the same turn of the event loop, or while `maxInFlight` statements
 * are already running, are written by one call of `write` (one multi-row statement, hence one
 * transaction and one WAL flush for all of them). Each `submit` resolves only after the statement
 * carrying its request has returned, i.e. committed with the database's durability
 * (`synchronous_commit` stays on): an acknowledged write survives a crash exactly as a
 * one-request transaction would.
 *
 * Errors stay per request: `write` answers per input (a request that does not qualify gets its
 * own "no" without touching the others). If the whole statement fails with a data error (one
 * input conflicting, a deadlock), nothing of it was written, so every request is tried again in a
 * statement of its own and fails or succeeds alone. If the database is unavailable (the
 * connection dropped, a timeout), whether the statement committed is unknown, so every request
 * of the batch gets that error (a 503) and none is written twice.
 */
export class GroupCommit<I, O> {
  private queue: Array<Waiting<I, O>> = [];
  private inFlight = 0;
  private scheduled = false;

  constructor(
    private readonly write: (inputs: I[]) => Promise<O[]>,
    private readonly opts: GroupCommitOptions,
  ) {
    if (opts.maxBatch < 1 || opts.maxInFlight < 1) throw new Error('group commit needs maxBatch and maxInFlight >= 1');
  }

  /** Writes `input` together with the concurrent ones; resolves with its own result once committed. */
  submit(input: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.queue.push({ input, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight >= this.opts.maxInFlight || this.queue.length === 0) return;
    this.scheduled = true;
    // After the current turn: every request whose body was read in it joins this batch.
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    while (this.inFlight < this.opts.maxInFlight && this.queue.length > 0) {
      const batch = this.queue.splice(0, this.opts.maxBatch);
      this.inFlight++;
      void this.run(batch).finally(() => {
        this.inFlight--;
        this.schedule();
      });
    }
  }

  private async run(batch: Array<Waiting<I, O>>): Promise<void> {
    try {
      const outs = await this.write(batch.map((w) => w.input));
      batch.forEach((w, i) => w.resolve(outs[i]!));
    } catch (err) {
      if (batch.length === 1 || isDatabaseUnavailable(err)) {
        for (const w of batch) w.reject(err);
        return;
      }
      // Nothing of the statement was written: each request alone, so one bad input fails only itself.
      await Promise.all(
        batch.map(async (w) => {
          try {
            w.resolve((await this.write([w.input]))[0]!);
          } catch (e) {
            w.reject(e);
          }
        }),
      );
    }
  }
}
