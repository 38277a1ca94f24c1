import t from 'tap';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { ConfigError, loadConfig } from '../src/platform/config.js';

const key = () => randomBytes(32).toString('base64');
const base = () => ({ DATABASE_URL: 'postgres://u:p@db:5432/tessera', TESSERA_MASTER_KEY: key(), TESSERA_PEPPER: key() });

t.test('defaults are sensible and the result is frozen', async (t) => {
  const { config } = loadConfig(base());
  t.equal(config.port, 8080);
  t.equal(config.accessTokenTtlSeconds, 3600);
  t.equal(config.signingAlg, 'EdDSA');
  t.equal(config.keyRotationPeriodSeconds, 30 * 86400);
  t.ok(config.keyPrepublishSeconds > config.jwksMaxAgeSeconds);
  t.equal(config.issuer, 'http://localhost:8080');
  t.ok(Object.isFrozen(config));
  t.equal(config.masterKey.key.length, 32);
  t.match(config.masterKey.id, /^[0-9a-f]{16}$/);
  t.same(config.proofOfPossession, {
    dpopNonce: false,
    dpopAlgorithms: ['ES256', 'ES384', 'EdDSA', 'Ed25519', 'PS256', 'RS256'],
    dpopProofMaxAgeSeconds: 60,
    clientAssertionAlgorithms: ['ES256', 'ES384', 'EdDSA', 'Ed25519', 'PS256', 'RS256'],
    clientAssertionMaxLifetimeSeconds: 300,
  });
});

t.test('each bad value fails loudly, naming the variable', async (t) => {
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ PORT: 'eighty' }, /PORT must be a whole number/],
    [{ TESSERA_DPOP_NONCE: 'maybe' }, /TESSERA_DPOP_NONCE must be on or off/],
    [{ TESSERA_DPOP_ALGS: 'ES256,HS256' }, /TESSERA_DPOP_ALGS must list algorithms among/],
    [{ TESSERA_CLIENT_ASSERTION_ALGS: 'none' }, /TESSERA_CLIENT_ASSERTION_ALGS must list algorithms among/],
    [{ TESSERA_CLIENT_ASSERTION_MAX_LIFETIME: '2h' }, /TESSERA_CLIENT_ASSERTION_MAX_LIFETIME must be at most 1h/],
    [{ TESSERA_DPOP_PROOF_MAX_AGE: 'soon' }, /TESSERA_DPOP_PROOF_MAX_AGE must be a duration/],
    [{ PORT: '70000' }, /PORT must be between/],
    [{ DATABASE_URL: 'mysql://x' }, /DATABASE_URL must start with postgres/],
    [{ TESSERA_MASTER_KEY: 'c2hvcnQ=' }, /TESSERA_MASTER_KEY must be 32 bytes/],
    [{ TESSERA_PEPPER: 'short' }, /TESSERA_PEPPER must be at least 32/],
    [{ TESSERA_ISSUER: 'ftp://x' }, /TESSERA_ISSUER must be an http\(s\) URL/],
    [{ TESSERA_ISSUER: 'https://x/?q=1' }, /TESSERA_ISSUER/],
    [{ TESSERA_SIGNING_ALG: 'HS256' }, /TESSERA_SIGNING_ALG must be one of EdDSA, ES256, RS256/],
    [{ TESSERA_ACCESS_TOKEN_TTL: 'forever' }, /TESSERA_ACCESS_TOKEN_TTL must be a duration/],
    [{ TESSERA_KEY_PREPUBLISH: '60', TESSERA_JWKS_MAX_AGE: '300' }, /TESSERA_KEY_PREPUBLISH .* must be longer than TESSERA_JWKS_MAX_AGE/],
    [{ TESSERA_KEY_ROTATION_PERIOD: '1h', TESSERA_KEY_PREPUBLISH: '1h' }, /TESSERA_KEY_ROTATION_PERIOD .* must be longer than TESSERA_KEY_PREPUBLISH/],
    [{ TESSERA_KEY_CHECK_INTERVAL: '2h' }, /TESSERA_KEY_CHECK_INTERVAL must be at most 1h/],
    [{ TESSERA_LOG_LEVEL: 'loud' }, /TESSERA_LOG_LEVEL must be one of/],
    [{ TESSERA_RATE_LIMIT: 'maybe' }, /TESSERA_RATE_LIMIT must be true or false/],
    [{ TESSERA_AUDIENCES: 'https://a.example,,https://b.example' }, /TESSERA_AUDIENCES must be "\*" or a comma-separated list/],
    [{ TESSERA_AUDIENCES: '*,https://a.example' }, /TESSERA_AUDIENCES/],
    [{ TESSERA_AUDIENCES: 'https://a.example/x y' }, /TESSERA_AUDIENCES/],
    [{ TESSERA_METRICS_TOKEN: 'too-short' }, /TESSERA_METRICS_TOKEN must be at least 32/],
    [{ TESSERA_METRICS_TOKEN: 'a'.repeat(20) + ' ' + 'b'.repeat(20) }, /TESSERA_METRICS_TOKEN .* without spaces/],
  ];
  for (const [env, msg] of cases) {
    t.throws(() => loadConfig({ ...base(), ...env }), msg, JSON.stringify(env));
    try {
      loadConfig({ ...base(), ...env });
    } catch (err) {
      t.type(err, ConfigError);
    }
  }
  const noKey: Record<string, string> = { ...base() };
  delete noKey.TESSERA_MASTER_KEY;
  t.throws(() => loadConfig(noKey), /TESSERA_MASTER_KEY is required when DATABASE_URL is set/);
});

t.test('durations take units; trust proxy takes a bool, hops or a list', async (t) => {
  const { config } = loadConfig({
    ...base(),
    TESSERA_ACCESS_TOKEN_TTL: '15m',
    TESSERA_KEY_ROTATION_PERIOD: '7d',
    TESSERA_TRUST_PROXY: '10.0.0.0/8, 127.0.0.1',
  });
  t.equal(config.accessTokenTtlSeconds, 900);
  t.equal(config.keyRotationPeriodSeconds, 7 * 86400);
  t.same(config.trustProxy, ['10.0.0.0/8', '127.0.0.1']);
  t.equal(loadConfig({ ...base(), TESSERA_TRUST_PROXY: '2' }).config.trustProxy, 2);
  t.equal(loadConfig({ ...base() }).config.trustProxy, false);
  t.equal(loadConfig({ ...base(), TESSERA_ISSUER: 'https://auth.example.com/' }).config.issuer, 'https://auth.example.com');
});

t.test('without DATABASE_URL, secrets are generated once in the data folder (0600) and reused', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'tessera-cfg-'));
  const first = loadConfig({ TESSERA_DATA_DIR: dir });
  t.equal(first.warnings.length, 1);
  t.match(first.warnings[0], /generated a master key and pepper/);
  const file = path.join(dir, 'secrets.json');
  t.equal(statSync(file).mode & 0o777, 0o600);
  const second = loadConfig({ TESSERA_DATA_DIR: dir });
  t.same(second.warnings, []);
  t.equal(second.config.masterKey.id, first.config.masterKey.id);
  t.same(second.config.pepper, first.config.pepper);
  t.equal(second.config.databaseUrl, null);
  t.notMatch(readFileSync(file, 'utf8'), /^\s*$/);
  // Explicit keys win over the generated ones.
  const explicit = key();
  t.not(loadConfig({ TESSERA_DATA_DIR: dir, TESSERA_MASTER_KEY: explicit }).config.masterKey.id, first.config.masterKey.id);
});
