// The scenarios: for each, the servers it compares and the autocannon requests that load them.
// A target is { server, label, port, available (true or a reason), load(counters) -> requests[] }.
// A scenario may set `connections` (its own concurrencies instead of BENCH_CONNECTIONS) and
// `rotate: false` (its targets run in the listed order in every run, not rotated).

import { proofPool } from './dpop-proofs.mjs';
import { roundRobin, withHeaderEach } from './header-each.mjs';

const FORM = 'application/x-www-form-urlencoded';
const RESOURCE = 'urn:bench:api';

export function basic(id, secret) {
  return 'Basic ' + Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64');
}

/** One request shape; with several credentials, each request takes the next (round-robin). */
export function tokenRequests(path, authHeaders, body) {
  const base = { method: 'POST', path, headers: { 'content-type': FORM }, body };
  if (authHeaders.length === 1) return [{ ...base, headers: { ...base.headers, authorization: authHeaders[0] } }];
  return [withHeaderEach(base, 'authorization', roundRobin(authHeaders))];
}

// Expected rates only size the proof pools; past a pool's end proofs are signed on the spot.
const DPOP_TOKEN_RATE = 8000;
const DPOP_VERIFY_RATE = 15000;

/** client_credentials token requests, each with the next DPoP proof of a pool made now for `seconds`. */
export function dpopTokenRequests(key, issuer, authHeaders, seconds) {
  return tokenRequests('/oauth/token', authHeaders, 'grant_type=client_credentials').map((r) =>
    withHeaderEach(r, 'dpop', proofPool(key, 'POST', `${issuer}/oauth/token`, undefined, seconds, DPOP_TOKEN_RATE)),
  );
}

/** GET /gateway/verify with the DPoP-bound `token`, each with the next proof (bound to it) of a pool made now for `seconds`. */
export function dpopVerifyRequests(key, issuer, token, seconds) {
  return [
    withHeaderEach(
      { method: 'GET', path: '/gateway/verify', headers: { authorization: `DPoP ${token}` } },
      'dpop',
      proofPool(key, 'GET', `${issuer}/gateway/verify`, token, seconds, DPOP_VERIFY_RATE),
    ),
  ];
}

function unavailable(reason) {
  return reason === true ? true : `not available on this build (${reason})`;
}

/**
 * Builds every scenario from the fixtures. `fx.tessera.avail.<feature>` is true or the reason the
 * feature is missing (its probe answered 404).
 */
export function buildScenarios(fx, opts = {}) {
  const { ports, tessera: t, peer, ceiling } = fx;
  const many = fx.clients.length;
  const peerAuth = fx.clients.map(([id, secret]) => basic(id, secret));
  const tesseraAuth = t.manyKeys?.map((k) => basic(k.client_id, k.client_secret)) ?? [];
  const tesseraOne = t.oneKey ? [basic(t.oneKey.client_id, t.oneKey.client_secret)] : [];

  const ccTessera = (tesseraHeaders, tesseraAvail) => ({
    server: 'tessera',
    label: 'Tessera POST /oauth/token',
    port: ports.tessera,
    available: unavailable(tesseraAvail),
    load: () => tokenRequests('/oauth/token', tesseraHeaders, 'grant_type=client_credentials'),
  });
  const ccCeiling = (peerHeaders) => ({
    server: 'ceiling',
    label: 'reference POST /token',
    port: ports.ceiling,
    available: true,
    load: () => tokenRequests('/token', peerHeaders, 'grant_type=client_credentials'),
  });
  // Same process as the ceiling, the route that answers a token signed at start (see bench/servers/ceiling.mjs).
  const ccFloor = (peerHeaders) => ({
    server: 'floor',
    label: 'HTTP floor POST /token-floor (pre-signed token)',
    port: ports.ceiling,
    available: true,
    load: () => tokenRequests('/token-floor', peerHeaders, 'grant_type=client_credentials'),
  });
  const cc = (id, title, tesseraHeaders, peerHeaders, tesseraAvail) => ({
    id,
    title,
    unit: 'tokens/s',
    targets: [
      {
        server: 'tessera',
        label: 'Tessera POST /oauth/token',
        port: ports.tessera,
        available: unavailable(tesseraAvail),
        load: () => tokenRequests('/oauth/token', tesseraHeaders, 'grant_type=client_credentials'),
      },
      {
        server: 'peer',
        label: 'oidc-provider POST /token (JWT, resource indicator)',
        port: ports.peer,
        available: true,
        load: () => tokenRequests('/token', peerHeaders, `grant_type=client_credentials&resource=${encodeURIComponent(RESOURCE)}`),
      },
      ccCeiling(peerHeaders),
      ccFloor(peerHeaders),
    ],
  });

  const flowRate = opts.revocationsPerSecond ?? 0;
  // Tessera's TypeScript verifier checking the JWT in-process (bench/servers/local-verify.mjs).
  const localVerify = () => ({
    server: 'local',
    label: "local verification: createVerifier (revocations: 'stream'), JWT",
    port: ports.local,
    available: unavailable(t.avail.cc !== true ? t.avail.cc : (t.avail.local ?? 'no local verifier')),
    load: () => [{ method: 'GET', path: '/verify', headers: { authorization: `Bearer ${t.jwt}` } }],
  });
  const issuer = `http://127.0.0.1:${ports.tessera}`;
  const dpopAvail = t.avail.cc !== true ? t.avail.cc : (t.avail.dpop ?? 'no DPoP fixture');
  // Bearer and DPoP side by side in one scenario, so the ratio is of the same run.
  const dpopPair = (id, title, unit, bearerTarget, dpopTarget) => ({ id, title, unit, targets: [bearerTarget, dpopTarget] });

  return [
    dpopPair(
      'dpop-token',
      'client_credentials, one client: Bearer vs DPoP-bound',
      'tokens/s',
      {
        server: 'tessera',
        label: 'Tessera POST /oauth/token (Bearer)',
        port: ports.tessera,
        available: unavailable(t.avail.cc),
        load: () => tokenRequests('/oauth/token', tesseraOne, 'grant_type=client_credentials'),
      },
      {
        server: 'tessera',
        variant: 'dpop',
        label: 'Tessera POST /oauth/token with a fresh DPoP proof each',
        port: ports.tessera,
        available: unavailable(dpopAvail),
        load: (counters) => dpopTokenRequests(t.dpopKey, issuer, tesseraOne, counters.seconds),
      },
    ),
    dpopPair(
      'dpop-verify',
      'GET /gateway/verify: Bearer JWT vs DPoP-bound JWT with proof',
      'req/s',
      {
        server: 'tessera',
        label: 'Tessera GET /gateway/verify, JWT (Bearer)',
        port: ports.tessera,
        available: unavailable(t.avail.cc !== true ? t.avail.cc : t.avail.verify),
        load: () => [{ method: 'GET', path: '/gateway/verify', headers: { authorization: `Bearer ${t.jwt}` } }],
      },
      {
        server: 'tessera',
        variant: 'dpop',
        label: 'Tessera GET /gateway/verify, DPoP JWT with a fresh proof each',
        port: ports.tessera,
        available: unavailable(dpopAvail),
        load: (counters) => dpopVerifyRequests(t.dpopKey, issuer, t.dpopJwt, counters.seconds),
      },
    ),
    cc('cc-one', 'client_credentials, one client', tesseraOne, peerAuth.slice(0, 1), t.avail.cc),
    cc(
      'cc-many',
      `client_credentials, ${many.toLocaleString('en-US')} clients round-robin`,
      tesseraAuth,
      peerAuth,
      t.avail.cc === true && tesseraAuth.length < many ? `only ${tesseraAuth.length} SDK keys could be made` : t.avail.cc,
    ),
    {
      // Growth against concurrency: one client, BENCH_CURVE_CONNECTIONS.
      id: 'cc-conc',
      title: 'client_credentials, one client, by concurrency',
      unit: 'tokens/s',
      connections: opts.curveConnections,
      targets: [ccTessera(tesseraOne, t.avail.cc), ccCeiling(peerAuth.slice(0, 1)), ccFloor(peerAuth.slice(0, 1))],
    },
    {
      // Growth against distinct clients: the population fixture (bench/population.mjs) served by its own
      // Tessera on a cached data folder; the counts run in increasing order, the largest last.
      id: 'cc-pop',
      title: 'client_credentials, population, by distinct clients',
      unit: 'tokens/s',
      connections: [opts.popConnections],
      rotate: false,
      targets: (opts.popClients ?? []).map((n) => ({
        server: 'tessera',
        variant: `clients-${n}`,
        clients: n,
        label: `Tessera POST /oauth/token, ${n.toLocaleString('en-US')} clients round-robin`,
        get port() {
          return fx.population?.port;
        },
        available: fx.population ? unavailable(fx.population.available) : 'not available (no population fixture)',
        load: () => tokenRequests('/oauth/token', fx.population.auth.slice(0, n), 'grant_type=client_credentials'),
      })),
    },
    {
      id: 'verify',
      title: 'gateway verify vs introspection',
      unit: 'req/s',
      targets: [
        {
          server: 'tessera',
          label: 'Tessera GET /gateway/verify, JWT (Bearer)',
          port: ports.tessera,
          available: unavailable(t.avail.cc !== true ? t.avail.cc : t.avail.verify),
          load: () => [{ method: 'GET', path: '/gateway/verify', headers: { authorization: `Bearer ${t.jwt}` } }],
        },
        {
          server: 'tessera',
          variant: 'session',
          label: 'Tessera GET /gateway/verify, session token (x-access-token)',
          port: ports.tessera,
          available: unavailable(t.avail.login !== true ? t.avail.login : t.avail.verify),
          load: () => [{ method: 'GET', path: '/gateway/verify', headers: { 'x-access-token': t.session } }],
        },
        {
          server: 'peer',
          label: 'oidc-provider POST /token/introspection, opaque token',
          port: ports.peer,
          available: true,
          // The opaque token is fetched again just before each run (the in-memory adapter is an LRU).
          load: () => [
            {
              method: 'POST',
              path: '/token/introspection',
              headers: { 'content-type': FORM, authorization: peerAuth[0] },
              body: `token=${encodeURIComponent(peer.opaque())}&token_type_hint=access_token`,
            },
          ],
        },
        {
          server: 'ceiling',
          label: 'reference GET /verify, JWT',
          port: ports.ceiling,
          available: true,
          load: () => [{ method: 'GET', path: '/verify', headers: { authorization: `Bearer ${ceiling.jwt}` } }],
        },
        localVerify(),
        // The same two verifications with revocations flowing into Tessera (bench/tools/revocation-flow.mjs).
        ...(flowRate > 0
          ? [
              {
                server: 'tessera',
                variant: 'revoking',
                flow: true,
                label: `Tessera GET /gateway/verify, JWT, ${flowRate.toLocaleString('en-US')} revocations/s flowing`,
                port: ports.tessera,
                available: unavailable(t.avail.cc !== true ? t.avail.cc : t.avail.verify),
                load: () => [{ method: 'GET', path: '/gateway/verify', headers: { authorization: `Bearer ${t.jwt}` } }],
              },
              { ...localVerify(), variant: 'revoking', flow: true, label: `${localVerify().label}, ${flowRate.toLocaleString('en-US')} revocations/s flowing` },
            ]
          : []),
      ],
    },
    {
      id: 'login',
      title: 'loginWithToken + logout pairs',
      unit: 'pairs/s',
      targets: [
        {
          server: 'tessera',
          label: 'Tessera loginWithToken then logout (x-access-token)',
          port: ports.tessera,
          available: unavailable(t.avail.login),
          pairs: true,
          // Each connection: login, then logout with the id it got; the pair counts when the logout's
          // 2xx is back. autocannon sends a connection's next request only after the previous reply.
          load: (counters) => [
            {
              method: 'POST',
              path: '/api/users/loginWithToken',
              headers: { 'content-type': 'application/json' },
              body: JSON.stringify({ apiToken: t.mainToken }),
              onResponse: (status, body, context) => {
                if (status === 200) context.session = JSON.parse(body).id;
              },
            },
            {
              method: 'POST',
              path: '/api/users/logout',
              setupRequest: (req, context) => (context.session ? { ...req, headers: { ...req.headers, 'x-access-token': context.session } } : null),
              onResponse: (status) => {
                if (status >= 200 && status < 300) counters.pairs++;
              },
            },
          ],
        },
      ],
    },
    {
      id: 'jwks',
      title: 'JWKS fetch',
      unit: 'req/s',
      targets: [
        {
          server: 'tessera',
          label: 'Tessera GET /.well-known/jwks.json',
          port: ports.tessera,
          available: unavailable(t.avail.jwks),
          load: () => [{ method: 'GET', path: '/.well-known/jwks.json' }],
        },
        { server: 'peer', label: 'oidc-provider GET /jwks', port: ports.peer, available: true, load: () => [{ method: 'GET', path: '/jwks' }] },
        { server: 'ceiling', label: 'reference GET /jwks', port: ports.ceiling, available: true, load: () => [{ method: 'GET', path: '/jwks' }] },
      ],
    },
  ];
}

/**
 * The targets, judged on the medians. `find(scenario, server, variant, c)` -> row or null; `extra` carries
 * what is not a row: { population: { coldStartSeconds, rssEndBytes, keys } }. Each target names the command
 * that measures it alone.
 */
export function judgeTargets(find, extra = {}, opts = {}) {
  const out = [];
  const C = 50;
  // goal: as the report prints it; limit: its number (the ratio, ms, MB, s or pairs/s the goal names).
  const push = (name, c, goal, measured, ok, command, limit) =>
    out.push({ name, c, goal, limit, measured, status: measured === null ? 'n/a' : ok ? 'met' : 'not met', command });
  const cmd = (ids) => `npm run bench -- --scenarios ${ids} --connections ${C}`;
  const ratio = (name, scenario, variant, versus, goal, command, unit = 'rps') => {
    const a = find(scenario, 'tessera', variant, C);
    const b = find(scenario, versus, undefined, C);
    const r = a && b ? a[unit] / b[unit] : null;
    push(name, C, `>= ${goal}x`, r === null ? null : `${r.toFixed(2)}x`, r >= goal, command, goal);
  };
  const p99 = (name, row, goal, command) => push(name, row?.c ?? C, `<= ${goal} ms`, row ? `${row.p99.toFixed(1)} ms` : null, row?.p99 <= goal, command, goal);

  ratio('client_credentials, one client: Tessera / oidc-provider tokens/s', 'cc-one', undefined, 'peer', 3.0, cmd('cc-one'));
  ratio('client_credentials, one client: Tessera / reference ceiling tokens/s', 'cc-one', undefined, 'ceiling', 0.9, cmd('cc-one'));
  p99('client_credentials, one client: Tessera p99', find('cc-one', 'tessera', undefined, C), 10, cmd('cc-one'));

  const popC = opts.popConnections ?? C;
  const one = find('cc-one', 'tessera', undefined, popC);
  const popCmd = (n) => `npm run bench -- --scenarios cc-one,cc-pop --connections ${popC} --pop-clients ${n}`;
  for (const [n, goal, p99Goal] of [
    [100_000, 0.8, 15],
    [1_000_000, 0.6, null],
  ]) {
    const row = find('cc-pop', 'tessera', `clients-${n}`, popC);
    const r = row && one ? row.rps / one.rps : null;
    push(
      `client_credentials, ${n.toLocaleString('en-US')} distinct clients: tokens/s / one-client tokens/s`,
      popC,
      `>= ${goal}x`,
      r === null ? null : `${r.toFixed(2)}x`,
      r >= goal,
      popCmd(n),
      goal,
    );
    if (p99Goal) p99(`client_credentials, ${n.toLocaleString('en-US')} distinct clients: Tessera p99`, row, p99Goal, popCmd(n));
  }
  const pop = extra.population;
  const big = pop && pop.keys >= 1_000_000;
  const rssMb = 400;
  const coldSeconds = 10;
  push(
    'client_credentials, 1,000,000 clients: Tessera RSS at the end',
    popC,
    `<= ${rssMb} MB`,
    big && pop.rssEndBytes ? `${Math.round(pop.rssEndBytes / 2 ** 20)} MB` : null,
    pop?.rssEndBytes <= rssMb * 2 ** 20,
    popCmd(1_000_000),
    rssMb,
  );
  push(
    'cold start with 1,000,000 SDK keys to /readyz',
    '-',
    `<= ${coldSeconds} s`,
    big && pop.coldStartSeconds ? `${pop.coldStartSeconds.toFixed(1)} s` : null,
    pop?.coldStartSeconds <= coldSeconds,
    popCmd(1_000_000),
    coldSeconds,
  );

  for (const [variant, what] of [
    [undefined, 'JWT'],
    ['session', 'session token'],
  ]) {
    ratio(`/gateway/verify (${what}): Tessera / oidc-provider introspection req/s`, 'verify', variant, 'peer', 4.0, cmd('verify'));
    p99(`/gateway/verify (${what}): Tessera p99`, find('verify', 'tessera', variant, C), 5, cmd('verify'));
  }
  // The revocation flow: each verification with and without it, same run.
  const rate = opts.revocationsPerSecond ?? 0;
  const flowRatio = 0.9;
  // The same source as this run: the other one measures something else (see bench/README.md).
  const flowCmd = `${cmd('verify')} --revocations-per-second ${rate || 1000}${opts.revocationSource === 'http' ? ' --revocation-source http' : ''}`;
  for (const [server, what] of [
    ['tessera', '/gateway/verify (JWT)'],
    ['local', "local verification (createVerifier, revocations: 'stream')"],
  ]) {
    const off = find('verify', server, undefined, C);
    const on = find('verify', server, 'revoking', C);
    const r = off && on ? on.rps / off.rps : null;
    const achieved = on?.revocationsPerSec ?? null;
    push(
      `${what}: req/s with ${(rate || 1000).toLocaleString('en-US')} revocations/s flowing / without (same run)`,
      C,
      `>= ${flowRatio}x (unchanged within noise), the flow at >= 95% of its rate`,
      r === null ? null : `${r.toFixed(2)}x at ${Math.round(achieved ?? 0).toLocaleString('en-US')} revocations/s`,
      r >= flowRatio && achieved >= 0.95 * rate,
      flowCmd,
      flowRatio,
    );
  }
  ratio('DPoP issuance: DPoP-bound / Bearer tokens/s (same run)', 'dpop-token', 'dpop', 'tessera', 0.6, cmd('dpop-token'));
  ratio('DPoP verification at /gateway/verify: DPoP / Bearer req/s (same run)', 'dpop-verify', 'dpop', 'tessera', 0.6, cmd('dpop-verify'));
  const l = find('login', 'tessera', undefined, C);
  const loginPairs = 2500;
  push(
    'loginWithToken + logout: pairs/s (durable)',
    C,
    `>= ${loginPairs.toLocaleString('en-US')} pairs/s`,
    l ? `${Math.round(l.pairsPerSec).toLocaleString('en-US')} pairs/s` : null,
    l?.pairsPerSec >= loginPairs,
    cmd('login'),
    loginPairs,
  );
  return out;
}
