// A program that awaits the verifier's stream before doing anything else (a gateway that listens
// only once it is up to date) must not end while the stream reconnects: the first connection
// fails here, and the process has nothing but the verifier to keep it alive.
import t from 'tap';
import http from 'node:http';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { freePort } from './support/helper.js';
import { twoInstances } from './support/events-helper.js';

t.test('await revocationStream.ready() in a process with nothing else alive survives a failed first connection', async (t) => {
  const { h, issuer } = await twoInstances(t);
  const receiver = await h.apiToken(await h.user(), ['events:read']);
  const target = new URL(issuer);
  let streamRequests = 0;
  // In front of the events stream: refuses the first connection, forwards the others.
  const front = http.createServer((req, res) => {
    if (streamRequests++ === 0) {
      res.writeHead(503, { 'content-type': 'application/json' }).end('{"error":"temporarily_unavailable","message":"starting"}');
      return;
    }
    const up = http.request({ host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on('error', () => res.destroy());
    res.on('close', () => up.destroy());
    req.pipe(up);
  });
  const port = await freePort();
  await new Promise<void>((r) => front.listen(port, '127.0.0.1', r));
  t.teardown(() => {
    front.closeAllConnections();
    front.close();
  });

  const client = pathToFileURL(path.resolve('dist/src/client/index.js')).href;
  const program = `
    const { createVerifier } = await import(${JSON.stringify(client)});
    const v = createVerifier({ issuer: process.env.ISSUER, audience: process.env.ISSUER, revocations: 'stream',
      events: { auth: async () => process.env.RECEIVER, url: process.env.EVENTS_URL } });
    await v.revocationStream.ready();
    console.log(v.revocationStream.isLive ? 'live' : 'not live');
    v.close();`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', program], {
    env: { ...process.env, ISSUER: issuer, RECEIVER: receiver, EVENTS_URL: `http://127.0.0.1:${port}/events/stream` },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  clearTimeout(killer);
  t.equal(code, 0, `the process ran to its end (stderr: ${err.slice(-300)})`);
  t.equal(out.trim(), 'live', 'ready() resolved with the stream live');
  t.ok(streamRequests >= 2, 'it connected again after the refused first connection');
});
