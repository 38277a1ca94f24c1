// Per-key audiences: an SDK key may be limited to some of the resource servers the operator
// allows (TESSERA_AUDIENCES); a token request for another one gets invalid_target (RFC 8707).
import t from 'tap';
import { bearer, harness, type Harness } from './support/helper.js';
import { basic, claimsOf, oauthPost, type SdkKey } from './support/oauth-helper.js';

const QPU = 'https://qpu.example.com';
const BACKEND = 'https://backend.example.com';
const OTHER = 'https://other.example';

async function owner(h: Harness): Promise<string> {
  return h.apiToken(await h.user(), ['api', 'quantum_tokens']);
}

const create = (h: Harness, token: string, body: Record<string, unknown>) =>
  h.inject({ method: 'POST', url: '/api/sdk-keys', headers: bearer(token), payload: { name: 'k', ...body } });

const tokenFor = (h: Harness, key: SdkKey, params: Record<string, string>) =>
  oauthPost(h, '/oauth/token', { grant_type: 'client_credentials', ...params }, { authorization: basic(key.client_id, key.client_secret) });

t.test('a key with audiences gets tokens for those and the issuer; others are invalid_target', async (t) => {
  const h = await harness(t);
  const tok = await owner(h);
  const res = await create(h, tok, { audiences: [QPU, BACKEND] });
  t.equal(res.statusCode, 201);
  const key: SdkKey = res.json();
  t.same(res.json().audiences, [QPU, BACKEND], 'shown in the representation');

  for (const [params, aud] of [
    [{ resource: QPU }, QPU],
    [{ audience: BACKEND }, BACKEND],
    [{}, h.config.issuer],
  ] as const) {
    const r = await tokenFor(h, key, params);
    t.equal(r.statusCode, 200, `${JSON.stringify(params)}: 200`);
    t.equal(claimsOf(r.json().access_token).aud, aud);
  }
  const refused = await tokenFor(h, key, { resource: OTHER });
  t.equal(refused.statusCode, 400);
  t.equal(refused.json().error, 'invalid_target', 'allowed by the operator but not by the key: invalid_target');
  t.type(refused.json().error_description, 'string');

  // Narrowing by PATCH takes effect at once; null lifts the restriction.
  const patched = await h.inject({ method: 'PATCH', url: `/api/sdk-keys/${key.client_id}`, headers: bearer(tok), payload: { audiences: [BACKEND] } });
  t.equal(patched.statusCode, 200);
  t.same(patched.json().audiences, [BACKEND]);
  t.equal((await tokenFor(h, key, { resource: QPU })).json().error, 'invalid_target', 'narrowed at once');
  t.equal((await tokenFor(h, key, { resource: BACKEND })).statusCode, 200);
  const lifted = await h.inject({ method: 'PATCH', url: `/api/sdk-keys/${key.client_id}`, headers: bearer(tok), payload: { audiences: null } });
  t.equal(lifted.json().audiences, null);
  t.equal((await tokenFor(h, key, { resource: OTHER })).statusCode, 200, 'without a list, anything the operator allows');

  const audit = await h.db.selectFrom('audit_events').select(['action', 'details']).where('target_id', '=', key.client_id).orderBy('id').execute();
  t.same(
    audit.map((a) => a.action),
    ['sdk_key.create', 'sdk_key.audiences', 'sdk_key.audiences'],
  );
  t.same(audit[1]!.details, { from: [QPU, BACKEND], to: [BACKEND] });
});

t.test('a key without audiences behaves as before; an empty list allows only the issuer', async (t) => {
  const h = await harness(t);
  const tok = await owner(h);
  const plain: SdkKey = (await create(h, tok, {})).json();
  t.equal((plain as unknown as { audiences: unknown }).audiences, null);
  t.equal((await tokenFor(h, plain, { resource: OTHER })).statusCode, 200);
  t.equal((await tokenFor(h, plain, { resource: 'https://not-allowed.example' })).json().error, 'invalid_target', 'the operator list still holds');

  const only: SdkKey = (await create(h, tok, { audiences: [] })).json();
  t.equal((await tokenFor(h, only, {})).statusCode, 200, 'the issuer is always allowed');
  t.equal((await tokenFor(h, only, { resource: QPU })).json().error, 'invalid_target');
});

t.test('audiences outside the operator list, and hostile lists, are 400 {error, message}', async (t) => {
  const h = await harness(t);
  const tok = await owner(h);
  const withIssuer = await create(h, tok, { audiences: [h.config.issuer] });
  t.equal(withIssuer.statusCode, 201, 'the issuer is always allowed');
  const key = withIssuer.json();
  const bad: unknown[] = [
    ['https://not-allowed.example'],
    [QPU, 'https://evil.example'],
    [''],
    ['x'.repeat(3000)],
    [QPU, QPU],
    Array.from({ length: 21 }, (_, i) => `https://a${i}.example`),
    [42],
    [null],
    'https://qpu.example.com',
    { 0: QPU },
  ];
  for (const audiences of bad) {
    for (const res of [
      await create(h, tok, { audiences }),
      await h.inject({ method: 'PATCH', url: `/api/sdk-keys/${key.client_id}`, headers: bearer(tok), payload: { audiences } }),
    ]) {
      t.equal(res.statusCode, 400, `${JSON.stringify(audiences).slice(0, 60)}: 400`);
      t.type(res.json().error, 'string');
      t.type(res.json().message, 'string');
    }
  }
  const unknown = await create(h, tok, { audiences: [QPU, 'https://unknown.example'] });
  t.match(unknown.json().message, /https:\/\/unknown\.example/, 'names the refused audience');
  const keys = await h.inject({ method: 'GET', url: '/api/sdk-keys', headers: bearer(tok) });
  t.equal(keys.json().sdk_keys.length, 1, 'no refused request created a key');
  t.same(keys.json().sdk_keys[0].audiences, [h.config.issuer], 'nor changed one');
});

t.test('with TESSERA_AUDIENCES=* any audience may be listed', async (t) => {
  const h = await harness(t, { env: { TESSERA_AUDIENCES: '*' } });
  const tok = await owner(h);
  const res = await create(h, tok, { audiences: ['https://anything.example'] });
  t.equal(res.statusCode, 201);
  const key: SdkKey = res.json();
  t.equal((await tokenFor(h, key, { resource: 'https://anything.example' })).statusCode, 200);
  t.equal((await tokenFor(h, key, { resource: 'https://else.example' })).json().error, 'invalid_target', 'the key list still holds');
});
