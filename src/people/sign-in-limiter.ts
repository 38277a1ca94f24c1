import type { CounterStore } from '../platform/http/counter-store.js';

/**
 * Failed sign-ins counted per key (an account's normalised email, a client IP) in fixed windows,
 * in `store`: this instance's memory, or Redis shared by every instance when TESSERA_REDIS_URL is
 * set. Past the budget, sign-in for that key answers exactly as a wrong password does (no
 * lock-out message that would tell an attacker the account exists); other accounts and addresses
 * are not affected. Successful sign-ins do not count.
 */
export class SignInLimiter {
  constructor(private readonly opts: { max: number; windowMs: number; store: CounterStore }) {}

  /** True while the key has failures left in its window. */
  async allows(key: string): Promise<boolean> {
    return (await this.opts.store.peek(key, this.opts.windowMs)).count < this.opts.max;
  }

  async fail(key: string): Promise<void> {
    await this.opts.store.hit(key, this.opts.windowMs);
  }
}
