import type { Clock } from '../clock.js';
import type { CounterStore } from './counter-store.js';

/**
 * An attempt's place in its key's budget: `keep()` when it counts (a failure), `release()` when it
 * does not (a success); exactly one of them, once. Or, past the budget, how long until it renews.
 */
export type Reservation = { ok: true; keep(): Promise<void>; release(): void } | { ok: false; retryAfterSeconds: number };

interface Window {
  /** Attempts kept plus attempts under way. */
  count: number;
  underWay: number;
  startMs: number;
  waiters: Array<() => void>;
}

/**
 * Counts attempts per key (an IP) in fixed windows. Each attempt takes its slot synchronously,
 * before the work it guards begins, so at most `max` attempts per key and window are ever under
 * way or counted, however many arrive at once. An attempt finding the budget taken by attempts
 * still under way waits for them to settle (a success gives its slot back, so a burst of good
 * requests is not refused for its own concurrency); once the budget is taken by kept attempts
 * only, it is refused without any work. Holds at most `maxKeys` keys (the oldest forgotten first).
 *
 * With a `shared` store (Redis, every instance), the kept attempts are also counted there: an
 * attempt whose key has `max` kept attempts in the shared window, on whichever instances, is
 * refused, and `keep()` resolves once the shared count has moved, so the next attempt on any
 * instance sees it. Attempts under way at once on several instances may each pass the shared
 * check: the overshoot is bounded by the per-instance budget above.
 */
export class AttemptLimiter {
  private readonly windows = new Map<string, Window>();

  constructor(private readonly opts: { max: number; windowMs: number; clock: Clock; maxKeys?: number; shared?: CounterStore | null }) {}

  private window(key: string): Window {
    const now = this.opts.clock.now();
    let w = this.windows.get(key);
    if (w && (now - w.startMs >= this.opts.windowMs || now < w.startMs)) {
      this.windows.delete(key);
      w = undefined;
    }
    if (!w) {
      if (this.windows.size >= (this.opts.maxKeys ?? 10_000)) {
        const oldest = this.windows.keys().next().value;
        if (oldest !== undefined) this.windows.delete(oldest);
      }
      w = { count: 0, underWay: 0, startMs: now, waiters: [] };
      this.windows.set(key, w);
    }
    return w;
  }

  /** Takes a slot of `key`'s budget; the local counter moves before this returns its promise. */
  async acquire(key: string): Promise<Reservation> {
    const local = await this.acquireLocal(key);
    const shared = this.opts.shared;
    if (!local.ok || !shared) return local;
    const seen = await shared.peek(key, this.opts.windowMs);
    if (seen.count >= this.opts.max) {
      local.release();
      return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil(seen.ttlMs / 1000)) };
    }
    return {
      ok: true,
      keep: async () => {
        await local.keep();
        await shared.hit(key, this.opts.windowMs);
      },
      release: () => local.release(),
    };
  }

  private async acquireLocal(key: string): Promise<Reservation> {
    for (;;) {
      const w = this.window(key);
      if (w.count < this.opts.max) {
        w.count++;
        w.underWay++;
        let settled = false;
        const settle = (giveBack: boolean) => {
          if (settled) return;
          settled = true;
          w.underWay--;
          if (giveBack) w.count--;
          const waiters = w.waiters.splice(0);
          for (const wake of waiters) wake();
        };
        return { ok: true, keep: async () => settle(false), release: () => settle(true) };
      }
      if (w.underWay === 0) {
        const retry = Math.ceil((w.startMs + this.opts.windowMs - this.opts.clock.now()) / 1000);
        return { ok: false, retryAfterSeconds: Math.max(1, retry) };
      }
      await new Promise<void>((resolve) => w.waiters.push(resolve));
    }
  }
}
