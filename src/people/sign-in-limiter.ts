/**
 * Failed sign-ins counted per key (an account's normalised email, a client IP) in fixed windows,
 * in this instance's memory. Past the budget, sign-in for that key answers exactly as a wrong
 * password does (no lock-out message that would tell an attacker the account exists); other
 * accounts and addresses are not affected. Successful sign-ins do not count.
 */
export class SignInLimiter {
  private readonly windows = new Map<string, { count: number; startMs: number }>();

  constructor(private readonly opts: { max: number; windowMs: number; now: () => number; maxKeys?: number }) {}

  private current(key: string): { count: number; startMs: number } | undefined {
    const w = this.windows.get(key);
    if (w && this.opts.now() - w.startMs >= this.opts.windowMs) {
      this.windows.delete(key);
      return undefined;
    }
    return w;
  }

  /** True while the key has failures left in its window. */
  allows(key: string): boolean {
    return (this.current(key)?.count ?? 0) < this.opts.max;
  }

  fail(key: string): void {
    const w = this.current(key);
    if (w) {
      w.count++;
      return;
    }
    if (this.windows.size >= (this.opts.maxKeys ?? 50_000)) {
      const oldest = this.windows.keys().next().value;
      if (oldest !== undefined) this.windows.delete(oldest);
    }
    this.windows.set(key, { count: 1, startMs: this.opts.now() });
  }
}
