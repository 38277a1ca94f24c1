// The scenarios: for each, the servers it compares and the autocannon requests that load them.
// A target is { server, label, port, available (true or a reason), load(counters) -> requests[] }.

import { proofPool } from './dpop-proofs.mjs';

const FORM = 'application/x-www-form-urlencoded';
const RESOURCE = 'urn:bench:api';

export function basic(id, secret) {
  return 'Basic ' + Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64');
}

/** An autocannon `setupRequest` giving each request the next Authorization header of the list (one shared counter). */
export function roundRobinAuth(authHeaders) {
  let next = 0;
  return (req) => {
    const authorization = authHeaders[next];
    next = (next + 1) % authHeaders.length;
    return { ...req, headers: { ...req.headers, authorization } };
  };
}

/** One request shape; with several credentials, each request takes the next. */
function tokenRequests(path, authHeaders, body) {
  const base = { method: 'POST', path, headers: { 'content-type': FORM, authorization: authHeaders[0] }, body };
  if (authHeaders.length === 1) return [base];
  return [{ ...base, setupRequest: roundRobinAuth(authHeaders) }];
}

function unavailable(reason) {
  return reason === true ? true : `not available on this build (${reason})`;
}

/**
 * Builds every scenario from the fixtures. `fx.tessera.avail.<feature>` is true or the reason the
 * feature is missing (its probe answered 404).
 */
export function buildScenarios(fx) {
  const { ports, tessera: t, peer, ceiling } = fx;
  const many = fx.clients.length;
  const peerAuth = fx.clients.map(([id, secret]) => basic(id, secret));
  const tesseraAuth = t.manyKeys?.map((k) => basic(k.client_id, k.client_secret)) ?? [];
  const tesseraOne = t.oneKey ? [basic(t.oneKey.client_id, t.oneKey.client_secret)] : [];

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
      {
        server: 'ceiling',
        label: 'reference POST /token',
        port: ports.ceiling,
        available: true,
        load: () => tokenRequests('/token', peerHeaders, 'grant_type=client_credentials'),
      },
    ],
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
        load: (counters) => [
          {
            ...tokenRequests('/oauth/token', tesseraOne, 'grant_type=client_credentials')[0],
            setupRequest: proofPool(t.dpopKey, 'POST', `${issuer}/oauth/token`, undefined, counters.seconds, 8000),
          },
        ],
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
        load: (counters) => [
          {
            method: 'GET',
            path: '/gateway/verify',
            headers: { authorization: `DPoP ${t.dpopJwt}` },
            setupRequest: proofPool(t.dpopKey, 'GET', `${issuer}/gateway/verify`, t.dpopJwt, counters.seconds, 15000),
          },
        ],
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

/** The targets, judged on the medians. `find(scenario, server, variant, c)` -> row or null. */
export function judgeTargets(find, connections) {
  const out = [];
  const ratio = (name, scenario, variant, versus, goal, c, unit = 'rps') => {
    const a = find(scenario, 'tessera', variant, c);
    const b = find(scenario, versus, undefined, c);
    if (!a || !b) return out.push({ name, c, goal: `>= ${goal}x`, measured: null, status: 'n/a' });
    const r = a[unit] / b[unit];
    out.push({ name, c, goal: `>= ${goal}x`, measured: `${r.toFixed(2)}x`, status: r >= goal ? 'met' : 'not met' });
  };
  const p99 = (name, scenario, variant, goal, c) => {
    const a = find(scenario, 'tessera', variant, c);
    if (!a) return out.push({ name, c, goal: `<= ${goal} ms`, measured: null, status: 'n/a' });
    out.push({ name, c, goal: `<= ${goal} ms`, measured: `${a.p99.toFixed(1)} ms`, status: a.p99 <= goal ? 'met' : 'not met' });
  };
  for (const c of connections) {
    for (const [sc, what] of [
      ['cc-one', 'one client'],
      ['cc-many', 'many clients'],
    ]) {
      ratio(`client_credentials (${what}): Tessera / oidc-provider tokens/s`, sc, undefined, 'peer', 2.0, c);
      ratio(`client_credentials (${what}): Tessera / reference ceiling tokens/s`, sc, undefined, 'ceiling', 0.85, c);
      if (c === 50) p99(`client_credentials (${what}): Tessera p99 at concurrency 50`, sc, undefined, 15, c);
    }
    for (const [variant, what] of [
      [undefined, 'JWT'],
      ['session', 'session token'],
    ]) {
      ratio(`/gateway/verify (${what}): Tessera / oidc-provider introspection req/s`, 'verify', variant, 'peer', 2.0, c);
      if (c === 50) p99(`/gateway/verify (${what}): Tessera p99 at concurrency 50`, 'verify', variant, 10, c);
    }
    ratio('DPoP issuance: DPoP-bound / Bearer tokens/s (same run)', 'dpop-token', 'dpop', 'tessera', 0.6, c);
    ratio('DPoP verification at /gateway/verify: DPoP / Bearer req/s (same run)', 'dpop-verify', 'dpop', 'tessera', 0.6, c);
    const l = find('login', 'tessera', undefined, c);
    out.push({
      name: 'loginWithToken + logout: pairs/s',
      c,
      goal: '>= 1,000 pairs/s',
      measured: l ? `${Math.round(l.pairsPerSec).toLocaleString('en-US')} pairs/s` : null,
      status: l ? (l.pairsPerSec >= 1000 ? 'met' : 'not met') : 'n/a',
    });
  }
  return out;
}
