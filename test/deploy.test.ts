// No Docker engine runs here, so the image and compose files are checked as far as they can be:
// parsed, their paths checked, and the very commands they run started for real.
import t from 'tap';
import { readFileSync, existsSync } from 'node:fs';
import { spawn, execFile } from 'node:child_process';
import { promisify } from 'node:util';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { parse } from 'yaml';
import { freePort, freshDatabase } from './support/helper.js';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const dockerfile = readFileSync(path.join(root, 'Dockerfile'), 'utf8');
const run = promisify(execFile);

/** Dockerfile instructions with continuation lines joined. */
function instructions(text: string): Array<{ op: string; args: string }> {
  return text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const m = /^(\w+)\s+(.*)$/.exec(l)!;
      return { op: m[1]!.toUpperCase(), args: m[2]! };
    });
}

function execForm(args: string): string[] {
  const json = args.slice(args.indexOf('['));
  return JSON.parse(json) as string[];
}

t.test('Dockerfile: multi-stage, production deps only, non-root, healthcheck, the command we test', async (t) => {
  const ins = instructions(dockerfile);
  const froms = ins.filter((i) => i.op === 'FROM');
  t.ok(froms.length >= 2, 'multi-stage');
  const lastFrom = ins.lastIndexOf(froms[froms.length - 1]!);
  const final = ins.slice(lastFrom);
  const user = final.filter((i) => i.op === 'USER').map((i) => i.args);
  t.ok(user.length && !['root', '0'].includes(user[user.length - 1]!), 'runs as a non-root user');
  t.ok(
    ins.some((i) => i.op === 'RUN' && /npm ci .*--omit=dev/.test(i.args)),
    'production dependencies only',
  );
  t.ok(
    final.some((i) => i.op === 'HEALTHCHECK'),
    'healthcheck in the final stage',
  );
  const cmd = final.find((i) => i.op === 'CMD');
  t.same(cmd && execForm(cmd.args), ['node', 'dist/src/cli.js', 'serve']);
  for (const c of ins.filter((i) => i.op === 'COPY' && !i.args.includes('--from'))) {
    const parts = c.args.split(/\s+/).filter((p) => !p.startsWith('--'));
    for (const src of parts.slice(0, -1)) t.ok(existsSync(path.join(root, src)), `COPY source ${src} exists`);
  }
});

t.test('docker-compose.yml: Postgres 16+ with volume and healthcheck; Tessera waits for it and migrates on start', async (t) => {
  const doc = parse(readFileSync(path.join(root, 'docker-compose.yml'), 'utf8'));
  const pg = doc.services.postgres;
  const major = Number(/postgres:(\d+)/.exec(pg.image)?.[1]);
  t.ok(major >= 16, `Postgres ${major} >= 16`);
  t.ok(
    pg.volumes.some((v: string) => v.endsWith(':/var/lib/postgresql/data')),
    'data on a volume',
  );
  t.ok(doc.volumes && 'pgdata' in doc.volumes);
  t.match(pg.healthcheck.test.join(' '), /pg_isready/);
  const app = doc.services.tessera;
  t.equal(app.build, '.');
  t.equal(app.depends_on.postgres.condition, 'service_healthy');
  t.match(app.environment.DATABASE_URL, /@postgres:5432\/tessera$/);
  t.match(app.environment.TESSERA_MASTER_KEY, /:\?/, 'the master key must be given, never defaulted');
  t.match(app.environment.TESSERA_PEPPER, /:\?/);
  t.equal(app.environment.TESSERA_MIGRATE_ON_START, 'true');
});

t.test('the image command and its healthcheck work against a real database', async (t) => {
  const databaseUrl = await freshDatabase(t);
  const port = await freePort();
  const ins = instructions(dockerfile);
  const cmd = execForm(ins.filter((i) => i.op === 'CMD').pop()!.args);
  const env = {
    ...process.env,
    DATABASE_URL: databaseUrl,
    TESSERA_MASTER_KEY: randomBytes(32).toString('base64'),
    TESSERA_PEPPER: randomBytes(32).toString('base64'),
    PORT: String(port),
    TESSERA_HOST: '127.0.0.1',
    TESSERA_MIGRATE_ON_START: 'true',
    TESSERA_LOG_LEVEL: 'warn',
  };
  const child = spawn(cmd[0] === 'node' ? process.execPath : cmd[0]!, cmd.slice(1), { cwd: root, env, stdio: 'ignore' });
  const exited = new Promise((r) => child.on('exit', r));
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  const health = ins.filter((i) => i.op === 'HEALTHCHECK').pop()!;
  const probe = execForm(health.args.slice(health.args.indexOf('CMD')));
  let ok = false;
  for (let i = 0; i < 100 && !ok; i++) {
    ok = await run(process.execPath, probe.slice(1), { env }).then(
      () => true,
      () => false,
    );
    if (!ok) await new Promise((r) => setTimeout(r, 200));
  }
  t.ok(ok, 'the HEALTHCHECK command reports healthy once the service is ready');
  child.kill('SIGTERM');
  t.equal(await exited, 0, 'stops cleanly on the STOPSIGNAL');
  t.notOk(
    await run(process.execPath, probe.slice(1), { env }).then(
      () => true,
      () => false,
    ),
    'and the healthcheck fails when it is down',
  );
});
