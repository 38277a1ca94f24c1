// Three real Tessera processes on one Postgres, their rate limits counted in Debian's redis-server,
// behind Debian's nginx as a round-robin balancer configured from deploy/nginx/tessera-lb.conf
// (the file docker-compose.replicas.yml runs). Skipped, with the reason, when nginx or
// redis-server is not installed (.ci/run installs both); this test installs nothing.
import t from 'tap';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort, freshDatabase } from './support/helper.js';
import { startServer, waitReady } from './support/process-helper.js';
import { binary, REPLICA_COMMAND, replicaEnv, root, startBalancer, startRedis } from './support/cluster-helper.js';

t.setTimeout(240_000);

const nginx = binary('nginx', '-v');
const redisServer = binary('redis-server', '--version');
// `node dist/src/cli.js serve`, as each replica of docker-compose.replicas.yml (startServer adds `serve`).
const cli = path.join(root, REPLICA_COMMAND[1]);
const run = promisify(execFile);

type Json = Record<string, unknown>;

const skip = !nginx
  ? 'nginx is not installed (apt-get install -y nginx); skipping the three-instance test'
  : !redisServer
    ? 'redis-server is not installed (apt-get install -y redis-server); skipping the three-instance test'
    : false;

t.test('three instances behind nginx: shared limits, logout, key rotation, Redis down and back', { skip }, async (t) => {
  const databaseUrl = await freshDatabase(t);
  const redis = await startRedis(t, redisServer!);
  const ports = [await freePort(), await freePort(), await freePort()];
  const lb = await startBalancer(t, nginx!, ports);
  const env = replicaEnv({
    databaseUrl,
    redisUrl: redis.url,
    issuer: lb.base,
    masterKey: randomBytes(32).toString('base64'),
    pepper: randomBytes(32).toString('base64'),
  });
  const instances = ports.map((port) => {
    const s = startServer({ ...env, PORT: String(port), TESSERA_HOST: '127.0.0.1' }, root, cli);
    t.teardown(async () => {
      if (s.child.exitCode === null) {
        s.child.kill('SIGTERM');
        await s.exited;
      }
    });
    return { port, url: `http://127.0.0.1:${port}`, ...s };
  });
  // The three start together: their migrations on start take turns under Postgres's lock.
  await Promise.all(ports.map((p) => waitReady(p, 90_000)));

  // An operator from the CLI, as the README bootstraps one; an SDK key through the balancer.
  const tessera = async (...args: string[]) => JSON.parse((await run(process.execPath, [cli, ...args], { env: { ...process.env, ...env } })).stdout) as Json;
  await tessera('users', 'create', '--email', 'ops@example.com', '--name', 'Ops');
  const apiToken = (await tessera('tokens', 'create', '--user', 'ops@example.com', '--scopes', 'api,admin,quantum_tokens', '--name', 'ops')).token as string;
  const authz = { authorization: `Bearer ${apiToken}` };
  let keys = 0;
  let secondKey: { client_id: string; client_secret: string } | undefined;
  const sdkKey = async () => {
    const body = JSON.stringify({ name: `sdk-${++keys}` });
    const res = await fetch(`${lb.base}/api/sdk-keys`, { method: 'POST', headers: { ...authz, 'content-type': 'application/json' }, body });
    t.equal(res.status, 201);
    return (await res.json()) as { client_id: string; client_secret: string };
  };
  const tokenRequest = (base: string, key: { client_id: string; client_secret: string }, headers: Record<string, string> = {}) =>
    fetch(`${base}/oauth/token`, {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from(`${encodeURIComponent(key.client_id)}:${encodeURIComponent(key.client_secret)}`).toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded',
        ...headers,
      },
      body: 'grant_type=client_credentials',
    });
  const metric = async (url: string, pattern: RegExp): Promise<number> => {
    const text = await (await fetch(`${url}/metrics`)).text();
    return text
      .split('\n')
      .filter((l) => pattern.test(l))
      .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
  };
  const tokenAnswers = (url: string, status: number) => metric(url, new RegExp(`^tessera_http_requests_total\\{.*route="/oauth/token".*status="${status}"`));
  const readiness = async (url: string) => {
    const res = await fetch(`${url}/readyz`);
    return { status: res.status, body: (await res.json()) as { status: string; checks: Record<string, string> } };
  };
  const until = async (what: string, check: () => Promise<boolean>) => {
    for (let i = 0; i < 300; i++) {
      if (await check()) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`gave up waiting: ${what}`);
  };

  await t.test('every instance counts its limits in Redis', async (t) => {
    for (const i of instances) {
      const r = await readiness(i.url);
      t.equal(r.status, 200);
      t.equal(r.body.status, 'ok', JSON.stringify(r.body));
      t.equal(r.body.checks.rate_limit_store, 'ok');
      t.equal(await metric(i.url, /^tessera_rate_limit_store_up\{.*backend="redis"[,}]/), 1);
    }
  });

  await t.test('the per-client token limit (600 a minute) holds across the three: the 601st is refused whichever answers', async (t) => {
    const key = await sdkKey();
    const statuses: number[] = [];
    for (let batch = 0; batch < 30; batch++) {
      const answers = await Promise.all(Array.from({ length: 20 }, () => tokenRequest(lb.base, key)));
      for (const a of answers) {
        statuses.push(a.status);
        await a.arrayBuffer();
      }
    }
    t.equal(statuses.length, 600);
    t.same(
      statuses.filter((s) => s !== 200),
      [],
      'the first 600 are served',
    );
    const served = await Promise.all(instances.map((i) => tokenAnswers(i.url, 200)));
    t.equal(
      served.reduce((a, b) => a + b, 0),
      600,
    );
    t.ok(
      served.every((n) => n >= 150),
      `round robin spread them: ${served.join(', ')}`,
    );
    // Three more: nginx gives one to each instance in turn; each refuses (600 a minute, the shared count).
    for (let n = 601; n <= 603; n++) {
      const res = await tokenRequest(lb.base, key);
      t.equal(res.status, 429, `request ${n} is refused`);
      t.match(await res.json(), { error: 'temporarily_unavailable' });
      t.ok(Number(res.headers.get('retry-after')) >= 1, 'with Retry-After');
    }
    for (const i of instances) t.equal(await tokenAnswers(i.url, 429), 1, `instance :${i.port} refused one`);
    // Straight at each instance (not through the balancer): refused too.
    for (const i of instances) t.equal((await tokenRequest(i.url, key)).status, 429);
  });

  await t.test('a logout through one instance is refused by the next request on every instance', async (t) => {
    const login = await fetch(`${lb.base}/api/users/loginWithToken`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ apiToken }),
    });
    t.equal(login.status, 200);
    const session = ((await login.json()) as { id: string }).id;
    // Every instance has verified (and cached) the session.
    for (const i of instances) t.equal((await fetch(`${i.url}/api/users/me`, { headers: { 'x-access-token': session } })).status, 200);
    const out = await fetch(`${lb.base}/api/users/logout`, { method: 'POST', headers: { 'x-access-token': session } });
    t.equal(out.status, 204);
    for (const i of instances) t.equal((await fetch(`${i.url}/api/users/me`, { headers: { 'x-access-token': session } })).status, 401, `instance :${i.port}`);
    for (let n = 0; n < 3; n++) t.equal((await fetch(`${lb.base}/api/users/me`, { headers: { 'x-access-token': session } })).status, 401);
  });

  await t.test('a key rotation through the admin API is seen by all: JWKS and the tokens each instance signs', async (t) => {
    const res = await fetch(`${lb.base}/admin/keys/rotate`, {
      method: 'POST',
      headers: { ...authz, 'content-type': 'application/json' },
      body: JSON.stringify({ immediate: true }),
    });
    t.equal(res.status, 200);
    const kid = ((await res.json()) as { key: { kid: string } }).key.kid;
    const key = (secondKey = await sdkKey());
    for (const i of instances) {
      await until(`instance :${i.port} publishes and signs with ${kid}`, async () => {
        const jwks = (await (await fetch(`${i.url}/.well-known/jwks.json`)).json()) as { keys: Array<{ kid: string }> };
        if (!jwks.keys.some((k) => k.kid === kid)) return false;
        const token = (await (await tokenRequest(i.url, key)).json()) as { access_token: string };
        return (JSON.parse(Buffer.from(token.access_token.split('.')[0]!, 'base64url').toString()) as { kid: string }).kid === kid;
      });
      t.pass(`instance :${i.port} signs with the new key`);
    }
  });

  await t.test('Redis stopped: requests are served, limits fall back to each instance, /readyz says degraded; Redis back: shared again', async (t) => {
    await redis.stop();
    for (const i of instances) {
      await until(`instance :${i.port} reports the degradation`, async () => (await readiness(i.url)).body.status === 'degraded');
      const r = await readiness(i.url);
      t.equal(r.status, 200, 'still ready: it serves requests');
      t.match(r.body.checks.rate_limit_store, /^degraded: Redis unreachable .*: rate limits are counted per instance$/);
      t.equal(r.body.checks.database, 'ok');
      t.equal(await metric(i.url, /^tessera_rate_limit_store_up\{.*backend="redis-unreachable"[,}]/), 1);
    }
    const key = secondKey!;
    for (let n = 0; n < 3; n++) t.equal((await tokenRequest(lb.base, key)).status, 200, 'token requests are served');
    // The failed-authentication budget (30 a minute per IP) is now this instance's own: a client
    // (an address the instances trust the forwarded header for) spends it on the first instance...
    const wrong = { client_id: key.client_id, client_secret: 'wrong' };
    const from = { 'x-forwarded-for': '203.0.113.7' };
    const [first, second] = instances as [(typeof instances)[0], (typeof instances)[0]];
    for (let n = 0; n < 30; n++) t.equal((await tokenRequest(first.url, wrong, from)).status, 401);
    t.equal((await tokenRequest(first.url, wrong, from)).status, 429, 'the 31st failure on that instance is refused');
    t.equal((await tokenRequest(second.url, wrong, from)).status, 401, 'another instance has counted none of them');
    t.ok(
      (await Promise.all(instances.map((i) => metric(i.url, /^tessera_rate_limit_store_fallbacks_total/)))).every((n) => n > 0),
      'each counted in memory',
    );

    await redis.start();
    for (const i of instances) {
      await until(`instance :${i.port} is back on Redis`, async () => (await readiness(i.url)).body.status === 'ok');
      t.equal(await metric(i.url, /^tessera_rate_limit_store_up\{.*backend="redis"[,}]/), 1);
    }
    // Shared again: 30 failures through the balancer (about 10 on each instance, from 127.0.0.1),
    // then every instance refuses the next.
    for (let n = 0; n < 30; n++) t.equal((await tokenRequest(lb.base, wrong)).status, 401);
    for (let n = 0; n < 3; n++) t.equal((await tokenRequest(lb.base, wrong)).status, 429, 'failure 31+ is refused, whichever instance answers');
    t.equal((await tokenRequest(lb.base, key)).status, 429, 'the budget is spent for that address, good secrets included');
  });
});
