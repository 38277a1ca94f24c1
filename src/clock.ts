/** Time source, injected so tests can move it. Milliseconds since the epoch. */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/** Whole seconds since the epoch, as JWT claims count them. */
export function epochSeconds(clock: Clock): number {
  return Math.floor(clock.now() / 1000);
}
