// Signing-key lifecycle: scheduled rotation across two instances under a caching verifier,
// revocation, the admin API, concurrency, algorithms, readiness and metrics.
import t from 'tap';
import type { FastifyInstance } from 'fastify';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose';
import { bearer, harness, type TestClock, type Harness } from './support/helper.js';
import { SigningKeyLifecycle } from '../src/signing-keys/rotation.js';
import { basic, createSdkKey, getToken, headerOf, oauthPost, type SdkKey } from './support/oauth-helper.js';

/**
 * A resource server as deployed: fetches the JWKS over HTTP, caches it for the Cache-Control max-age
 * (by the test clock), and never refetches early, not even on an unknown kid (the strictest verifier).
 */
class CachingVerifier {
  private cache: { jwks: JSONWebKeySet; until: number } | null = null;
  fetches = 0;
  constructor(
    private readonly url: string,
    private readonly clock: TestClock,
    private readonly issuer: string,
  ) {}

  async verify(token: string): Promise<void> {
    if (!this.cache || this.clock.now() >= this.cache.until) {
      const res = await fetch(this.url);
      if (res.status !== 200) throw new Error(`jwks ${res.status}`);
      const maxAge = Number(/max-age=(\d+)/.exec(res.headers.get('cache-control') ?? '')?.[1]);
      if (!(maxAge > 0)) throw new Error('no max-age');
      this.cache = { jwks: (await res.json()) as JSONWebKeySet, until: this.clock.now() + maxAge * 1000 };
      this.fetches++;
    }
    await jwtVerify(token, createLocalJWKSet(this.cache.jwks), {
      issuer: this.issuer,
      audience: this.issuer,
      typ: 'at+jwt',
      currentDate: new Date(this.clock.now()),
      clockTolerance: 30,
    });
  }
}

async function until(what: string, fn: () => Promise<boolean> | boolean, ms = 1000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const states = async (h: Harness) =>
  Object.fromEntries((await h.db.selectFrom('signing_keys').select(['kid', 'state']).execute()).map((r) => [r.kid, r.state]));

const activeCount = async (h: Harness) => (await h.db.selectFrom('signing_keys').select('kid').where('state', '=', 'active').execute()).length;

const ENV = {
  TESSERA_KEY_ROTATION_PERIOD: '2h',
  TESSERA_KEY_PREPUBLISH: '30m',
  TESSERA_JWKS_MAX_AGE: '5m',
  TESSERA_ACCESS_TOKEN_TTL: '20m',
  // The timer never fires during the test: the test runs the job itself, as the timer would.
  TESSERA_KEY_CHECK_INTERVAL: '10m',
};

t.test('scheduled rotation on two instances: zero failed verifications through next -> active -> retired -> removed', async (t) => {
  const h = await harness(t, { env: ENV });
  const b = await h.instance({ env: ENV });
  await h.app.listen({ port: 0, host: '127.0.0.1' });
  await b.listen({ port: 0, host: '127.0.0.1' });
  const urlOf = (app: FastifyInstance) => `http://127.0.0.1:${(app.server.address() as { port: number }).port}/.well-known/jwks.json`;
  const verifiers = [new CachingVerifier(urlOf(h.app), h.clock, h.config.issuer), new CachingVerifier(urlOf(b), h.clock, h.config.issuer)];
  const key: SdkKey = await createSdkKey(h, await h.user());
  const instances = [h.app, b];

  const k0 = h.app.oauth.keys.signingKey().kid;
  const seen: Record<string, Set<string>> = {};
  const note = (s: Record<string, string>) => {
    for (const [kid, state] of Object.entries(s)) (seen[kid] ??= new Set()).add(state);
    for (const kid of Object.keys(seen)) if (!(kid in s)) seen[kid]!.add('removed');
  };
  const live: Array<{ token: string; exp: number; kid: string }> = [];
  let verified = 0;
  const failures: string[] = [];
  const signedBy = new Map<string, number>();

  for (let step = 0; step < 85; step++) {
    h.clock.advance(120);
    // Each instance runs the job in turn, as their timers would; the lock makes one of them act.
    const runner = instances[step % 2]!;
    const other = instances[(step + 1) % 2]!;
    const changed = await runner.keyRotation.runOnce();
    if (changed.length) {
      t.equal(await activeCount(h), 1, `exactly one active key after step ${step}`);
      await until('the other instance follows', () => other.oauth.keys.jwks().etag === runner.oauth.keys.jwks().etag);
    }
    note(await states(h));
    // Clients get tokens from both instances.
    for (const app of instances) {
      const token = await getToken({ inject: (o) => app.inject(o) }, key);
      const kid = headerOf(token).kid as string;
      signedBy.set(kid, (signedBy.get(kid) ?? 0) + 1);
      live.push({ token, kid, exp: h.clock.now() + 20 * 60_000 });
    }
    // Every unexpired token verifies with both caching verifiers, and at the other instance's gateway.
    while (live.length && live[0]!.exp <= h.clock.now()) live.shift();
    for (const { token, kid } of live) {
      for (const [i, v] of verifiers.entries()) {
        try {
          await v.verify(token);
          verified++;
        } catch (err) {
          failures.push(`step ${step} verifier ${i} kid ${kid}: ${(err as Error).message}`);
        }
      }
    }
    const sample = live[0]!;
    const gw = await other.inject({ method: 'GET', url: '/gateway/verify', headers: bearer(sample.token) });
    if (gw.statusCode !== 200) failures.push(`step ${step} gateway ${gw.statusCode} kid ${sample.kid}`);
  }
  t.same(failures, [], 'zero failed verifications');
  t.ok(verified > 2000, `${verified} verifications`);
  t.ok(
    verifiers.every((v) => v.fetches > 10),
    'the verifiers refetched the JWKS as their cache expired',
  );
  const [k1] = Object.keys(seen).filter((k) => k !== k0);
  t.ok(k1, 'a new key was made');
  t.same([...seen[k0]!], ['active', 'retired', 'removed'], 'the old key went active -> retired -> removed');
  t.same([...seen[k1!]!], ['next', 'active'], 'the new key went next -> active');
  t.ok((signedBy.get(k0) ?? 0) > 0 && (signedBy.get(k1!) ?? 0) > 0, 'tokens from both keys were verified');
  t.same(await states(h), { [k1!]: 'active' });

  // The audit trail tells the story, by the system actor.
  const audit = await h.db
    .selectFrom('audit_events')
    .select(['action', 'target_id', 'actor_credential'])
    .where('target_type', '=', 'signing_key')
    .orderBy('id')
    .execute();
  t.same(audit, [
    { action: 'signing_key.create', target_id: k0, actor_credential: 'system' }, // the first start's key
    { action: 'signing_key.create', target_id: k1, actor_credential: 'system' },
    { action: 'signing_key.activate', target_id: k1, actor_credential: 'system' },
    { action: 'signing_key.remove', target_id: k0, actor_credential: 'system' },
  ]);
  // Metrics: counted by whichever instance acted.
  const text = (await h.app.inject({ method: 'GET', url: '/metrics' })).body + (await b.inject({ method: 'GET', url: '/metrics' })).body;
  t.match(text, /tessera_signing_key_rotations_total\{kind="scheduled",service="tessera"\} 1/);
  t.match(text, /tessera_signing_keys\{state="active",service="tessera"\} 1/);
});

t.test('revoking the active key: a new key signs at once, its tokens are rejected on both instances within a second', async (t) => {
  const h = await harness(t);
  const b = await h.instance();
  const ops = await h.user();
  const admin = await h.apiToken(ops, ['admin']);
  const key = await createSdkKey(h, await h.user());
  const fromA = await getToken(h, key);
  const fromB = await getToken({ inject: (o) => b.inject(o) }, key);
  const kid = headerOf(fromA).kid as string;
  t.equal(headerOf(fromB).kid, kid);
  const auth = { authorization: basic(key.client_id, key.client_secret) };

  const res = await h.inject({ method: 'POST', url: `/admin/keys/${kid}/revoke`, headers: bearer(admin) });
  t.equal(res.statusCode, 200, res.body);
  const body = res.json();
  t.match(body, { key: { kid, state: 'revoked', published: false }, replacement: { state: 'active', published: true } });
  t.ok(body.key.revoked_at && body.key.remove_after);
  t.equal(await activeCount(h), 1);

  for (const app of [h.app, b]) {
    await until('tokens of the revoked key rejected', async () => {
      for (const token of [fromA, fromB]) {
        const intro = await oauthPost({ inject: (o) => app.inject(o) }, '/oauth/introspect', { token }, auth);
        if (intro.json().active !== false) return false;
        const gw = await app.inject({ method: 'GET', url: '/gateway/verify', headers: bearer(token) });
        if (gw.statusCode !== 401) return false;
      }
      return true;
    });
    const jwks = (await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })).json();
    t.same(
      jwks.keys.map((k: { kid: string }) => k.kid),
      [body.replacement.kid],
      'unpublished, the replacement published',
    );
    // Issuance never stopped: the replacement signs, and its tokens verify.
    await until('the replacement signs', () => app.oauth.keys.signingKey().kid === body.replacement.kid);
    const fresh = await getToken({ inject: (o) => app.inject(o) }, key);
    t.equal(headerOf(fresh).kid, body.replacement.kid);
    t.equal((await app.inject({ method: 'GET', url: '/gateway/verify', headers: bearer(fresh) })).statusCode, 200);
  }

  const again = await h.inject({ method: 'POST', url: `/admin/keys/${kid}/revoke`, headers: bearer(admin) });
  t.equal(again.statusCode, 409);
  t.same(again.json(), { error: 'conflict', message: `signing key ${kid} is already revoked` });
  const unknown = await h.inject({ method: 'POST', url: '/admin/keys/nope/revoke', headers: bearer(admin) });
  t.equal(unknown.statusCode, 404);
  t.same(unknown.json(), { error: 'not_found', message: 'signing key not found' });

  const audit = await h.db.selectFrom('audit_events').selectAll().where('action', '=', 'signing_key.revoke').execute();
  t.equal(audit.length, 1);
  t.match(audit[0], { target_id: kid, actor_user_id: ops.id, details: { previous_state: 'active', replacement_kid: body.replacement.kid } });
});

t.test('admin API: list, rotate (pre-published), rotate immediate (warning), revoke a next key, scopes', async (t) => {
  const h = await harness(t);
  const ops = await h.user();
  const admin = await h.apiToken(ops, ['admin']);
  const plain = await h.apiToken(await h.user(), ['api']);
  for (const [method, url] of [
    ['GET', '/admin/keys'],
    ['POST', '/admin/keys/rotate'],
    ['POST', '/admin/keys/x/revoke'],
  ] as const) {
    const r = await h.inject({ method, url, headers: bearer(plain) });
    t.equal(r.statusCode, 403, `${method} ${url} needs admin`);
    t.equal((await h.inject({ method, url })).statusCode, 401);
  }

  const list = await h.inject({ method: 'GET', url: '/admin/keys', headers: bearer(admin) });
  t.equal(list.statusCode, 200);
  const k0 = h.app.oauth.keys.signingKey().kid;
  t.match(list.json(), {
    keys: [{ kid: k0, alg: 'EdDSA', state: 'active', published: true, retired_at: null, revoked_at: null, remove_after: null }],
    rotation: { signing_alg: 'EdDSA', period_seconds: 30 * 86400, prepublish_seconds: 3600, jwks_max_age_seconds: 300 },
  });
  t.notMatch(list.body, /ciphertext|"d"|private/, 'no private material');

  // Rotate: a next key, published now, signing after the pre-publication window.
  const r1 = await h.inject({ method: 'POST', url: '/admin/keys/rotate', headers: bearer(admin) });
  t.equal(r1.statusCode, 200, r1.body);
  const next = r1.json();
  t.match(next, { outcome: 'scheduled', key: { state: 'next', published: true }, retired_kid: null });
  t.notOk('warning' in next);
  t.equal(new Date(next.key.activate_after).getTime(), h.clock.now() + 3600_000);
  t.equal(h.app.oauth.keys.jwks().body.keys.length, 2, 'published at once');
  t.equal(h.app.oauth.keys.signingKey().kid, k0, 'not signing yet');
  const r2 = await h.inject({ method: 'POST', url: '/admin/keys/rotate', headers: bearer(admin), payload: {} });
  t.match(r2.json(), { outcome: 'already_scheduled', key: { kid: next.key.kid } });
  t.equal((await h.inject({ method: 'GET', url: '/admin/keys', headers: bearer(admin) })).json().rotation.next_rotation_at, next.key.activate_after);

  // The job leaves it alone until its window is over, then promotes it.
  h.clock.advance(3599);
  t.same(await h.app.keyRotation.runOnce(), []);
  h.clock.advance(1);
  t.same(
    (await h.app.keyRotation.runOnce()).map((e) => e.event),
    ['retired', 'activated'],
  );
  t.equal(h.app.oauth.keys.signingKey().kid, next.key.kid);

  // Immediate: signs at once, with a warning.
  const r3 = await h.inject({ method: 'POST', url: '/admin/keys/rotate', headers: bearer(admin), payload: { immediate: true } });
  t.equal(r3.statusCode, 200, r3.body);
  const imm = r3.json();
  t.match(imm, { outcome: 'activated', key: { state: 'active' }, retired_kid: next.key.kid, warning: /verifiers .* cached .* reject/ });
  t.equal(h.app.oauth.keys.signingKey().kid, imm.key.kid);
  t.equal(await activeCount(h), 1);
  const bad = await h.inject({ method: 'POST', url: '/admin/keys/rotate', headers: bearer(admin), payload: { immediate: 'yes' } });
  t.equal(bad.statusCode, 400);

  // Revoking a next key: unpublished, nothing else changes.
  const r4 = (await h.inject({ method: 'POST', url: '/admin/keys/rotate', headers: bearer(admin) })).json();
  const rv = await h.inject({ method: 'POST', url: `/admin/keys/${r4.key.kid}/revoke`, headers: bearer(admin) });
  t.match(rv.json(), { key: { kid: r4.key.kid, state: 'revoked' }, replacement: null });
  t.equal(h.app.oauth.keys.signingKey().kid, imm.key.kid);

  const all = (await h.inject({ method: 'GET', url: '/admin/keys', headers: bearer(admin) })).json().keys;
  t.same(
    all.map((k: { state: string }) => k.state),
    ['retired', 'retired', 'active', 'revoked'],
  );

  const actions = await h.db.selectFrom('audit_events').select(['action', 'actor_user_id']).where('target_type', '=', 'signing_key').orderBy('id').execute();
  t.same(
    actions.map((a) => a.action),
    [
      'signing_key.create', // the first start's key
      'signing_key.create', // manual, next
      'signing_key.activate', // scheduled promotion
      'signing_key.create', // immediate
      'signing_key.activate',
      'signing_key.create', // manual
      'signing_key.revoke',
    ],
  );
  t.same(
    actions.map((a) => a.actor_user_id),
    [null, ops.id, null, ops.id, ops.id, ops.id, ops.id],
    'the operator, but the start and the job',
  );
});

t.test('concurrent rotations on two instances make one new key', async (t) => {
  const h = await harness(t);
  const b = await h.instance();
  const admin = await h.apiToken(await h.user(), ['admin']);
  for (const immediate of [true, false]) {
    const before = Object.keys(await states(h)).length;
    // The operator saw this key active; every racing request rotates away from it, however the
    // requests happen to be scheduled (without the precondition a request that starts after another
    // finished is simply a second rotation).
    const seen = (await h.db.selectFrom('signing_keys').select('kid').where('state', '=', 'active').executeTakeFirstOrThrow()).kid;
    const answers = await Promise.all(
      [h.app, b, h.app, b].map((app) =>
        app.inject({ method: 'POST', url: '/admin/keys/rotate', headers: bearer(admin), payload: { immediate, if_active_kid: seen } }),
      ),
    );
    t.ok(answers.every((a) => a.statusCode === 200));
    const kids = new Set(answers.map((a) => a.json().key.kid));
    t.equal(kids.size, 1, `immediate=${immediate}: every answer names the same key`);
    t.equal(Object.keys(await states(h)).length, before + 1, `immediate=${immediate}: one new key`);
    t.equal(await activeCount(h), 1);
    if (immediate) {
      t.equal(answers.filter((a) => a.json().outcome === 'activated').length, 1, 'one rotation won');
      t.ok(answers.filter((a) => a.json().outcome !== 'activated').every((a) => a.json().outcome === 'concurrent'));
    }
  }
  // And through the lifecycle directly, racing with the scheduled job.
  const seen = (await h.db.selectFrom('signing_keys').select('kid').where('state', '=', 'active').executeTakeFirstOrThrow()).kid;
  const admins = await Promise.all([
    h.app.keyRotation.lifecycle.rotate({ userId: null, credential: 'cli' }, { immediate: true, ifActiveKid: seen }),
    b.keyRotation.lifecycle.rotate({ userId: null, credential: 'cli' }, { immediate: true, ifActiveKid: seen }),
    h.app.keyRotation.runOnce(),
    b.keyRotation.runOnce(),
  ]);
  t.equal(new Set(admins.slice(0, 2).map((r) => (r as { key: { kid: string } }).key.kid)).size, 1);
  t.equal(await activeCount(h), 1);
});

t.test('TESSERA_SIGNING_ALG changes take effect at the next rotation; old keys keep verifying', async (t) => {
  const h = await harness(t);
  const key = await createSdkKey(h, await h.user());
  const before = await getToken(h, key);
  t.equal(headerOf(before).alg, 'EdDSA');
  const rs = await h.instance({ env: { TESSERA_SIGNING_ALG: 'RS256' } });
  t.equal(headerOf(await getToken({ inject: (o) => rs.inject(o) }, key)).alg, 'EdDSA', 'no change until a rotation');
  const r = await rs.keyRotation.lifecycle.rotate({ userId: null, credential: 'cli' }, { immediate: true });
  t.equal(r.key.alg, 'RS256');
  await until('the first instance follows', () => h.app.oauth.keys.signingKey().alg === 'RS256');
  const after = await getToken(h, key);
  t.equal(headerOf(after).alg, 'RS256');
  for (const token of [before, after]) {
    t.equal((await rs.inject({ method: 'GET', url: '/gateway/verify', headers: bearer(token) })).statusCode, 200);
  }
  const meta = (await h.inject({ method: 'GET', url: '/.well-known/oauth-authorization-server' })).json();
  t.same(meta.access_token_signing_alg_values_supported.sort(), ['EdDSA', 'RS256']);
});

t.test('/readyz fails when the signing keys cannot be loaded', async (t) => {
  const h = await harness(t);
  t.equal((await h.inject({ method: 'GET', url: '/readyz' })).statusCode, 200);
  // A new active key sealed under a master key this instance does not hold.
  const foreign = { ...h.config, masterKey: { id: 'ffffffffffffffff', key: Buffer.alloc(32, 7) } };
  await new SigningKeyLifecycle({ db: h.db, config: foreign, clock: h.clock, log: { info() {}, warn() {}, error() {} } }).rotate(
    { userId: null, credential: 'cli' },
    { immediate: true },
  );
  await h.app.oauth.keys.reload().catch(() => undefined);
  const res = await h.inject({ method: 'GET', url: '/readyz' });
  t.equal(res.statusCode, 503);
  t.match(res.json().checks, { signing_key_reload: /could not be reloaded/ });
});
