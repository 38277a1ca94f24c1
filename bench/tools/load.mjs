// Ad-hoc load for profiling one scenario against a Tessera started by hand (see "Where the time goes"
// in bench/README.md). Usage:
//   node bench/tools/load.mjs pairs   <port> <apiToken>           [connections=50] [seconds=10]
//   node bench/tools/load.mjs verify  <port> <bearer JWT or tsr_ses_ token> [connections] [seconds]
//   node bench/tools/load.mjs token   <port> <'Basic ...' header> [connections] [seconds]
//   node bench/tools/load.mjs token   <port> @<file>     (a JSON list of 'Basic ...' headers, taken round-robin;
//                                       `npm run bench -- --keep` leaves one as <work>/tessera-keys.json)
//   node bench/tools/load.mjs dpop-token  <port> <'Basic ...' header> [connections] [seconds]
//   node bench/tools/load.mjs dpop-verify <port> <'Basic ...' header> [connections] [seconds]
//                                       (a fresh DPoP proof per request, signed before the run; dpop-verify
//                                       first gets a DPoP-bound token with the key. The server's TESSERA_ISSUER
//                                       must be http://127.0.0.1:<port>, the URL proofs name.)
// Prints one JSON line; with TESSERA_PID set, also the server's CPU ms per request (or pair) from
// /proc/<pid>/stat (Postgres: sum /proc of the postmaster and its children the same way).
import { readFileSync } from 'node:fs';
import autocannon from 'autocannon';
import { dpopTokenRequests, dpopVerifyRequests, tokenRequests } from '../lib/scenarios.mjs';
import { dpopKey, dpopProof } from '../lib/dpop-proofs.mjs';
import { setupClientFor } from '../lib/header-each.mjs';

const [kind, port, cred, conc = '50', secs = '10'] = process.argv.slice(2);
if (!kind || !port || !cred) {
  console.error('usage: node bench/tools/load.mjs pairs|verify|token|dpop-token|dpop-verify <port> <credential> [connections] [seconds]');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;
const key = kind.startsWith('dpop') ? dpopKey() : null;
let dpopToken = null;
if (kind === 'dpop-verify') {
  const res = await fetch(`${issuer}/oauth/token`, {
    method: 'POST',
    headers: { authorization: cred, 'content-type': 'application/x-www-form-urlencoded', dpop: dpopProof(key, 'POST', `${issuer}/oauth/token`) },
    body: 'grant_type=client_credentials',
  });
  const json = await res.json();
  if (json.token_type !== 'DPoP') throw new Error(`no DPoP-bound token: ${res.status} ${JSON.stringify(json)}`);
  dpopToken = json.access_token;
}
let pairs = 0;
let bad = 0;
// Each kind's requests, built only for the kind asked (a DPoP kind signs its proof pool here).
const build = {
  pairs: () => [
    {
      method: 'POST',
      path: '/api/users/loginWithToken',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ apiToken: cred }),
      onResponse: (s, b, ctx) => (s === 200 ? (ctx.session = JSON.parse(b).id) : bad++),
    },
    {
      method: 'POST',
      path: '/api/users/logout',
      setupRequest: (req, ctx) => ({ ...req, headers: { ...req.headers, 'x-access-token': ctx.session } }),
      onResponse: (s) => (s >= 200 && s < 300 ? pairs++ : bad++),
    },
  ],
  verify: () => [
    { method: 'GET', path: '/gateway/verify', headers: cred.startsWith('tsr_ses_') ? { 'x-access-token': cred } : { authorization: `Bearer ${cred}` } },
  ],
  token: () => tokenRequests('/oauth/token', cred.startsWith('@') ? JSON.parse(readFileSync(cred.slice(1), 'utf8')) : [cred], 'grant_type=client_credentials'),
  'dpop-token': () => dpopTokenRequests(key, issuer, [cred], Number(secs)),
  'dpop-verify': () => dpopVerifyRequests(key, issuer, dpopToken, Number(secs)),
}[kind];
if (!build) {
  console.error(`unknown kind ${kind}: pairs|verify|token|dpop-token|dpop-verify`);
  process.exit(2);
}
const requests = build();
const pid = process.env.TESSERA_PID;
const ticks = () =>
  pid
    ? readFileSync(`/proc/${pid}/stat`, 'utf8')
        .split(') ')[1]
        .split(' ')
        .slice(11, 13)
        .reduce((a, b) => a + Number(b), 0)
    : 0;
const t0 = ticks();
const r = await autocannon({
  url: `http://127.0.0.1:${port}`,
  connections: Number(conc),
  duration: Number(secs),
  requests,
  setupClient: setupClientFor(requests),
});
const units = kind === 'pairs' ? pairs : r.requests.total;
const out = {
  kind,
  perSec: Math.round((kind === 'pairs' ? pairs : r.requests.total) / Number(secs)),
  p50: r.latency.p50,
  p99: r.latency.p99,
  non2xx: r.non2xx,
  bad,
  errors: r.errors,
};
if (pid) out.serverCpuMsPerUnit = +(((ticks() - t0) * 10) / units).toFixed(3);
console.log(JSON.stringify(out));
