// Debian's real nginx in front of a real listening Tessera, configured from examples/nginx.conf.
// Skipped (with the reason) when nginx is not installed; this test installs nothing.
import t from 'tap';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { bearer, freePort, harness } from './support/helper.js';

function nginxBinary(): string | null {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin'])) {
    const p = path.join(dir, 'nginx');
    if (spawnSync(p, ['-v'], { stdio: 'ignore' }).status === 0) return p;
  }
  return null;
}

async function waitForPort(port: number, child: ChildProcess, log: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) throw new Error(`nginx exited: ${readFileSync(log, 'utf8')}`);
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect(port, '127.0.0.1', () => (s.end(), r(true)));
      s.on('error', () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('nginx did not start listening');
}

const nginx = nginxBinary();

t.test(
  'through real nginx: 200 with identity upstream, then 401 after logout',
  { skip: nginx ? false : 'nginx is not installed (apt-get install -y nginx); skipping the real-nginx gateway test' },
  async (t) => {
    const h = await harness(t, { env: { TESSERA_TRUST_PROXY: '127.0.0.1' } });
    await h.app.listen({ port: 0, host: '127.0.0.1' });
    const tesseraPort = (h.app.server.address() as AddressInfo).port;

    // The protected API: echoes what reached it.
    const seen: IncomingHttpHeaders[] = [];
    const upstream = createServer((req, res) => {
      seen.push(req.headers);
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ path: req.url, subject: req.headers['x-tessera-subject'] ?? null, scopes: req.headers['x-tessera-scopes'] ?? null }));
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    t.teardown(() => new Promise<void>((r) => upstream.close(() => r())));
    const upstreamPort = (upstream.address() as AddressInfo).port;

    const dir = mkdtempSync(path.join(tmpdir(), 'tessera-nginx-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    for (const d of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi', 'logs']) mkdirSync(path.join(dir, d));
    const listenPort = await freePort();
    const example = readFileSync(new URL('../examples/nginx.conf', import.meta.url), 'utf8');
    const conf =
      ['daemon off;', 'master_process off;', `pid ${dir}/nginx.pid;`, `error_log ${dir}/error.log warn;`].join('\n') +
      '\n' +
      example
        .replace('server 127.0.0.1:8080;', `server 127.0.0.1:${tesseraPort};`)
        .replace('server 127.0.0.1:9000;', `server 127.0.0.1:${upstreamPort};`)
        .replace('listen 8443;', `listen 127.0.0.1:${listenPort};`)
        .replace(
          'http {',
          `http {\n    access_log off;\n    client_body_temp_path ${dir}/body;\n    proxy_temp_path ${dir}/proxy;\n` +
            `    fastcgi_temp_path ${dir}/fastcgi;\n    uwsgi_temp_path ${dir}/uwsgi;\n    scgi_temp_path ${dir}/scgi;\n`,
        );
    t.not(conf, example, 'the example was adapted');
    t.match(conf, `127.0.0.1:${tesseraPort}`);
    writeFileSync(path.join(dir, 'nginx.conf'), conf);
    const errorLog = path.join(dir, 'error.log');
    writeFileSync(errorLog, '');
    const child = spawn(nginx!, ['-p', dir + '/', '-c', path.join(dir, 'nginx.conf'), '-e', errorLog], { stdio: 'ignore' });
    t.teardown(async () => {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
    });
    await waitForPort(listenPort, child, errorLog);
    const base = `http://127.0.0.1:${listenPort}`;

    const u = await h.user();
    const apiToken = await h.apiToken(u, ['api', 'quantum_tokens']);
    const login = await fetch(`http://127.0.0.1:${tesseraPort}/api/users/loginWithToken`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ apiToken }),
    });
    t.equal(login.status, 200);
    const session = ((await login.json()) as { id: string }).id;

    // No credential: nginx answers 401 with Tessera's challenge, and the API never sees the request.
    const anon = await fetch(`${base}/jobs`);
    t.equal(anon.status, 401);
    t.equal(anon.headers.get('www-authenticate'), 'Bearer realm="tessera"');
    t.equal(seen.length, 0);

    // A session token: 200, identity passed upstream; a forged identity header is overwritten.
    const ok = await fetch(`${base}/jobs?x=1`, { headers: { 'x-access-token': session, 'x-tessera-subject': 'forged' } });
    t.equal(ok.status, 200, `nginx error log: ${readFileSync(errorLog, 'utf8').slice(-500)}`);
    t.same(await ok.json(), { path: '/jobs?x=1', subject: u.id, scopes: 'api quantum_tokens' });
    t.equal(seen.length, 1);
    const viaBearer = await fetch(`${base}/jobs`, { method: 'POST', headers: bearer(session), body: 'payload' });
    t.equal(viaBearer.status, 200, 'POST works too (the subrequest is a bodiless GET)');

    // Logout (straight at Tessera), then the same token through nginx: 401.
    const out = await fetch(`http://127.0.0.1:${tesseraPort}/api/users/logout`, { method: 'POST', headers: { 'x-access-token': session } });
    t.equal(out.status, 204);
    const after = await fetch(`${base}/jobs`, { headers: { 'x-access-token': session } });
    t.equal(after.status, 401);
    t.match(after.headers.get('www-authenticate') ?? '', /^Bearer realm="tessera", error="invalid_token"/);
    t.equal(seen.length, 2, 'the upstream saw nothing after the logout');
  },
);
