// Local verification: Tessera's TypeScript verifier (dist/src/client, createVerifier with
// revocations: 'stream') checking a JWT in-process, behind a minimal node:http route so
// autocannon drives it like the other scenarios. The verifier subscribes to the bench Tessera's
// /events/stream with an `events:read` credential and refuses revoked tokens from its denylist.
//
// GET /verify  (Authorization: Bearer <jwt>) -> 200 {sub} or 401 {error, reason}
// GET /healthz -> 200 once the stream is caught up
// env: PORT, BENCH_TESSERA_URL (the issuer), BENCH_EVENTS_TOKEN (scope events:read)
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const { createVerifier, TesseraVerifyError } = await import(path.join(ROOT, 'dist/src/client/index.js'));

const issuer = process.env.BENCH_TESSERA_URL;
const eventsToken = process.env.BENCH_EVENTS_TOKEN;
const verifier = createVerifier({ issuer, audience: issuer, opaqueTokens: false, revocations: 'stream', events: { auth: async () => eventsToken } });
await verifier.revocationStream.ready();

const json = (res, status, body) => {
  const s = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(s) });
  res.end(s);
};

const server = http.createServer(async (req, res) => {
  if (req.url === '/healthz') return json(res, 200, { ok: true });
  if (req.url !== '/verify') return json(res, 404, { error: 'not_found', message: 'no such route' });
  const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
  if (!m) return json(res, 401, { error: 'invalid_token', message: 'no bearer token' });
  try {
    const v = await verifier.verify(m[1]);
    json(res, 200, { sub: v.subject });
  } catch (err) {
    if (err instanceof TesseraVerifyError) return json(res, 401, { error: 'invalid_token', reason: err.reason });
    json(res, 500, { error: 'server_error', message: String(err?.message ?? err) });
  }
});
server.keepAliveTimeout = 60_000;
server.listen(Number(process.env.PORT), '127.0.0.1');
process.on('SIGTERM', () => {
  verifier.close?.();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
});
