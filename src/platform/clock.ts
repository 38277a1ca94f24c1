/** Time source, injected so tests can move it. Milliseconds since the epoch. */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/** Whole seconds since the epoch (rounded down), as JWT claims count them, for a time in milliseconds. */
export function epochSeconds(ms: number): number {
  return Math.floor(ms / 1000);
}
