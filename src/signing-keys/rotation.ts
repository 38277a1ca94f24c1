import { conflict, notFound } from '../platform/errors/api-error.js';
import { sql, type Transaction } from 'kysely';
import type { Logger } from 'pino';
import type { Clock } from '../platform/clock.js';
import type { Config } from '../platform/config.js';
import type { Database, Db } from '../platform/database/database.js';
import { recordAudit, type Actor } from '../platform/database/audit.repository.js';
import { publishChange } from '../platform/database/notifications.js';
import {
  deleteExpiredSigningKeys,
  findActiveSigningKey,
  findSigningKey,
  insertSigningKey,
  listAllSigningKeys,
  listSigningKeys,
  setSigningKeyState,
  type SigningKeyRow,
} from './signing-keys.repository.js';
import { SIGNING_KEYS_CHANGED, SIGNING_KEYS_LOCK } from './key-store.js';
import { generateSigningKey } from './signing-key.js';
import { ensureActiveKeyIn } from './bootstrap.js';

/*
 * Signing-key lifecycle: next -> active -> retired -> removed (row deleted), and revoked.
 *
 * - `next`: published in the JWKS, not signing, until `activate_after` (created + TESSERA_KEY_PREPUBLISH,
 *   longer than the JWKS max-age, so every cached JWKS holds it before it signs).
 * - `active`: signs; exactly one (unique partial index), whatever races or crashes.
 * - `retired`: published until `not_after` = retired_at + access-token TTL + clock tolerance + one check
 *   interval (the longest an instance that missed the change keeps signing with it), then deleted.
 * - `revoked`: unpublished at once, its tokens rejected; the row stays (for the list) until its
 *   `not_after`, then deleted too.
 *
 * Every change is one transaction under the advisory lock SIGNING_KEYS_LOCK that re-reads the rows,
 * checks the step is still due, changes them, audits, and publishes `signing_keys` (delivered on commit).
 * A crash anywhere leaves the rows of the last committed step: each one is a consistent state, and
 * every step is idempotent, so the next run (any instance, any time) carries on from there.
 */

export type RotationKind = 'scheduled' | 'manual' | 'immediate' | 'revocation' | 'bootstrap';

export interface KeyEvent {
  event: 'created' | 'activated' | 'retired' | 'revoked' | 'removed';
  kid: string;
  kind?: RotationKind;
}

export const SYSTEM_ACTOR: Actor = { userId: null, credential: 'system' };

export interface LifecycleDeps {
  db: Db;
  config: Config;
  clock: Clock;
  log: Pick<Logger, 'info' | 'warn' | 'error'>;
  /** Told of what each committed step changed (metrics, local reload). */
  onCommitted?: (events: KeyEvent[]) => void | Promise<void>;
  /**
   * Fault injection for crash tests: awaited at `<step>:commit` (inside the transaction, lock held,
   * changes not yet committed) and `<step>:done` (after the commit) when the step changed something.
   */
  pause?: (point: string) => Promise<void>;
}

/** Operators' view of a key: never any private material. */
export interface SigningKeyView {
  kid: string;
  alg: string;
  state: SigningKeyRow['state'];
  /** In the JWKS now (next, active, retired). */
  published: boolean;
  created_at: string;
  /** When a `next` key may start signing (end of its pre-publication window). */
  activate_after: string | null;
  activated_at: string | null;
  retired_at: string | null;
  revoked_at: string | null;
  /** When the row is removed (retired and revoked keys: every token it signed has expired by then). */
  remove_after: string | null;
}

export interface RotateResult {
  /**
   * `scheduled`: a new `next` key was made and will sign after the pre-publication window;
   * `already_scheduled`: a `next` key existed already (it is returned);
   * `activated`: a new key signs now (immediate); `concurrent`: another rotation won the race (its key is returned).
   */
  outcome: 'scheduled' | 'already_scheduled' | 'activated' | 'concurrent';
  key: SigningKeyView;
  retired_kid: string | null;
  warning?: string;
}

export interface RevokeResult {
  key: SigningKeyView;
  /** The key that signs now, when the revoked key was the active one. */
  replacement: SigningKeyView | null;
}

const iso = (d: Date | null) => (d ? d.toISOString() : null);

export function keyView(row: SigningKeyRow): SigningKeyView {
  return {
    kid: row.kid,
    alg: row.alg,
    state: row.state,
    published: row.state !== 'revoked',
    created_at: row.created_at.toISOString(),
    activate_after: iso(row.activate_after),
    activated_at: iso(row.activated_at),
    retired_at: iso(row.retired_at),
    revoked_at: iso(row.revoked_at),
    remove_after: iso(row.not_after),
  };
}

type Trx = Transaction<Database>;

export class SigningKeyLifecycle {
  constructor(private readonly deps: LifecycleDeps) {}

  private now(): Date {
    return new Date(this.deps.clock.now());
  }

  /** When a key retired or revoked at `at` may be removed: every token it signed has expired. */
  removeAfter(at: Date): Date {
    const { accessTokenTtlSeconds, clockToleranceSeconds, keyCheckIntervalSeconds } = this.deps.config;
    return new Date(at.getTime() + (accessTokenTtlSeconds + clockToleranceSeconds + keyCheckIntervalSeconds) * 1000);
  }

  /** When the active key is due for replacement: a `next` key is made `prepublish` earlier. */
  rotationDueAt(active: SigningKeyRow): Date {
    const since = (active.activated_at ?? active.created_at).getTime();
    return new Date(since + this.deps.config.keyRotationPeriodSeconds * 1000);
  }

  /** One transaction under the lifecycle lock; publishes and audits what `fn` records. */
  private async step<T>(name: string, fn: (trx: Trx, events: KeyEvent[]) => Promise<T>): Promise<{ result: T; events: KeyEvent[] }> {
    const { db, pause } = this.deps;
    const events: KeyEvent[] = [];
    const result = await db.transaction().execute(async (trx) => {
      events.length = 0; // (a retried callback starts over)
      await sql`select pg_advisory_xact_lock(hashtext(${SIGNING_KEYS_LOCK}))`.execute(trx);
      const r = await fn(trx, events);
      if (events.length > 0) {
        await publishChange(trx, { type: SIGNING_KEYS_CHANGED, id: events[0]!.kid, step: name });
        await pause?.(`${name}:commit`);
      }
      return r;
    });
    if (events.length > 0) {
      for (const e of events) this.deps.log.info({ kid: e.kid, kind: e.kind, step: name }, `signing key ${e.event}`);
      await this.deps.onCommitted?.(events);
      await pause?.(`${name}:done`);
    }
    return { result, events };
  }

  private async createKey(trx: Trx, state: 'next' | 'active', activateAfter: Date): Promise<SigningKeyRow> {
    const { config } = this.deps;
    const key = await generateSigningKey(config.signingAlg, config.masterKey);
    const now = this.now();
    return insertSigningKey(trx, { ...key, state, activateAfter, activatedAt: state === 'active' ? now : null });
  }

  /** next -> active (the active one -> retired) when a `next` key is due; returns the new active key. */
  private async promoteDue(trx: Trx, events: KeyEvent[], actor: Actor, kind: RotationKind): Promise<{ active: SigningKeyRow; retired: string | null } | null> {
    const now = this.now();
    const rows = await listSigningKeys(trx, ['next', 'active']);
    const next = rows
      .filter((r) => r.state === 'next' && r.activate_after !== null && r.activate_after.getTime() <= now.getTime())
      .sort((a, b) => a.activate_after!.getTime() - b.activate_after!.getTime())[0];
    if (!next) return null;
    const current = rows.find((r) => r.state === 'active');
    return this.activate(trx, events, actor, kind, next, current ?? null, 'retired');
  }

  /** Makes `next` the active key; the current one becomes `retired` (or is already revoked). */
  private async activate(
    trx: Trx,
    events: KeyEvent[],
    actor: Actor,
    kind: RotationKind,
    next: SigningKeyRow,
    current: SigningKeyRow | null,
    currentTo: 'retired' | null,
  ): Promise<{ active: SigningKeyRow; retired: string | null }> {
    const now = this.now();
    let retired: string | null = null;
    if (current && currentTo === 'retired') {
      // First: the unique index allows one active row at any instant, even inside a transaction.
      await setSigningKeyState(trx, current.kid, 'active', { state: 'retired', retired_at: now, not_after: this.removeAfter(now) });
      events.push({ event: 'retired', kid: current.kid, kind });
      retired = current.kid;
    }
    const active = await setSigningKeyState(trx, next.kid, 'next', { state: 'active', activated_at: now });
    if (!active) throw new Error(`signing key ${next.kid} is no longer next`);
    events.push({ event: 'activated', kid: next.kid, kind });
    await recordAudit(trx, actor, {
      action: 'signing_key.activate',
      targetType: 'signing_key',
      targetId: next.kid,
      details: { kind, alg: next.alg, retired_kid: retired, published_at: next.created_at.toISOString() },
    });
    return { active, retired };
  }

  private async audit(trx: Trx, actor: Actor, action: string, row: SigningKeyRow, details: Record<string, unknown>): Promise<void> {
    await recordAudit(trx, actor, { action, targetType: 'signing_key', targetId: row.kid, details: { alg: row.alg, ...details } });
  }

  /** Makes sure a key signs: promotes a waiting `next` key, or creates an active one. */
  private async ensureActive(trx: Trx, events: KeyEvent[], actor: Actor): Promise<SigningKeyRow> {
    const { row, events: changed } = await ensureActiveKeyIn(trx, { config: this.deps.config, now: this.now(), actor });
    events.push(...changed);
    return row;
  }

  /**
   * The scheduled job (every instance runs it; the lock makes one do each step): promote a `next`
   * key whose pre-publication is over, pre-publish a `next` key when the active one is due, remove
   * keys whose tokens have all expired. Each step its own transaction. Returns what changed.
   */
  async runScheduled(actor: Actor = SYSTEM_ACTOR): Promise<KeyEvent[]> {
    const { config, db } = this.deps;
    // A look without the lock first: most runs have nothing to do.
    const rows = await listAllSigningKeys(db);
    const now = this.now().getTime();
    const active = rows.find((r) => r.state === 'active');
    const next = rows.find((r) => r.state === 'next');
    const prepublishMs = config.keyPrepublishSeconds * 1000;
    const needs = {
      ensure: !active,
      promote: rows.some((r) => r.state === 'next' && r.activate_after !== null && r.activate_after.getTime() <= now),
      prepublish: !next && (!active || this.rotationDueAt(active).getTime() - prepublishMs <= now),
      prune: rows.some((r) => (r.state === 'retired' || r.state === 'revoked') && r.not_after !== null && r.not_after.getTime() <= now),
    };
    const all: KeyEvent[] = [];
    if (needs.ensure) all.push(...(await this.step('ensure', (trx, ev) => this.ensureActive(trx, ev, actor))).events);
    if (needs.promote) all.push(...(await this.step('promote', (trx, ev) => this.promoteDue(trx, ev, actor, 'scheduled'))).events);
    if (needs.prepublish) all.push(...(await this.step('prepublish', (trx, ev) => this.prepublishIfDue(trx, ev, actor))).events);
    if (needs.prune) all.push(...(await this.step('prune', (trx, ev) => this.pruneIn(trx, ev, actor))).events);
    return all;
  }

  private async prepublishIfDue(trx: Trx, events: KeyEvent[], actor: Actor): Promise<SigningKeyRow | null> {
    const rows = await listSigningKeys(trx, ['next', 'active']);
    const active = rows.find((r) => r.state === 'active');
    if (!active || rows.some((r) => r.state === 'next')) return null;
    const now = this.now();
    const prepublishMs = this.deps.config.keyPrepublishSeconds * 1000;
    if (this.rotationDueAt(active).getTime() - prepublishMs > now.getTime()) return null;
    const row = await this.createKey(trx, 'next', new Date(now.getTime() + prepublishMs));
    events.push({ event: 'created', kid: row.kid, kind: 'scheduled' });
    await this.audit(trx, actor, 'signing_key.create', row, { state: 'next', kind: 'scheduled', activate_after: iso(row.activate_after) });
    return row;
  }

  private async pruneIn(trx: Trx, events: KeyEvent[], actor: Actor): Promise<string[]> {
    const removed = await deleteExpiredSigningKeys(trx, this.now());
    for (const r of removed) {
      events.push({ event: 'removed', kid: r.kid });
      await recordAudit(trx, actor, { action: 'signing_key.remove', targetType: 'signing_key', targetId: r.kid, details: { alg: r.alg, state: r.state } });
    }
    return removed.map((r) => r.kid);
  }

  /** Removes retired and revoked keys whose tokens have all expired (what the job does; for operators). */
  async prune(actor: Actor): Promise<string[]> {
    return (await this.step('prune', (trx, ev) => this.pruneIn(trx, ev, actor))).result;
  }

  async list(): Promise<SigningKeyView[]> {
    return (await listAllSigningKeys(this.deps.db)).map(keyView);
  }

  /** When the next key starts signing: a waiting `next` key's activation, else the active key's due date. */
  async nextRotationAt(): Promise<string | null> {
    const rows = await listSigningKeys(this.deps.db, ['next', 'active']);
    const next = rows.find((r) => r.state === 'next');
    if (next?.activate_after) return next.activate_after.toISOString();
    const active = rows.find((r) => r.state === 'active');
    return active ? this.rotationDueAt(active).toISOString() : null;
  }

  /**
   * Operator rotation. Without `immediate`: pre-publishes a `next` key (the job activates it after
   * TESSERA_KEY_PREPUBLISH); a `next` key already waiting is returned instead. With `immediate`: two
   * steps, (1) a `next` key made (or the waiting one brought forward) with `activate_after = now`,
   * (2) promoted. A crash between them leaves a due `next` key that the next job run promotes.
   *
   * Concurrent rotations make one new key: the caller's view of the active kid is taken first, and a
   * rotation that finds, under the lock, that another one already replaced that key does nothing more.
   */
  async rotate(actor: Actor, opts: { immediate?: boolean; ifActiveKid?: string } = {}): Promise<RotateResult> {
    // The key this rotation replaces: the caller's precondition when given (so retries and racing
    // requests rotate once however they are scheduled), else the active key as this call first sees it.
    const observed = opts.ifActiveKid ?? (await findActiveSigningKey(this.deps.db))?.kid ?? null;
    const kind: RotationKind = opts.immediate ? 'immediate' : 'manual';
    const first = await this.step('rotate', async (trx, events) => {
      const active = await findActiveSigningKey(trx);
      if (!active || (observed !== null && active.kid !== observed)) {
        const a = active ?? (await this.ensureActive(trx, events, actor));
        return { done: { outcome: 'concurrent', key: keyView(a), retired_kid: null } as RotateResult };
      }
      const [next] = await listSigningKeys(trx, ['next']);
      const now = this.now();
      if (!opts.immediate) {
        if (next) return { done: { outcome: 'already_scheduled', key: keyView(next), retired_kid: null } as RotateResult };
        const row = await this.createKey(trx, 'next', new Date(now.getTime() + this.deps.config.keyPrepublishSeconds * 1000));
        events.push({ event: 'created', kid: row.kid, kind });
        await this.audit(trx, actor, 'signing_key.create', row, { state: 'next', kind, activate_after: iso(row.activate_after) });
        return { done: { outcome: 'scheduled', key: keyView(row), retired_kid: null } as RotateResult };
      }
      if (next) {
        if (next.activate_after === null || next.activate_after.getTime() > now.getTime()) {
          await setSigningKeyState(trx, next.kid, 'next', { activate_after: now });
          events.push({ event: 'created', kid: next.kid, kind });
        }
        return { done: null, publishedAt: next.created_at };
      }
      const row = await this.createKey(trx, 'next', now);
      events.push({ event: 'created', kid: row.kid, kind });
      await this.audit(trx, actor, 'signing_key.create', row, { state: 'next', kind, activate_after: iso(row.activate_after) });
      return { done: null, publishedAt: row.created_at };
    });
    if (first.result.done) return first.result.done;

    const second = await this.step('promote', async (trx, events) => {
      const active = await findActiveSigningKey(trx);
      if (active && active.kid !== observed) return { outcome: 'concurrent' as const, active, retired: null };
      const r = await this.promoteDue(trx, events, actor, kind);
      if (!r) {
        // Someone revoked the key we made in between: make sure a key signs, and say so.
        const a = await this.ensureActive(trx, events, actor);
        return { outcome: 'concurrent' as const, active: a, retired: null };
      }
      return { outcome: 'activated' as const, active: r.active, retired: r.retired };
    });
    const { outcome, active, retired } = second.result;
    const maxAge = this.deps.config.jwksMaxAgeSeconds;
    return {
      outcome,
      key: keyView(active),
      retired_kid: retired,
      ...(outcome === 'activated' && {
        warning:
          `pre-publication skipped: key ${active.kid} signs now; verifiers holding a JWKS cached before it was published ` +
          `may reject its tokens until their cache expires (up to ${maxAge} s, the JWKS max-age)`,
      }),
    };
  }

  /**
   * Emergency revocation: the key leaves the JWKS and every instance's verifier at once (tokens it
   * signed are rejected). When it was the active key, a waiting `next` key is promoted or a new key
   * made, in the same transaction, so issuance never stops and exactly one key stays active.
   */
  async revoke(actor: Actor, kid: string): Promise<RevokeResult> {
    const { result } = await this.step('revoke', async (trx, events) => {
      const row = await findSigningKey(trx, kid);
      if (!row) throw notFound('signing key');
      if (row.state === 'revoked') throw conflict(`signing key ${kid} is already revoked`);
      const now = this.now();
      const notAfter = row.state === 'retired' && row.not_after ? row.not_after : this.removeAfter(now);
      const revoked = await setSigningKeyState(trx, kid, row.state, { state: 'revoked', revoked_at: now, not_after: notAfter });
      if (!revoked) throw new Error(`signing key ${kid} changed state under the lock`);
      events.push({ event: 'revoked', kid, kind: 'revocation' });
      let replacement: SigningKeyRow | null = null;
      if (row.state === 'active') {
        const [next] = await listSigningKeys(trx, ['next']);
        if (next) {
          replacement = (await this.activate(trx, events, actor, 'revocation', next, null, null)).active;
        } else {
          replacement = await this.createKey(trx, 'active', now);
          events.push({ event: 'created', kid: replacement.kid, kind: 'revocation' }, { event: 'activated', kid: replacement.kid, kind: 'revocation' });
          await this.audit(trx, actor, 'signing_key.create', replacement, { state: 'active', kind: 'revocation' });
        }
      }
      await this.audit(trx, actor, 'signing_key.revoke', row, { previous_state: row.state, replacement_kid: replacement?.kid ?? null });
      return { key: keyView(revoked), replacement: replacement ? keyView(replacement) : null };
    });
    return result;
  }
}
