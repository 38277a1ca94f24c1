import { createHash, type KeyObject } from 'node:crypto';
import { sql } from 'kysely';
import type { CryptoKey, JWK } from 'jose';
import type { Logger } from 'pino';
import type { Clock } from '../platform/clock.js';
import { SIGNING_ALGS, type Config, type SigningAlg } from '../platform/config.js';
import type { Db } from '../platform/database/database.js';
import { publishChange, type ChangeEventType } from '../platform/database/notifications.js';
import { findActiveSigningKey, listSigningKeys, type SigningKeyRow } from './signing-keys.repository.js';
import type { SigningKeyState } from './signing-keys.table.js';
import { importVerifyKey, openPrivateKey, publicMembers } from './signing-key.js';
import { ensureActiveKeyIn } from './bootstrap.js';

/** Change-event type published whenever a signing key is created or changes state. */
export const SIGNING_KEYS_CHANGED = 'signing_keys' satisfies ChangeEventType;

/** Advisory-lock key serialising every change to the set of signing keys (first-key creation, rotation). */
export const SIGNING_KEYS_LOCK = 'tessera:signing_keys';

/** A signing key as held in memory. */
export interface LoadedKey {
  kid: string;
  alg: SigningAlg;
  state: SigningKeyState;
  publicJwk: JWK;
  /** WebCrypto public key for jose's verifier. */
  verifyKey: CryptoKey;
  /** Present for the active key (and `next` keys, ready to take over). */
  privateKey: KeyObject | null;
  /** base64url of the JWS header `{alg, kid, typ: 'at+jwt'}`. */
  accessTokenHeader: string;
}

export interface Jwks {
  body: { keys: JWK[] };
  etag: string;
}

export class NoActiveKeyError extends Error {
  override name = 'NoActiveKeyError';
}

/**
 * The signing keys every instance holds in memory: the one that signs, and every key whose
 * tokens still verify. Reloaded on a `signing_keys` change event and on every listener
 * reconnect; rotation changes rows, publishes `signing_keys`, and this store follows.
 *
 * Verification accepts `next`, `active` and `retired` keys (all ours, all published); `revoked`
 * keys are not loaded, so their tokens fail at the kid look-up.
 */
export class SigningKeyStore {
  private byKid = new Map<string, LoadedKey>();
  private active: LoadedKey | null = null;
  private jwksCache: Jwks = jwksOf([]);
  private loading: Promise<void> | null = null;
  private again = false;
  private reloadError: string | null = null;

  constructor(private readonly deps: { db: Db; config: Config; clock: Clock; log: Pick<Logger, 'info' | 'warn' | 'error'> }) {}

  /**
   * Makes sure one active key exists, creating it if none does. Safe when instances start together:
   * the advisory lock serialises them, and the unique partial index on `state = 'active'` would
   * refuse a second active key anyway. A waiting `next` key is promoted rather than a new one made
   * (the bootstrap in bootstrap.ts, the same the rotation job runs).
   */
  async ensureActiveKey(): Promise<void> {
    const { db, config, clock } = this.deps;
    if (await findActiveSigningKey(db)) return;
    await db.transaction().execute(async (trx) => {
      await sql`select pg_advisory_xact_lock(hashtext(${SIGNING_KEYS_LOCK}))`.execute(trx);
      // The rotation job's own bootstrap (actor `system`, kind `bootstrap`).
      const { row, events } = await ensureActiveKeyIn(trx, { config, now: new Date(clock.now()), actor: { userId: null, credential: 'system' } });
      if (events.length === 0) return;
      await publishChange(trx, { type: SIGNING_KEYS_CHANGED, id: row.kid, state: 'active' });
      this.deps.log.info({ kid: row.kid }, 'activated a signing key');
    });
  }

  /** Reloads every published key from the database (coalesces concurrent calls). */
  async reload(): Promise<void> {
    if (this.loading) {
      this.again = true;
      return this.loading;
    }
    this.loading = (async () => {
      try {
        do {
          this.again = false;
          try {
            await this.loadOnce();
            this.reloadError = null;
          } catch (err) {
            this.reloadError = (err as Error).message;
            throw err;
          }
        } while (this.again);
      } finally {
        this.loading = null;
      }
    })();
    return this.loading;
  }

  private async loadOnce(): Promise<void> {
    const { db, config } = this.deps;
    const rows = await listSigningKeys(db, ['next', 'active', 'retired']);
    const masterKeys = [config.masterKey, ...config.previousMasterKeys];
    const byKid = new Map<string, LoadedKey>();
    let active: LoadedKey | null = null;
    for (const row of rows) {
      const loaded = await this.loadRow(row, masterKeys);
      if (!loaded) continue;
      byKid.set(loaded.kid, loaded);
      if (loaded.state === 'active') active = loaded;
    }
    this.byKid = byKid;
    this.active = active;
    this.jwksCache = jwksOf([...byKid.values()]);
  }

  private async loadRow(row: SigningKeyRow, masterKeys: Parameters<typeof openPrivateKey>[0]): Promise<LoadedKey | null> {
    if (!(SIGNING_ALGS as readonly string[]).includes(row.alg)) {
      this.deps.log.warn({ kid: row.kid, alg: row.alg }, 'ignoring a signing key with an unknown algorithm');
      return null;
    }
    const alg = row.alg as SigningAlg;
    const publicJwk = { ...publicMembers(row.public_jwk), kid: row.kid, alg, use: 'sig' } as JWK;
    const previous = this.byKid.get(row.kid);
    let privateKey: KeyObject | null = null;
    if (row.state === 'active' || row.state === 'next') {
      privateKey = previous?.privateKey ?? null;
      if (!privateKey) {
        try {
          privateKey = openPrivateKey(masterKeys, row);
        } catch (err) {
          this.deps.log.error({ kid: row.kid, err: { message: (err as Error).message } }, 'cannot open a signing key');
          if (row.state === 'active') throw err;
        }
      }
    }
    return {
      kid: row.kid,
      alg,
      state: row.state,
      publicJwk,
      verifyKey: previous?.verifyKey ?? (await importVerifyKey(publicJwk, alg)),
      privateKey,
      accessTokenHeader: previous?.accessTokenHeader ?? Buffer.from(JSON.stringify({ alg, kid: row.kid, typ: 'at+jwt' })).toString('base64url'),
    };
  }

  /** The key that signs now. */
  signingKey(): LoadedKey & { privateKey: KeyObject } {
    const k = this.active;
    if (!k || !k.privateKey) throw new NoActiveKeyError('no active signing key is loaded');
    return k as LoadedKey & { privateKey: KeyObject };
  }

  /** A key whose signatures verify: ours and not revoked. Never fetches anything. */
  verificationKey(kid: string): LoadedKey | undefined {
    return this.byKid.get(kid);
  }

  /** Algorithms of the keys held (the verifier's allowlist is narrower still: the kid's own alg). */
  algorithms(): SigningAlg[] {
    return [...new Set([...this.byKid.values()].map((k) => k.alg))];
  }

  /** Why the last reload failed (the keys held before it stay in use), or null. */
  lastReloadError(): string | null {
    return this.reloadError;
  }

  /** Every key held (next, active, retired). */
  loaded(): LoadedKey[] {
    return [...this.byKid.values()];
  }

  hasActiveKey(): boolean {
    return this.active?.privateKey != null;
  }

  /** Published keys (public members only) with a strong ETag over the body. */
  jwks(): Jwks {
    return this.jwksCache;
  }
}

function jwksOf(keys: LoadedKey[]): Jwks {
  const body = { keys: keys.map((k) => k.publicJwk) };
  const etag = `"${createHash('sha256').update(JSON.stringify(body)).digest('base64url').slice(0, 27)}"`;
  return { body, etag };
}
