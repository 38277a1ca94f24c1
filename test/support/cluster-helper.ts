// Several real Tessera processes on one Postgres, Debian's redis-server and Debian's nginx as the
// balancer (deploy/nginx/tessera-lb.conf, the file docker-compose.replicas.yml mounts).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TeardownHost } from './helper.js';
import { freePort } from './helper.js';

export const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');
export const LB_CONF = path.join(root, 'deploy', 'nginx', 'tessera-lb.conf');
/** What each replica of docker-compose.replicas.yml runs (relative to the image's /app), and the test with it. */
export const REPLICA_COMMAND = ['node', 'dist/src/cli.js', 'serve'] as const;

/** The path of `name` on PATH (or in /usr/sbin, /sbin) when it runs with `versionArg`. */
export function binary(name: string, versionArg: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin', '/usr/bin'])) {
    const p = path.join(dir, name);
    if (spawnSync(p, [versionArg], { stdio: 'ignore' }).status === 0) return p;
  }
  return null;
}

/**
 * The environment of one replica: what docker-compose.replicas.yml gives each Tessera service
 * (test/compose.test.ts compares the names), with this machine's addresses. PORT and TESSERA_HOST
 * are the image's own (Dockerfile ENV) in compose.
 */
export function replicaEnv(opts: { databaseUrl: string; redisUrl: string; issuer: string; masterKey: string; pepper: string }): Record<string, string> {
  return {
    DATABASE_URL: opts.databaseUrl,
    TESSERA_REDIS_URL: opts.redisUrl,
    TESSERA_MASTER_KEY: opts.masterKey,
    TESSERA_PEPPER: opts.pepper,
    TESSERA_ISSUER: opts.issuer,
    TESSERA_TRUST_PROXY: '127.0.0.1',
    TESSERA_MIGRATE_ON_START: 'true',
    TESSERA_LOG_LEVEL: 'warn',
    TESSERA_METRICS_TOKEN: '',
  };
}

export async function waitForPort(port: number, alive: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (!alive()) throw new Error(`${what} exited`);
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect(port, '127.0.0.1', () => (s.end(), r(true)));
      s.on('error', () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what} did not start listening on ${port}`);
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

/** A redis-server on a free loopback port, nothing persisted; `stop()` and `start()` again on the same port. */
export async function startRedis(t: TeardownHost, redisServer: string, at?: number): Promise<{ url: string; stop(): Promise<void>; start(): Promise<void> }> {
  const port = at ?? (await freePort());
  const dir = mkdtempSync(path.join(tmpdir(), 'tessera-redis-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  let child: ChildProcess | null = null;
  const start = async () => {
    const c = spawn(redisServer, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no'], {
      stdio: 'ignore',
    });
    child = c;
    await waitForPort(port, () => c.exitCode === null, 'redis-server');
  };
  const stop = async () => {
    if (child) await stopChild(child);
    child = null;
  };
  t.teardown(stop);
  await start();
  return { url: `redis://127.0.0.1:${port}/0`, stop, start };
}

/** Debian's nginx running deploy/nginx/tessera-lb.conf with the replicas at `upstreamPorts`. */
export async function startBalancer(t: TeardownHost, nginx: string, upstreamPorts: number[]): Promise<{ base: string; conf: string; errorLog: string }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'tessera-lb-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const d of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(path.join(dir, d));
  const port = await freePort();
  const conf = lbConf(readFileSync(LB_CONF, 'utf8'), { dir, listenPort: port, upstreamPorts });
  const file = path.join(dir, 'nginx.conf');
  writeFileSync(file, conf);
  const errorLog = path.join(dir, 'error.log');
  writeFileSync(errorLog, '');
  const child = spawn(nginx, ['-p', dir + '/', '-c', file, '-e', errorLog], { stdio: 'ignore' });
  t.teardown(() => stopChild(child));
  await waitForPort(port, () => child.exitCode === null, `nginx (${readFileSync(errorLog, 'utf8')})`);
  return { base: `http://127.0.0.1:${port}`, conf, errorLog };
}

/**
 * deploy/nginx/tessera-lb.conf for a local run: one process in the foreground, its files under
 * `dir`, `tessera-N:8080` -> `127.0.0.1:<upstreamPorts[N-1]>`, `listen 8080` -> the given port.
 * Throws when the file no longer has what is replaced (the test must not run another config).
 */
export function lbConf(text: string, opts: { dir: string; listenPort: number; upstreamPorts: number[] }): string {
  let conf = text;
  const swap = (from: string, to: string) => {
    if (!conf.includes(from)) throw new Error(`tessera-lb.conf has no "${from}"`);
    conf = conf.replace(from, to);
  };
  opts.upstreamPorts.forEach((p, i) => swap(`server tessera-${i + 1}:8080;`, `server 127.0.0.1:${p};`));
  swap('listen 8080;', `listen 127.0.0.1:${opts.listenPort};`);
  swap('worker_processes auto;', ['daemon off;', 'master_process off;', 'worker_processes 1;', `pid ${opts.dir}/nginx.pid;`].join('\n'));
  swap(
    'http {',
    `http {\n    access_log off;\n    client_body_temp_path ${opts.dir}/body;\n    proxy_temp_path ${opts.dir}/proxy;\n` +
      `    fastcgi_temp_path ${opts.dir}/fastcgi;\n    uwsgi_temp_path ${opts.dir}/uwsgi;\n    scgi_temp_path ${opts.dir}/scgi;\n`,
  );
  return conf;
}
