import t from 'tap';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { verifyClientCredentials, extractClientCredentials, type ClientAuthDeps } from '../src/oauth/client-auth.js';
import type { ClientEntry } from '../src/oauth/client-cache.js';
import { OAuthError } from '../src/platform/errors/oauth-error.js';

const pepper = Buffer.alloc(32, 1);
const hash = (s: string) => createHmac('sha256', pepper).update(s).digest();
const clientId = 's_11111111-1111-4111-8111-111111111111';
const entry: ClientEntry = {
  id: 'x',
  clientId,
  userId: 'u',
  secretHash: hash('right'),
  scopes: ['api'],
  status: 'enabled',
  userStatus: 'active',
  tokensValidAfterMs: 0,
  expiresAtMs: null,
  organizationId: null,
  organizationBindingValid: true,
  publicJwk: null,
  dpopBound: false,
};

function counting(lookup: ClientAuthDeps['lookup']) {
  const calls = { lookup: 0, hash: 0, compare: 0, compared: [] as Buffer[] };
  const deps: ClientAuthDeps = {
    lookup: (id) => {
      calls.lookup++;
      return lookup(id);
    },
    hash: (s) => {
      calls.hash++;
      return hash(s);
    },
    compare: (a, b) => {
      calls.compare++;
      calls.compared.push(b);
      return a.length === b.length && timingSafeEqual(a, b);
    },
  };
  return { deps, calls };
}

async function failure(p: Promise<unknown>): Promise<OAuthError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof OAuthError) return err;
    throw err;
  }
  throw new Error('expected a failure');
}

t.test('unknown and wrong clients do the same work (one lookup, one HMAC, two compares) and fail alike', async (t) => {
  const unknown = counting(() => null);
  const e1 = await failure(verifyClientCredentials({ method: 'client_secret_basic', clientId, secret: 'guess' }, unknown.deps));
  const wrong = counting(() => entry);
  const e2 = await failure(verifyClientCredentials({ method: 'client_secret_basic', clientId, secret: 'guess' }, wrong.deps));
  const disabled = counting(() => ({ ...entry, status: 'disabled' }));
  const e3 = await failure(verifyClientCredentials({ method: 'client_secret_basic', clientId, secret: 'right' }, disabled.deps));
  for (const c of [unknown.calls, wrong.calls, disabled.calls]) {
    t.equal(c.lookup, 1);
    t.equal(c.hash, 1);
    t.equal(c.compare, 2, 'the current and the previous secret are always both compared');
    t.equal(c.compared[0]!.length, 32, 'compared against 32 bytes either way (a dummy hash for unknown clients)');
    t.equal(c.compared[1]!.length, 32, 'and against a dummy in place of a previous secret that is not there');
  }
  for (const e of [e2, e3]) {
    t.equal(e.statusCode, e1.statusCode);
    t.equal(e.error, e1.error);
    t.equal(e.description, e1.description);
    t.same(e.headers, e1.headers);
  }
  t.equal(e1.statusCode, 401);
  t.equal(e1.error, 'invalid_client');

  // A client id that cannot be ours skips the lookup but still hashes and compares.
  const odd = counting(() => entry);
  await failure(verifyClientCredentials({ method: 'client_secret_post', clientId: 'admin', secret: 'x' }, odd.deps));
  t.same([odd.calls.lookup, odd.calls.hash, odd.calls.compare], [0, 1, 2]);

  const good = counting(() => entry);
  const ok = await verifyClientCredentials({ method: 'client_secret_post', clientId, secret: 'right' }, good.deps);
  t.equal(ok.clientId, clientId);
  t.same([good.calls.hash, good.calls.compare], [1, 2]);

  // During a rotation's overlap the previous secret authenticates too, after the same work.
  const rotated = counting(() => ({ ...entry, secretHash: hash('new'), previousSecretHash: hash('right'), previousSecretExpiresAtMs: Date.now() + 60_000 }));
  t.equal((await verifyClientCredentials({ method: 'client_secret_post', clientId, secret: 'right' }, rotated.deps)).clientId, clientId);
  t.equal((await verifyClientCredentials({ method: 'client_secret_post', clientId, secret: 'new' }, rotated.deps)).clientId, clientId);
  t.equal((await failure(verifyClientCredentials({ method: 'client_secret_post', clientId, secret: 'guess' }, rotated.deps))).error, 'invalid_client');
  t.same([rotated.calls.hash, rotated.calls.compare], [3, 6], 'two compares whichever secret matched, or none');
});

function errorOf(fn: () => unknown): string | null {
  try {
    fn();
    return null;
  } catch (err) {
    return err instanceof OAuthError ? err.error : String(err);
  }
}

t.test('credential extraction: Basic is form-urlencoded inside base64; two methods refused', async (t) => {
  const enc = (id: string, s: string) => `Basic ${Buffer.from(`${id}:${s}`).toString('base64')}`;
  t.same(extractClientCredentials(enc('a%3Ab', 'p%2Bq+r'), {}), { method: 'client_secret_basic', clientId: 'a:b', secret: 'p+q r' });
  t.same(extractClientCredentials(undefined, { client_id: 'a', client_secret: 'b' }), { method: 'client_secret_post', clientId: 'a', secret: 'b' });
  t.equal(extractClientCredentials(undefined, {}), null);
  t.equal(
    errorOf(() => extractClientCredentials(enc('a', 'b'), { client_secret: 'b' })),
    'invalid_request',
  );
  t.equal(
    errorOf(() => extractClientCredentials(enc('a', 'b'), { client_id: 'c' })),
    'invalid_request',
  );
  t.equal(
    errorOf(() => extractClientCredentials(enc('a', '%zz'), {})),
    'invalid_client',
  );
  t.equal(
    errorOf(() => extractClientCredentials('Basic bm9jb2xvbg==', {})),
    'invalid_client',
  );
  t.equal(
    errorOf(() => extractClientCredentials(undefined, { client_id: 'a' })),
    'invalid_client',
  );
});
