// The replicated deployment (docker-compose.replicas.yml + deploy/nginx/tessera-lb.conf) checked as
// far as it can be without a Docker engine: parsed, services, healthchecks, start order, the
// replicas' command and environment against what test/multi-instance.test.ts runs, and nginx's
// own check of the balancer's configuration.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { binary, lbConf, LB_CONF, REPLICA_COMMAND, replicaEnv, root } from './support/cluster-helper.js';

interface Service {
  image?: string;
  build?: string;
  command?: string[];
  environment?: Record<string, string>;
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
  ports?: string[];
  volumes?: string[];
}

const file = readFileSync(path.join(root, 'docker-compose.replicas.yml'), 'utf8');
const doc = parse(file) as { services: Record<string, Service> };
const services = doc.services;
const replicas = ['tessera-1', 'tessera-2', 'tessera-3'];
const dockerfile = readFileSync(path.join(root, 'Dockerfile'), 'utf8');

t.test('services: Postgres, Valkey, three Tessera replicas and nginx, each with a healthcheck', async (t) => {
  t.same(Object.keys(services).sort(), ['nginx', 'postgres', ...replicas, 'valkey'].sort());
  for (const [name, s] of Object.entries(services)) {
    t.ok(Array.isArray(s.healthcheck?.test) && s.healthcheck!.test.length > 1, `${name} has a healthcheck`);
  }
  t.match(services.postgres!.image, /^postgres:1[6-9]/);
  t.match(services.valkey!.image, /^valkey\/valkey:/);
  for (const r of replicas) t.match(services[r]!.healthcheck!.test.join(' '), /\/readyz/, `${r} is healthy when ready`);
  t.same(services.nginx!.ports, ['8080:8080'], 'only the balancer is published');
  for (const r of replicas) t.notOk(services[r]!.ports, `${r} is reached through nginx only`);
});

t.test('start order: replicas wait for healthy Postgres and Valkey, nginx for healthy replicas', async (t) => {
  for (const [name, s] of Object.entries(services)) {
    for (const [dep, { condition }] of Object.entries(s.depends_on ?? {})) {
      t.ok(services[dep], `${name} depends on ${dep}, a service of the file`);
      t.equal(condition, 'service_healthy', `${name} waits for ${dep} to be healthy`);
      t.ok(services[dep]!.healthcheck, `${dep} has the healthcheck that condition needs`);
    }
  }
  for (const r of replicas) t.same(Object.keys(services[r]!.depends_on ?? {}).sort(), ['postgres', 'valkey']);
  t.same(Object.keys(services.nginx!.depends_on ?? {}).sort(), replicas);
});

t.test("the replicas run the three-instance test's command and environment", async (t) => {
  const cmd = dockerfile
    .split('\n')
    .filter((l) => l.startsWith('CMD '))
    .pop();
  t.same(JSON.parse(cmd!.slice(4)), [...REPLICA_COMMAND], "the image's command is the test's");
  const testEnv = Object.keys(replicaEnv({ databaseUrl: 'x', redisUrl: 'x', issuer: 'x', masterKey: 'x', pepper: 'x' })).sort();
  for (const r of replicas) {
    const s = services[r]!;
    t.same(s.command, [...REPLICA_COMMAND], `${r} runs node dist/src/cli.js serve`);
    t.same(Object.keys(s.environment ?? {}).sort(), testEnv, `${r} sets the variables the test sets`);
    t.match(s.environment!.TESSERA_REDIS_URL, /^redis:\/\/valkey:6379\//, 'the limits are counted in the valkey service');
    t.match(s.environment!.DATABASE_URL, /@postgres:5432\//);
    t.equal(s.environment!.TESSERA_MIGRATE_ON_START, 'true');
  }
  t.same(services['tessera-2'], services['tessera-1'], 'the replicas are identical');
  t.same(services['tessera-3'], services['tessera-1']);
});

t.test("nginx: the repository's configuration, mounted as nginx.conf, balancing over the three replicas", async (t) => {
  t.same(services.nginx!.volumes, ['./deploy/nginx/tessera-lb.conf:/etc/nginx/nginx.conf:ro']);
  t.ok(existsSync(LB_CONF));
  const conf = readFileSync(LB_CONF, 'utf8');
  const servers = [...conf.matchAll(/^\s*server\s+([\w.-]+):(\d+);/gm)].map((m) => [m[1], m[2]]);
  t.same(
    servers,
    replicas.map((r) => [r, '8080']),
    'one upstream server per replica, on the port the image listens on',
  );
  t.match(conf, /^\s*listen 8080;/m, 'listens where compose publishes it');
  t.match(conf, /proxy_set_header X-Forwarded-For \$remote_addr;/, 'sets the address the replicas trust');
  t.match(services.nginx!.healthcheck!.test.join(' '), /\/lb-healthz/);
  t.match(conf, /location = \/lb-healthz/);
});

const nginx = binary('nginx', '-v');
t.test('nginx -t accepts the configuration', { skip: nginx ? false : 'nginx is not installed (apt-get install -y nginx)' }, async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'tessera-lb-check-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // The replicas' names do not resolve here: the copy has local addresses in their place.
  const conf = lbConf(readFileSync(LB_CONF, 'utf8'), { dir, listenPort: 18080, upstreamPorts: [18081, 18082, 18083] });
  writeFileSync(path.join(dir, 'nginx.conf'), conf);
  const r = spawnSync(nginx!, ['-t', '-p', dir + '/', '-c', path.join(dir, 'nginx.conf'), '-e', path.join(dir, 'error.log')], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  t.match(r.stderr, /syntax is ok/);
  // And a broken copy is refused, so the check can fail.
  writeFileSync(path.join(dir, 'broken.conf'), conf.replace('proxy_pass http://tessera;', 'proxy_pass http://tessera'));
  const broken = spawnSync(nginx!, ['-t', '-p', dir + '/', '-c', path.join(dir, 'broken.conf'), '-e', path.join(dir, 'error.log')], { encoding: 'utf8' });
  t.not(broken.status, 0);
});
