import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync, chmodSync } from 'node:fs';
import path from 'node:path';
import { providersFromEnv, type ProviderSpec } from './provider-catalog.js';

/** Signing algorithms Tessera can issue JWTs with. */
export const SIGNING_ALGS = ['EdDSA', 'ES256', 'RS256'] as const;
export type SigningAlg = (typeof SIGNING_ALGS)[number];

/** Asymmetric JWS algorithms a DPoP proof or a client assertion may use (never `none`, never HMAC). */
export const PROOF_ALGS = ['ES256', 'ES384', 'EdDSA', 'Ed25519', 'PS256', 'RS256'] as const;

export interface MasterKey {
  /** Short stable id of the key (first 16 hex chars of SHA-256 of the key), recorded beside every ciphertext. */
  readonly id: string;
  readonly key: Buffer;
}

export interface Config {
  readonly port: number;
  readonly host: string;
  readonly logLevel: string;
  /** Public base URL of this service; the `iss` of every token. No trailing slash. */
  readonly issuer: string;
  /** `null` -> embedded Postgres under `dataDir/pg`. */
  readonly databaseUrl: string | null;
  readonly dataDir: string;
  /** TESSERA_DATA_DIR was set (the embedded cluster then stays in it, or start fails). */
  readonly dataDirFromEnv: boolean;
  readonly embeddedPgPort: number;
  readonly dbPoolMax: number;
  /** How long a request waits for a pool connection before failing with 503. */
  readonly dbConnectTimeoutMs: number;
  /**
   * Longest a request's statement may run or wait for a lock, and a transaction sit idle, on the
   * server's request pool (0: unbounded). Migrations and the signing-key job are not bound by it.
   */
  readonly dbStatementTimeoutMs: number;
  /** Key that encrypts secrets at rest (AES-256-GCM); `previousMasterKeys` still decrypt during a rewrap. */
  readonly masterKey: MasterKey;
  readonly previousMasterKeys: readonly MasterKey[];
  /** HMAC-SHA256 key for every stored secret hash. */
  readonly pepper: Buffer;
  /**
   * Most SDK keys (and unknown client_ids) each instance holds in memory (TESSERA_CLIENT_CACHE_MAX);
   * past it the least recently used entry is dropped and read from Postgres again when next asked for.
   */
  readonly clientCacheMaxEntries: number;
  readonly accessTokenTtlSeconds: number;
  readonly sessionTtlSeconds: number;
  readonly sessionSliding: boolean;
  readonly signingAlg: SigningAlg;
  readonly keyRotationPeriodSeconds: number;
  readonly keyPrepublishSeconds: number;
  readonly jwksMaxAgeSeconds: number;
  /** How often each instance runs the signing-key job (rotation steps under a lock) and reloads its keys. */
  readonly keyCheckIntervalSeconds: number;
  /** Clock tolerance when verifying tokens (seconds). */
  readonly clockToleranceSeconds: number;
  /** `true`, a hop count, or a list of trusted proxy addresses/CIDRs; `false` ignores X-Forwarded-*. */
  readonly trustProxy: boolean | number | string[];
  readonly rateLimit: {
    readonly enabled: boolean;
    /** Token requests a minute per client id. */
    readonly tokenPerClient: number;
    /** Requests a minute per IP on the token endpoint. */
    readonly tokenPerIp: number;
    /** Failed client authentications a minute per IP. */
    readonly failedAuthPerIp: number;
    /** Requests a minute per IP on everything else (404s included). */
    readonly defaultPerIp: number;
  };
  /**
   * Redis or Valkey holding every rate-limit counter, shared by all instances (TESSERA_REDIS_URL,
   * `redis://` or `rediss://`); null: each instance counts in its own memory.
   */
  readonly redisUrl: string | null;
  /** Run migrations when the server starts. */
  readonly migrateOnStart: boolean;
  /** Audiences clients may request besides the issuer (TESSERA_AUDIENCES); null: any. */
  readonly allowedAudiences: ReadonlySet<string> | null;
  /** SHA-256 of the bearer token `GET /metrics` requires (TESSERA_METRICS_TOKEN); null: /metrics is open. */
  readonly metricsTokenDigest: Buffer | null;
  /** Quantum providers whose credentials may be stored (TESSERA_PROVIDERS / TESSERA_PROVIDERS_FILE). */
  readonly providers: readonly ProviderSpec[];
  /** DPoP (RFC 9449) proofs and private_key_jwt client assertions (RFC 7523). */
  readonly proofOfPossession: {
    /** Require a server nonce in DPoP proofs (TESSERA_DPOP_NONCE=on); off by default. */
    readonly dpopNonce: boolean;
    /** Algorithms a DPoP proof may be signed with (TESSERA_DPOP_ALGS). */
    readonly dpopAlgorithms: readonly string[];
    /** A proof's `iat` may be this old, or this far ahead (with `clockToleranceSeconds`) (TESSERA_DPOP_PROOF_MAX_AGE). */
    readonly dpopProofMaxAgeSeconds: number;
    /** Algorithms a client assertion may be signed with, and a private_key_jwt key registered for (TESSERA_CLIENT_ASSERTION_ALGS). */
    readonly clientAssertionAlgorithms: readonly string[];
    /** Longest `exp` - now (and `exp` - `iat`) a client assertion may carry (TESSERA_CLIENT_ASSERTION_MAX_LIFETIME). */
    readonly clientAssertionMaxLifetimeSeconds: number;
  };
  /** The browser console and sign-in for people. */
  readonly console: {
    /** A console session ends after this long without a request (TESSERA_CONSOLE_SESSION_IDLE). */
    readonly sessionIdleSeconds: number;
    /** ... and this long after sign-in, whatever happens (TESSERA_CONSOLE_SESSION_MAX). */
    readonly sessionMaxSeconds: number;
    /** Lifetime of a user invitation link (TESSERA_CONSOLE_INVITATION_TTL). */
    readonly invitationTtlSeconds: number;
    /** Failed sign-ins per account in 15 minutes before that account's password sign-in pauses. */
    readonly failedSignInsPerAccount: number;
    /** Failed sign-ins per client IP in 15 minutes before sign-in from it pauses. */
    readonly failedSignInsPerIp: number;
  };
  /** Security events for verifiers (`/events/stream`, `/events/poll`). */
  readonly securityEvents: {
    /** How long events are kept (TESSERA_SECURITY_EVENTS_RETENTION): at least the longest token lifetime. */
    readonly retentionSeconds: number;
    /** Seconds between heartbeat comments on an idle stream (TESSERA_SECURITY_EVENTS_HEARTBEAT). */
    readonly heartbeatSeconds: number;
  };
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** TESSERA_AUDIENCES: unset or empty -> none besides the issuer; `*` -> any; else a comma-separated list. */
function parseAudiences(raw: string | undefined): ReadonlySet<string> | null {
  const v = raw?.trim() ?? '';
  if (v === '*') return null;
  const list = v === '' ? [] : v.split(',').map((a) => a.trim());
  for (const a of list) {
    if (a === '' || a === '*' || a.length > 2048 || /\s/.test(a)) {
      throw new ConfigError(`TESSERA_AUDIENCES must be "*" or a comma-separated list of audiences (URIs without spaces), got "${raw}"`);
    }
  }
  return Object.freeze(new Set(list));
}

/** TESSERA_REDIS_URL: unset or empty -> null; else a redis:// or rediss:// URL. */
function parseRedisUrl(raw: string | undefined): string | null {
  const v = raw?.trim() ?? '';
  if (v === '') return null;
  let url: URL;
  try {
    url = new URL(v);
  } catch {
    throw new ConfigError('TESSERA_REDIS_URL must be a redis:// or rediss:// URL (e.g. redis://valkey:6379/0)');
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new ConfigError(`TESSERA_REDIS_URL must be a redis:// or rediss:// URL, got the scheme ${url.protocol}`);
  }
  return v;
}

/** A comma-separated subset of {@link PROOF_ALGS}; default: all of them. */
function proofAlgs(env: Env, name: string): readonly string[] {
  const raw = env[name]?.trim() ?? '';
  if (raw === '') return Object.freeze([...PROOF_ALGS]);
  const list = [...new Set(raw.split(',').map((a) => a.trim()))];
  for (const a of list) {
    if (!(PROOF_ALGS as readonly string[]).includes(a)) throw new ConfigError(`${name} must list algorithms among ${PROOF_ALGS.join(', ')}, got "${a}"`);
  }
  return Object.freeze(list);
}

/** TESSERA_DPOP_NONCE: on or off (default off). */
function onOff(env: Env, name: string, def: boolean): boolean {
  const raw = env[name]?.trim().toLowerCase();
  if (raw === undefined || raw === '') return def;
  if (raw === 'on') return true;
  if (raw === 'off') return false;
  throw new ConfigError(`${name} must be on or off, got "${env[name]}"`);
}

function proofOfPossessionSettings(env: Env): Config['proofOfPossession'] {
  const dpopProofMaxAgeSeconds = duration(env, 'TESSERA_DPOP_PROOF_MAX_AGE', 60);
  const clientAssertionMaxLifetimeSeconds = duration(env, 'TESSERA_CLIENT_ASSERTION_MAX_LIFETIME', 300);
  if (dpopProofMaxAgeSeconds > 3600) throw new ConfigError('TESSERA_DPOP_PROOF_MAX_AGE must be at most 1h');
  if (clientAssertionMaxLifetimeSeconds > 3600) throw new ConfigError('TESSERA_CLIENT_ASSERTION_MAX_LIFETIME must be at most 1h');
  return Object.freeze({
    dpopNonce: onOff(env, 'TESSERA_DPOP_NONCE', false),
    dpopAlgorithms: proofAlgs(env, 'TESSERA_DPOP_ALGS'),
    dpopProofMaxAgeSeconds,
    clientAssertionAlgorithms: proofAlgs(env, 'TESSERA_CLIENT_ASSERTION_ALGS'),
    clientAssertionMaxLifetimeSeconds,
  });
}

function consoleSettings(env: Env): Config['console'] {
  const sessionIdleSeconds = duration(env, 'TESSERA_CONSOLE_SESSION_IDLE', 30 * 60);
  const sessionMaxSeconds = duration(env, 'TESSERA_CONSOLE_SESSION_MAX', 12 * 3600);
  if (sessionIdleSeconds > sessionMaxSeconds) {
    throw new ConfigError(`TESSERA_CONSOLE_SESSION_IDLE (${sessionIdleSeconds}s) must not be longer than TESSERA_CONSOLE_SESSION_MAX (${sessionMaxSeconds}s)`);
  }
  return Object.freeze({
    sessionIdleSeconds,
    sessionMaxSeconds,
    invitationTtlSeconds: duration(env, 'TESSERA_CONSOLE_INVITATION_TTL', 72 * 3600),
    failedSignInsPerAccount: int(env, 'TESSERA_CONSOLE_FAILED_SIGNINS_PER_ACCOUNT', 10, 1, 10_000),
    failedSignInsPerIp: int(env, 'TESSERA_CONSOLE_FAILED_SIGNINS_PER_IP', 100, 1, 100_000),
  });
}

export interface LoadedConfig {
  config: Config;
  /** Things an operator should know (generated secrets, ...), logged at start. */
  warnings: string[];
}

type Env = Record<string, string | undefined>;

function int(env: Env, name: string, def: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return def;
  if (!/^\d+$/.test(raw.trim())) throw new ConfigError(`${name} must be a whole number, got "${raw}"`);
  const n = Number(raw.trim());
  if (n < min || n > max) throw new ConfigError(`${name} must be between ${min} and ${max}, got ${n}`);
  return n;
}

/** Durations: plain seconds, or a number with s, m, h or d ("30d"). */
function duration(env: Env, name: string, def: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return def;
  const m = /^(\d+)\s*([smhd]?)$/.exec(raw.trim());
  if (!m) throw new ConfigError(`${name} must be a duration such as 3600, 90s, 15m, 1h or 30d, got "${raw}"`);
  const unit = { '': 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2] as '' | 's' | 'm' | 'h' | 'd'];
  const n = Number(m[1]) * unit;
  if (n <= 0) throw new ConfigError(`${name} must be positive`);
  return n;
}

/** Retention defaults to the longest token lifetime plus a minute; shorter is refused (a verifier could miss a revocation). */
function securityEventSettings(env: Env, longestTokenSeconds: number): Config['securityEvents'] {
  const retentionSeconds = duration(env, 'TESSERA_SECURITY_EVENTS_RETENTION', longestTokenSeconds);
  if (retentionSeconds < longestTokenSeconds - 60) {
    throw new ConfigError(`TESSERA_SECURITY_EVENTS_RETENTION (${retentionSeconds}s) must cover the longest token lifetime (${longestTokenSeconds - 60}s)`);
  }
  const heartbeatSeconds = duration(env, 'TESSERA_SECURITY_EVENTS_HEARTBEAT', 15);
  if (heartbeatSeconds > 300) throw new ConfigError('TESSERA_SECURITY_EVENTS_HEARTBEAT must be at most 300s');
  return { retentionSeconds, heartbeatSeconds };
}

/** TESSERA_DB_STATEMENT_TIMEOUT_MS: 0 (off), or 100 ms to 10 minutes; default 5 s. */
function dbStatementTimeout(env: Env): number {
  const ms = int(env, 'TESSERA_DB_STATEMENT_TIMEOUT_MS', 5000, 0, 600_000);
  if (ms !== 0 && ms < 100) throw new ConfigError(`TESSERA_DB_STATEMENT_TIMEOUT_MS must be 0 (no limit) or at least 100, got ${ms}`);
  return ms;
}

function bool(env: Env, name: string, def: boolean): boolean {
  const raw = env[name]?.trim().toLowerCase();
  if (raw === undefined || raw === '') return def;
  if (['1', 'true', 'yes', 'on'].includes(raw)) return true;
  if (['0', 'false', 'no', 'off'].includes(raw)) return false;
  throw new ConfigError(`${name} must be true or false, got "${env[name]}"`);
}

export function masterKeyFrom(b64: string, name: string): MasterKey {
  const key = Buffer.from(b64.trim(), 'base64');
  if (key.length !== 32 || key.toString('base64') !== b64.trim()) {
    throw new ConfigError(`${name} must be 32 bytes in standard base64 (generate one with: openssl rand -base64 32)`);
  }
  return { id: createHash('sha256').update(key).digest('hex').slice(0, 16), key };
}

function parseTrustProxy(raw: string | undefined): boolean | number | string[] {
  if (raw === undefined || raw.trim() === '' || raw.trim() === 'false') return false;
  if (raw.trim() === 'true') return true;
  if (/^\d+$/.test(raw.trim())) return Number(raw.trim());
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

interface LocalSecrets {
  masterKey: string;
  pepper: string;
  pgPassword: string;
}

/** Secrets kept in the data folder for the embedded set-up, made on first run. */
export function localSecrets(dataDir: string): { secrets: LocalSecrets; created: boolean } {
  const file = path.join(dataDir, 'secrets.json');
  if (existsSync(file)) {
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as Partial<LocalSecrets>;
    if (!parsed.masterKey || !parsed.pepper || !parsed.pgPassword) {
      throw new ConfigError(`${file} is incomplete; restore it from backup (it holds the master key)`);
    }
    return { secrets: parsed as LocalSecrets, created: false };
  }
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const secrets: LocalSecrets = {
    masterKey: randomBytes(32).toString('base64'),
    pepper: randomBytes(32).toString('base64'),
    pgPassword: randomBytes(24).toString('base64url'),
  };
  writeFileSync(file, JSON.stringify(secrets, null, 2) + '\n', { mode: 0o600 });
  chmodSync(file, 0o600);
  return { secrets, created: true };
}

/**
 * Reads and validates configuration from the environment. Throws ConfigError with a message
 * naming the variable at fault. Without DATABASE_URL the embedded set-up is used, and missing
 * secrets are generated once and kept in the data folder.
 */
export function loadConfig(env: Env = process.env): LoadedConfig {
  const warnings: string[] = [];
  const port = int(env, 'PORT', int(env, 'TESSERA_PORT', 8080, 0, 65535), 0, 65535);
  const host = env.TESSERA_HOST?.trim() || env.HOST?.trim() || '0.0.0.0';
  const dataDir = path.resolve(env.TESSERA_DATA_DIR?.trim() || '.tessera');
  const databaseUrl = env.DATABASE_URL?.trim() || null;
  if (databaseUrl && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    throw new ConfigError('DATABASE_URL must start with postgres:// or postgresql://');
  }
  let masterKeyB64 = env.TESSERA_MASTER_KEY?.trim();
  let pepperRaw = env.TESSERA_PEPPER?.trim();
  if (!databaseUrl && (!masterKeyB64 || !pepperRaw)) {
    const { secrets, created } = localSecrets(dataDir);
    if (created) {
      warnings.push(
        `generated a master key and pepper in ${path.join(dataDir, 'secrets.json')}: back this file up with the database; ` +
          'set TESSERA_MASTER_KEY and TESSERA_PEPPER in production',
      );
    }
    masterKeyB64 ??= secrets.masterKey;
    pepperRaw ??= secrets.pepper;
  }
  if (!masterKeyB64) throw new ConfigError('TESSERA_MASTER_KEY is required when DATABASE_URL is set (openssl rand -base64 32)');
  if (!pepperRaw) throw new ConfigError('TESSERA_PEPPER is required when DATABASE_URL is set (openssl rand -base64 32)');
  const masterKey = masterKeyFrom(masterKeyB64, 'TESSERA_MASTER_KEY');
  const previousMasterKeys = (env.TESSERA_PREVIOUS_MASTER_KEYS ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((k, i) => masterKeyFrom(k, `TESSERA_PREVIOUS_MASTER_KEYS[${i}]`));
  const pepper = Buffer.from(pepperRaw, 'utf8');
  if (pepper.length < 32) throw new ConfigError('TESSERA_PEPPER must be at least 32 characters');

  const issuerRaw = env.TESSERA_ISSUER?.trim() || `http://localhost:${port}`;
  let issuer: string;
  try {
    const u = new URL(issuerRaw);
    if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new Error('scheme');
    if (u.search || u.hash) throw new Error('query');
    issuer = u.href.replace(/\/+$/, '');
  } catch {
    throw new ConfigError(`TESSERA_ISSUER must be an http(s) URL without query or fragment, got "${issuerRaw}"`);
  }
  if (issuer.startsWith('http:') && !/^http:\/\/(localhost|127\.0\.0\.1|\[::1\])(:|\/|$)/.test(issuer)) {
    warnings.push(`TESSERA_ISSUER ${issuer} is not https: tokens and secrets would cross the network in clear`);
  }

  const signingAlg = (env.TESSERA_SIGNING_ALG?.trim() || 'EdDSA') as SigningAlg;
  if (!SIGNING_ALGS.includes(signingAlg)) {
    throw new ConfigError(`TESSERA_SIGNING_ALG must be one of ${SIGNING_ALGS.join(', ')}, got "${env.TESSERA_SIGNING_ALG}"`);
  }
  const accessTokenTtlSeconds = duration(env, 'TESSERA_ACCESS_TOKEN_TTL', 3600);
  const jwksMaxAgeSeconds = duration(env, 'TESSERA_JWKS_MAX_AGE', 300);
  const keyPrepublishSeconds = duration(env, 'TESSERA_KEY_PREPUBLISH', 3600);
  if (keyPrepublishSeconds <= jwksMaxAgeSeconds) {
    throw new ConfigError(
      `TESSERA_KEY_PREPUBLISH (${keyPrepublishSeconds}s) must be longer than TESSERA_JWKS_MAX_AGE (${jwksMaxAgeSeconds}s), ` +
        'or verifiers with a cached JWKS would meet tokens signed by a key they have not seen',
    );
  }
  const keyRotationPeriodSeconds = duration(env, 'TESSERA_KEY_ROTATION_PERIOD', 30 * 86400);
  if (keyRotationPeriodSeconds <= keyPrepublishSeconds) {
    throw new ConfigError(`TESSERA_KEY_ROTATION_PERIOD (${keyRotationPeriodSeconds}s) must be longer than TESSERA_KEY_PREPUBLISH (${keyPrepublishSeconds}s)`);
  }
  const keyCheckIntervalSeconds = duration(env, 'TESSERA_KEY_CHECK_INTERVAL', 30);
  if (keyCheckIntervalSeconds > 3600) throw new ConfigError('TESSERA_KEY_CHECK_INTERVAL must be at most 1h');
  const levels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
  const logLevel = env.TESSERA_LOG_LEVEL?.trim() || env.LOG_LEVEL?.trim() || 'info';
  if (!levels.includes(logLevel)) throw new ConfigError(`TESSERA_LOG_LEVEL must be one of ${levels.join(', ')}`);

  const allowedAudiences = parseAudiences(env.TESSERA_AUDIENCES);
  const metricsToken = env.TESSERA_METRICS_TOKEN?.trim() || null;
  if (metricsToken !== null && (metricsToken.length < 32 || !/^[\x21-\x7e]+$/.test(metricsToken))) {
    throw new ConfigError('TESSERA_METRICS_TOKEN must be at least 32 printable characters without spaces (openssl rand -base64 32)');
  }

  const sessionTtl = duration(env, 'TESSERA_SESSION_TTL', 3600);
  let providers: ProviderSpec[];
  try {
    providers = providersFromEnv(env);
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }

  const config: Config = {
    port,
    host,
    logLevel,
    issuer,
    databaseUrl,
    dataDir,
    dataDirFromEnv: Boolean(env.TESSERA_DATA_DIR?.trim()),
    embeddedPgPort: int(env, 'TESSERA_EMBEDDED_PG_PORT', 54329, 1, 65535),
    dbPoolMax: int(env, 'TESSERA_DB_POOL_MAX', 20, 1, 1000),
    dbConnectTimeoutMs: int(env, 'TESSERA_DB_CONNECT_TIMEOUT_MS', 2000, 1, 60000),
    dbStatementTimeoutMs: dbStatementTimeout(env),
    masterKey,
    previousMasterKeys,
    pepper,
    clientCacheMaxEntries: int(env, 'TESSERA_CLIENT_CACHE_MAX', 150_000, 1, 100_000_000),
    accessTokenTtlSeconds,
    sessionTtlSeconds: sessionTtl,
    sessionSliding: bool(env, 'TESSERA_SESSION_SLIDING', false),
    signingAlg,
    keyRotationPeriodSeconds,
    keyPrepublishSeconds,
    jwksMaxAgeSeconds,
    keyCheckIntervalSeconds,
    clockToleranceSeconds: duration(env, 'TESSERA_CLOCK_TOLERANCE', 30),
    trustProxy: parseTrustProxy(env.TESSERA_TRUST_PROXY),
    rateLimit: {
      enabled: bool(env, 'TESSERA_RATE_LIMIT', true),
      tokenPerClient: int(env, 'TESSERA_RATE_LIMIT_TOKEN_PER_CLIENT', 600, 1),
      tokenPerIp: int(env, 'TESSERA_RATE_LIMIT_TOKEN_PER_IP', 6000, 1),
      failedAuthPerIp: int(env, 'TESSERA_RATE_LIMIT_FAILED_AUTH_PER_IP', 30, 1),
      defaultPerIp: int(env, 'TESSERA_RATE_LIMIT_PER_IP', 6000, 1),
    },
    redisUrl: parseRedisUrl(env.TESSERA_REDIS_URL),
    migrateOnStart: bool(env, 'TESSERA_MIGRATE_ON_START', true),
    allowedAudiences,
    metricsTokenDigest: metricsToken === null ? null : createHash('sha256').update(metricsToken).digest(),
    providers: Object.freeze(providers),
    proofOfPossession: proofOfPossessionSettings(env),
    console: consoleSettings(env),
    securityEvents: securityEventSettings(env, Math.max(accessTokenTtlSeconds, sessionTtl) + 60),
  };
  return { config: Object.freeze(config), warnings };
}
