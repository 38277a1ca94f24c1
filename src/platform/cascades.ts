import type { Transaction } from 'kysely';
import type { Database } from './database/database.js';
import type { Actor } from './database/audit.repository.js';

/**
 * What one credential's change does to the credentials that depend on it. The owning feature
 * raises the event inside its own transaction; the features holding dependent credentials
 * register handlers that end those credentials (with their audit rows and change events) in that
 * same transaction, so the change and every cascade commit or roll back together. This keeps the
 * dependency direction one-way: the owner never imports its dependents.
 *
 * Each event has its input and its result: every handler returns the part of the result it is
 * responsible for, and the caller gets the merged result (starting from the initial value it passes).
 * Each composition root (the application, the CLI) builds its own registry (src/cascades.ts).
 */
export interface CascadeEvents {
  /** A user was suspended: every credential they hold ends (API tokens, sessions, SDK keys). */
  userSuspended: {
    input: { userId: string; now: Date; actor: Actor };
    result: { apiTokensRevoked: number; sessionsEnded: number; sdkKeysDisabled: string[] };
  };
  /** A membership ended: the user's tokens that may act in the organization stop working. */
  membershipEnded: {
    input: { organizationId: string; userId: string; now: Date; actor: Actor };
    result: { sdkKeysCutOff: string[] };
  };
  /** One API token was revoked (itself, or as a descendant of a revoked token): its sessions end. */
  apiTokenRevoked: {
    input: { apiTokenId: string; now: Date; actor: Actor };
    result: { sessionsEnded: number };
  };
  /** A family of API tokens was revoked (a token and its descendants): what they created goes with them. */
  apiTokenFamilyRevoked: {
    input: { apiTokenIds: readonly string[]; now: Date; actor: Actor };
    result: { sdkKeysDeleted: string[] };
  };
}

export type CascadeName = keyof CascadeEvents;

export type CascadeHandler<E extends CascadeName> = (
  trx: Transaction<Database>,
  input: CascadeEvents[E]['input'],
) => Promise<Partial<CascadeEvents[E]['result']>>;

/**
 * The handlers of every cascade event, each under a stable name. Handlers run one after another in
 * the order their names were first registered, so one composition gives one order everywhere;
 * registering a name again replaces its handler and keeps its place.
 */
export class CascadeRegistry {
  private readonly handlers = new Map<CascadeName, Map<string, CascadeHandler<CascadeName>>>();

  on<E extends CascadeName>(event: E, name: string, handler: CascadeHandler<E>): void {
    let byName = this.handlers.get(event);
    if (!byName) this.handlers.set(event, (byName = new Map()));
    byName.set(name, handler as unknown as CascadeHandler<CascadeName>);
  }

  /** Runs every handler of `event` in `trx`, in order; returns `initial` merged with their results. */
  async run<E extends CascadeName>(
    trx: Transaction<Database>,
    event: E,
    input: CascadeEvents[E]['input'],
    initial: CascadeEvents[E]['result'],
  ): Promise<CascadeEvents[E]['result']> {
    const result = { ...initial };
    for (const handler of (this.handlers.get(event) ?? new Map<string, CascadeHandler<E>>()).values()) {
      Object.assign(result, await (handler as unknown as CascadeHandler<E>)(trx, input));
    }
    return result;
  }
}
