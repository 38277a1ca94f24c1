// Debian's real nginx in front of a real listening Tessera, configured from examples/nginx.conf.
// Skipped (with the reason) when nginx is not installed; this test installs nothing.
import t, { type Test } from 'tap';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { createHash, randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { bearer, freePort, harness } from './support/helper.js';
import { basic, createSdkKey, FORM } from './support/oauth-helper.js';

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

/**
 * A listening Tessera (trusting nginx) behind Debian's nginx configured from examples/nginx.conf, in
 * front of an upstream that echoes what reached it.
 */
async function gateway(t: Test, env: Record<string, string> = {}) {
  const tesseraPort = await freePort();
  const h = await harness(t, { env: { TESSERA_TRUST_PROXY: '127.0.0.1', TESSERA_ISSUER: `http://127.0.0.1:${tesseraPort}`, ...env } });
  await h.app.listen({ port: tesseraPort, host: '127.0.0.1' });

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
  return { h, base, seen, errorLog, tesseraPort };
}

t.test(
  'through real nginx: 200 with identity upstream, then 401 after logout',
  { skip: nginx ? false : 'nginx is not installed (apt-get install -y nginx); skipping the real-nginx gateway test' },
  async (t) => {
    const { h, base, seen, errorLog, tesseraPort } = await gateway(t);

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

t.test(
  'through real nginx: a DPoP-bound token with a proof for the URL the client called; replays and proofs for other requests refused',
  { skip: nginx ? false : 'nginx is not installed (apt-get install -y nginx); skipping the real-nginx gateway test' },
  async (t) => {
    const { h, base, seen, errorLog, tesseraPort } = await gateway(t);
    const issuer = `http://127.0.0.1:${tesseraPort}`;
    const user = await h.user();
    const key = await createSdkKey(h, user, { name: 'dpop-gateway', scopes: ['api'] });
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    const jwk = await exportJWK(publicKey);
    const proof = (claims: Record<string, unknown>) =>
      new SignJWT({ jti: randomUUID(), iat: Math.floor(Date.now() / 1000), ...claims })
        .setProtectedHeader({ typ: 'dpop+jwt', alg: 'ES256', jwk })
        .sign(privateKey);

    const tokenRes = await fetch(`${issuer}/oauth/token`, {
      method: 'POST',
      headers: {
        authorization: basic(key.client_id, key.client_secret),
        'content-type': FORM,
        dpop: await proof({ htm: 'POST', htu: `${issuer}/oauth/token` }),
      },
      body: 'grant_type=client_credentials',
    });
    const tokens = (await tokenRes.json()) as { access_token: string; token_type: string };
    t.equal(tokens.token_type, 'DPoP');
    const at = tokens.access_token;
    const ath = createHash('sha256').update(at).digest('base64url');
    const dpopCall = (method: string, path: string, proofValue: string) =>
      fetch(`${base}${path}`, { method, headers: { authorization: `DPoP ${at}`, dpop: proofValue }, ...(method === 'POST' ? { body: 'x' } : {}) });

    // The proof names the URL the client called (nginx's), query left out as RFC 9449 says: 200.
    const first = await proof({ htm: 'GET', htu: `${base}/jobs/42`, ath });
    const ok = await dpopCall('GET', '/jobs/42?page=2', first);
    t.equal(ok.status, 200, `nginx error log: ${readFileSync(errorLog, 'utf8').slice(-500)}`);
    t.same(await ok.json(), { path: '/jobs/42?page=2', subject: user.id, scopes: 'api' });
    const posted = await dpopCall('POST', '/jobs', await proof({ htm: 'POST', htu: `${base}/jobs`, ath }));
    t.equal(posted.status, 200, 'a POST with a proof for POST');
    t.equal(seen.length, 2);

    const refused = async (what: string, res: Response) => {
      t.equal(res.status, 401, what);
      t.match(res.headers.get('www-authenticate') ?? '', /^DPoP /, `${what}: a DPoP challenge`);
    };
    await refused('the same proof again', await dpopCall('GET', '/jobs/42', first));
    await refused('a proof for another path', await dpopCall('GET', '/jobs/43', await proof({ htm: 'GET', htu: `${base}/jobs/42`, ath })));
    await refused('a proof for GET on a POST', await dpopCall('POST', '/jobs', await proof({ htm: 'GET', htu: `${base}/jobs`, ath })));
    await refused(
      "a proof for Tessera's own route instead of the request nginx holds",
      await dpopCall('GET', '/jobs', await proof({ htm: 'GET', htu: `${issuer}/gateway/verify`, ath })),
    );
    await refused('a proof without ath', await dpopCall('GET', '/jobs', await proof({ htm: 'GET', htu: `${base}/jobs` })));
    await refused('the DPoP-bound token as Bearer', await fetch(`${base}/jobs`, { headers: bearer(at) }));
    t.equal(seen.length, 2, 'nothing refused reached the upstream');

    // Straight at Tessera (no proxy naming a request), the proof is for /gateway/verify itself.
    const direct = await fetch(`${issuer}/gateway/verify`, {
      headers: { authorization: `DPoP ${at}`, dpop: await proof({ htm: 'GET', htu: `${issuer}/gateway/verify`, ath }) },
    });
    t.equal(direct.status, 200);
    // A proxy naming a request it cannot have: 400, whatever the credential.
    const malformed = await fetch(`${issuer}/gateway/verify`, {
      headers: {
        authorization: `DPoP ${at}`,
        dpop: await proof({ htm: 'GET', htu: `${issuer}/gateway/verify`, ath }),
        'x-forwarded-method': 'GET',
        'x-forwarded-uri': '//elsewhere.example/jobs',
      },
    });
    t.equal(malformed.status, 400);
    t.match(await malformed.json(), { error: 'invalid_request', message: /X-Forwarded-Uri/ });
  },
);
