import t from 'tap';
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import pino from 'pino';
import { bearer, harness, testConfig, type Harness, type TeardownHost } from './support/helper.js';
import { loadConfig, masterKeyFrom } from '../src/platform/config.js';
import { loggerOptions } from '../src/platform/log.js';
import { rewrapAll } from '../src/cli/rewrap.js';
import { providersFromEnv } from '../src/platform/provider-catalog.js';
import { ProviderRegistry } from '../src/provider-tokens/registry.js';

const IBM = 'ibmq-0123456789abcdef-SECRET-wxyz';
const IBM_ORG = 'ibmq-org-fedcba9876543210-ORGSECRET';

async function setup(t: TeardownHost, env: Record<string, string> = {}) {
  const h = await harness(t, { env });
  const alice = await h.user();
  const aliceToken = await h.apiToken(alice, ['api', 'quantum_tokens']);
  return { h, alice, aliceToken };
}

const put = (h: Harness, token: string, url: string, payload: unknown) =>
  h.inject({ method: 'PUT', url, headers: bearer(token), payload: payload as Record<string, unknown> });
const get = (h: Harness, token: string, url: string) => h.inject({ method: 'GET', url, headers: bearer(token) });

t.test('a user stores, lists, reads metadata of, resolves and deletes their own credential', async (t) => {
  const { h, aliceToken } = await setup(t);
  const created = await put(h, aliceToken, '/api/provider-tokens/ibm_quantum', {
    label: 'my IBM',
    credential: { token: IBM, instance: 'hub/group/project' },
  });
  t.equal(created.statusCode, 201);
  const meta = created.json();
  t.same(Object.keys(meta).sort(), ['created_at', 'hint', 'label', 'last_used_at', 'provider', 'updated_at', 'updated_by']);
  t.equal(meta.provider, 'ibm_quantum');
  t.equal(meta.label, 'my IBM');
  t.equal(meta.hint, '…wxyz');
  t.equal(meta.last_used_at, null);
  t.notMatch(created.body, /SECRET|hub\/group/, 'no secret nor other credential field in the response');

  const replaced = await put(h, aliceToken, '/api/provider-tokens/ibm_quantum', { credential: { token: 'short-token' } });
  t.equal(replaced.statusCode, 200, 'replacing answers 200');
  t.equal(replaced.json().hint, null, 'a short secret gets no hint');
  t.equal(replaced.json().label, null);

  const list = await get(h, aliceToken, '/api/provider-tokens');
  t.equal(list.statusCode, 200);
  t.equal(list.json().provider_tokens.length, 1);
  t.same(list.json().providers, ['ibm_quantum', 'ionq', 'aws_braket', 'azure_quantum', 'iqm']);
  t.notMatch(list.body, /short-token/);

  const one = await get(h, aliceToken, '/api/provider-tokens/ibm_quantum');
  t.equal(one.statusCode, 200);
  t.equal(one.json().provider, 'ibm_quantum');

  const resolved = await get(h, aliceToken, '/api/provider-tokens/ibm_quantum/resolve');
  t.equal(resolved.statusCode, 200);
  t.same(resolved.json().credential, { token: 'short-token' });
  t.equal(resolved.json().source, 'user');
  t.equal(resolved.json().organization_id, null);
  t.equal(resolved.headers['cache-control'], 'no-store');

  await h.app.usage.flush();
  const after = await get(h, aliceToken, '/api/provider-tokens/ibm_quantum');
  t.equal(after.json().last_used_at, new Date(h.clock.now()).toISOString(), 'resolution stamps last_used_at');

  const del = await h.inject({ method: 'DELETE', url: '/api/provider-tokens/ibm_quantum', headers: bearer(aliceToken) });
  t.equal(del.statusCode, 204);
  const gone = await get(h, aliceToken, '/api/provider-tokens/ibm_quantum');
  t.equal(gone.statusCode, 404);
  t.same(gone.json(), { error: 'not_found', message: 'ibm_quantum credential not found' });
  const delAgain = await h.inject({ method: 'DELETE', url: '/api/provider-tokens/ibm_quantum', headers: bearer(aliceToken) });
  t.equal(delAgain.statusCode, 404);
});

t.test('credentials are validated against the provider schema with messages that never echo values', async (t) => {
  const { h, aliceToken } = await setup(t);
  const secret = 'AWS-SECRET-do-not-echo-1234567890';
  const bad = await put(h, aliceToken, '/api/provider-tokens/aws_braket', {
    credential: { access_key_id: 'AKIAEXAMPLE1234567', secret_access_key: secret, region: 'Not A Region!', extra: 'EXTRA-VALUE' },
  });
  t.equal(bad.statusCode, 400);
  const body = bad.json();
  t.equal(body.error, 'invalid_request');
  t.match(body.message, /invalid aws_braket credential/);
  t.match(body.message, /credential\/region has the wrong format/);
  t.match(body.message, /credential\/extra is not a field of this provider/);
  t.notMatch(bad.body, /do-not-echo|EXTRA-VALUE|Not A Region|AKIAEXAMPLE/, 'no value sent is echoed');
  t.same(body.problems.map((p: { field: string }) => p.field).sort(), ['credential/extra', 'credential/region']);

  const missing = await put(h, aliceToken, '/api/provider-tokens/ionq', { credential: {} });
  t.equal(missing.statusCode, 400);
  t.same(missing.json().problems, [{ field: 'credential/api_key', message: 'is required' }]);

  const wrongType = await put(h, aliceToken, '/api/provider-tokens/ionq', { credential: { api_key: 12345 } });
  t.equal(wrongType.statusCode, 400);
  t.match(wrongType.json().message, /credential\/api_key must be string/);

  const noCredential = await put(h, aliceToken, '/api/provider-tokens/ionq', { label: 'x' });
  t.equal(noCredential.statusCode, 400);
  t.match(noCredential.json().message, /credential/);

  const unknownProvider = await put(h, aliceToken, '/api/provider-tokens/dwave', { credential: { token: 'x' } });
  t.equal(unknownProvider.statusCode, 404);
  t.match(unknownProvider.json().message, /provider dwave is not configured/);

  const badName = await put(h, aliceToken, '/api/provider-tokens/IBM%20Q', { credential: { token: 'x' } });
  t.equal(badName.statusCode, 400);

  const ok = await put(h, aliceToken, '/api/provider-tokens/aws_braket', {
    credential: { access_key_id: 'AKIAEXAMPLE1234567', secret_access_key: secret, region: 'us-east-1' },
  });
  t.equal(ok.statusCode, 201);
  t.equal(ok.json().hint, '…4567', 'the hint comes from the (non-secret) access key id');
  const count = await h.db
    .selectFrom('provider_tokens')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .executeTakeFirstOrThrow();
  t.equal(Number(count.n), 1, 'rejected writes stored nothing');
});

t.test('the table holds ciphertext only, sealed under the master key id, and a swapped row fails cleanly', async (t) => {
  const { h, alice, aliceToken } = await setup(t);
  const bob = await h.user();
  const bobToken = await h.apiToken(bob, ['api', 'quantum_tokens']);
  t.equal((await put(h, aliceToken, '/api/provider-tokens/ionq', { credential: { api_key: 'alice-ionq-key-0123456789' } })).statusCode, 201);
  t.equal((await put(h, bobToken, '/api/provider-tokens/ionq', { credential: { api_key: 'bob-ionq-key-9876543210' } })).statusCode, 201);
  t.equal((await put(h, aliceToken, '/api/provider-tokens/iqm', { credential: { token: 'alice-iqm-token-abcdefghij' } })).statusCode, 201);

  const rows = await h.db.selectFrom('provider_tokens').selectAll().execute();
  t.equal(rows.length, 3);
  for (const r of rows) {
    t.equal(r.key_id, h.config.masterKey.id, 'master key id recorded');
    const raw = r.ciphertext.toString('latin1');
    t.notMatch(raw, /alice|bob|ionq-key|iqm-token/, 'ciphertext does not contain the plaintext');
    t.ok(r.ciphertext.length >= 12 + 16 + 10, 'nonce + body + tag');
  }
  const nonces = new Set(rows.map((r) => r.ciphertext.subarray(0, 12).toString('hex')));
  t.equal(nonces.size, 3, 'a fresh nonce per record');
  // Nothing in the table mentions the secret in any column.
  const dump = JSON.stringify(await h.db.selectFrom('provider_tokens').selectAll().execute());
  t.notMatch(dump, /alice-ionq|bob-ionq|alice-iqm/);

  const aliceIonq = rows.find((r) => r.user_id === alice.id && r.provider === 'ionq')!;
  const bobIonq = rows.find((r) => r.user_id === bob.id)!;
  const aliceIqm = rows.find((r) => r.provider === 'iqm')!;
  // Swap Alice's and Bob's ciphertexts: each now lives under the wrong owner.
  await h.db.updateTable('provider_tokens').set({ ciphertext: bobIonq.ciphertext }).where('id', '=', aliceIonq.id).execute();
  await h.db.updateTable('provider_tokens').set({ ciphertext: aliceIonq.ciphertext }).where('id', '=', bobIonq.id).execute();
  // And Alice's IQM credential moved onto her IonQ... no: her IonQ ciphertext onto her IQM row (another provider).
  await h.db.updateTable('provider_tokens').set({ ciphertext: aliceIonq.ciphertext }).where('id', '=', aliceIqm.id).execute();

  for (const [token, provider] of [
    [aliceToken, 'ionq'],
    [bobToken, 'ionq'],
    [aliceToken, 'iqm'],
  ] as const) {
    const res = await get(h, token, `/api/provider-tokens/${provider}/resolve`);
    t.equal(res.statusCode, 500, `${provider}: swapped row does not open`);
    t.same(res.json(), {
      error: 'internal_error',
      message: `the stored ${provider} credential cannot be decrypted; an operator has been alerted (storing it again replaces it)`,
    });
    t.notMatch(res.body, /ionq-key|iqm-token|stack|aes|gcm/i);
  }
  const failures = await h.db.selectFrom('audit_events').selectAll().where('action', '=', 'provider_token.decrypt_failed').execute();
  t.equal(failures.length, 3, 'each failure is audited');

  // Storing it again repairs it.
  t.equal((await put(h, aliceToken, '/api/provider-tokens/ionq', { credential: { api_key: 'alice-new-key' } })).statusCode, 200);
  const fixed = await get(h, aliceToken, '/api/provider-tokens/ionq/resolve');
  t.equal(fixed.statusCode, 200);
  t.same(fixed.json().credential, { api_key: 'alice-new-key' });
});

t.test('resolution: own credential over the organization, member falls back to it, non-member 404', async (t) => {
  const { h, alice, aliceToken } = await setup(t);
  const bob = await h.user();
  const bobToken = await h.apiToken(bob, ['api', 'quantum_tokens']);
  const eve = await h.user();
  const eveToken = await h.apiToken(eve, ['api', 'quantum_tokens']);
  const org = await h.org('Lab', [
    [alice, 'owner'],
    [bob, 'member'],
  ]);

  t.equal(
    (await put(h, aliceToken, `/api/organizations/${org.id}/provider-tokens/ibm_quantum`, { label: 'lab', credential: { token: IBM_ORG } })).statusCode,
    201,
  );

  // Bob (member, no own credential) gets the organization's, auto-selected (his only organization).
  const bobRes = await get(h, bobToken, '/api/provider-tokens/ibm_quantum/resolve');
  t.equal(bobRes.statusCode, 200);
  t.same(bobRes.json(), {
    provider: 'ibm_quantum',
    source: 'organization',
    organization_id: org.id,
    label: 'lab',
    updated_at: bobRes.json().updated_at,
    credential: { token: IBM_ORG },
  });
  const named = await get(h, bobToken, `/api/provider-tokens/ibm_quantum/resolve?organization_id=${org.id}`);
  t.equal(named.json().source, 'organization');

  // Alice has her own: it wins over the organization's.
  await put(h, aliceToken, '/api/provider-tokens/ibm_quantum', { credential: { token: IBM } });
  const aliceRes = await get(h, aliceToken, `/api/provider-tokens/ibm_quantum/resolve?organization_id=${org.id}`);
  t.equal(aliceRes.json().source, 'user');
  t.same(aliceRes.json().credential, { token: IBM });

  // Eve is no member: naming the organization is 404, and with no organization she has nothing.
  const eveNamed = await get(h, eveToken, `/api/provider-tokens/ibm_quantum/resolve?organization_id=${org.id}`);
  t.equal(eveNamed.statusCode, 404);
  t.same(eveNamed.json(), { error: 'not_found', message: 'organization not found' });
  const eveBare = await get(h, eveToken, '/api/provider-tokens/ibm_quantum/resolve');
  t.equal(eveBare.statusCode, 404);
  t.same(eveBare.json(), { error: 'not_found', message: 'ibm_quantum credential of yours not found' });
  // And she cannot see the organization's metadata either.
  const eveList = await get(h, eveToken, `/api/organizations/${org.id}/provider-tokens`);
  t.equal(eveList.statusCode, 404);
  t.same(eveList.json(), { error: 'not_found', message: 'organization not found' });
  const missingOrg = await get(h, eveToken, `/api/organizations/00000000-0000-4000-8000-000000000000/provider-tokens`);
  t.same(missingOrg.json(), eveList.json(), 'a missing organization looks the same as a foreign one');

  // A provider the organization has no credential for.
  const none = await get(h, bobToken, '/api/provider-tokens/ionq/resolve');
  t.equal(none.statusCode, 404);
  t.same(none.json(), { error: 'not_found', message: `ionq credential of yours or of organization ${org.id} not found` });
});

t.test('resolution with several organizations: 409 listing them, naming one resolves', async (t) => {
  const { h, alice, aliceToken } = await setup(t);
  const org1 = await h.org('One', [[alice, 'owner']]);
  const org2 = await h.org('Two', [[alice, 'member']]);
  await put(h, aliceToken, `/api/organizations/${org1.id}/provider-tokens/ionq`, { credential: { api_key: 'org1-key' } });
  const amb = await get(h, aliceToken, '/api/provider-tokens/ionq/resolve');
  t.equal(amb.statusCode, 409);
  t.equal(amb.json().error, 'conflict');
  t.same([...amb.json().organization_ids].sort(), [org1.id, org2.id].sort());
  const ok = await get(h, aliceToken, `/api/provider-tokens/ionq/resolve?organization_id=${org1.id}`);
  t.equal(ok.statusCode, 200);
  t.same(ok.json().credential, { api_key: 'org1-key' });
  const other = await get(h, aliceToken, `/api/provider-tokens/ionq/resolve?organization_id=${org2.id}`);
  t.equal(other.statusCode, 404);
  const badId = await get(h, aliceToken, '/api/provider-tokens/ionq/resolve?organization_id=nope');
  t.equal(badId.statusCode, 400);
});

t.test('scope api alone cannot resolve; quantum_tokens alone cannot manage', async (t) => {
  const { h, alice, aliceToken } = await setup(t);
  await put(h, aliceToken, '/api/provider-tokens/ionq', { credential: { api_key: 'k-0123456789' } });
  const apiOnly = await h.apiToken(alice, ['api']);
  const res = await get(h, apiOnly, '/api/provider-tokens/ionq/resolve');
  t.equal(res.statusCode, 403);
  t.same(res.json(), { error: 'insufficient_scope', message: 'this request needs scope: quantum_tokens' });
  t.match(res.headers['www-authenticate'], /error="insufficient_scope", scope="quantum_tokens"/);

  const qtOnly = await h.apiToken(alice, ['quantum_tokens']);
  t.equal((await get(h, qtOnly, '/api/provider-tokens/ionq/resolve')).statusCode, 200);
  t.equal((await get(h, qtOnly, '/api/provider-tokens')).statusCode, 403);
  t.equal((await put(h, qtOnly, '/api/provider-tokens/ionq', { credential: { api_key: 'x' } })).statusCode, 403);
  const anon = await h.inject({ method: 'GET', url: '/api/provider-tokens/ionq/resolve' });
  t.equal(anon.statusCode, 401);
});

t.test('organization credentials: owners and maintainers write, members read metadata only', async (t) => {
  const { h, alice, aliceToken } = await setup(t);
  const mia = await h.user();
  const miaToken = await h.apiToken(mia, ['api', 'quantum_tokens']);
  const max = await h.user();
  const maxToken = await h.apiToken(max, ['api', 'quantum_tokens']);
  const org = await h.org('Lab', [
    [alice, 'owner'],
    [mia, 'maintainer'],
    [max, 'member'],
  ]);
  const url = `/api/organizations/${org.id}/provider-tokens/azure_quantum`;
  const cred = { tenant_id: 'tenant', client_id: 'client-id-000000000000-abcd', client_secret: 'AZURE-SECRET-1' };

  const byMaintainer = await put(h, miaToken, url, { credential: cred });
  t.equal(byMaintainer.statusCode, 201, 'maintainer creates');
  t.equal(byMaintainer.json().updated_by, mia.id);
  t.equal(byMaintainer.json().hint, '…abcd');
  const byOwner = await put(h, aliceToken, url, { credential: { ...cred, client_secret: 'AZURE-SECRET-2' } });
  t.equal(byOwner.statusCode, 200, 'owner replaces');

  const byMember = await put(h, maxToken, url, { credential: { ...cred, client_secret: 'MEMBER-WRITE' } });
  t.equal(byMember.statusCode, 403);
  t.same(byMember.json(), { error: 'forbidden', message: "only owners and maintainers can change the organization's provider credentials" });
  const memberDelete = await h.inject({ method: 'DELETE', url, headers: bearer(maxToken) });
  t.equal(memberDelete.statusCode, 403);

  const memberList = await get(h, maxToken, `/api/organizations/${org.id}/provider-tokens`);
  t.equal(memberList.statusCode, 200);
  t.equal(memberList.json().provider_tokens.length, 1);
  t.notMatch(memberList.body, /AZURE-SECRET|tenant/);
  const memberOne = await get(h, maxToken, url);
  t.equal(memberOne.statusCode, 200);
  t.equal(memberOne.json().updated_by, alice.id);

  const resolved = await get(h, maxToken, '/api/provider-tokens/azure_quantum/resolve');
  t.same(resolved.json().credential, { ...cred, client_secret: 'AZURE-SECRET-2' }, 'the member resolves the org credential');

  const del = await h.inject({ method: 'DELETE', url, headers: bearer(miaToken) });
  t.equal(del.statusCode, 204, 'maintainer deletes');
  t.equal((await get(h, maxToken, url)).statusCode, 404);
});

t.test('every change and resolution is audited, and no audit row holds a secret', async (t) => {
  const { h, alice, aliceToken } = await setup(t);
  const org = await h.org('Lab', [[alice, 'owner']]);
  const secrets = ['AUDIT-SECRET-USER-1234567890', 'AUDIT-SECRET-ORG-1234567890', 'AUDIT-REPLACED-123456'];
  await put(h, aliceToken, '/api/provider-tokens/iqm', { label: 'mine', credential: { token: secrets[0], url: 'https://iqm.example.com' } });
  await put(h, aliceToken, '/api/provider-tokens/iqm', { credential: { token: secrets[2] } });
  await put(h, aliceToken, `/api/organizations/${org.id}/provider-tokens/iqm`, { credential: { token: secrets[1] } });
  await get(h, aliceToken, '/api/provider-tokens/iqm/resolve');
  await h.inject({ method: 'DELETE', url: '/api/provider-tokens/iqm', headers: bearer(aliceToken) });
  await get(h, aliceToken, '/api/provider-tokens/iqm/resolve');

  const events = await h.db.selectFrom('audit_events').selectAll().where('target_type', '<>', 'signing_key').orderBy('id').execute();
  t.same(
    events.map((e) => [e.action, e.details.source ?? null, e.organization_id]),
    [
      ['provider_token.create', null, null],
      ['provider_token.replace', null, null],
      ['provider_token.create', null, org.id],
      ['provider_token.resolve', 'user', null],
      ['provider_token.delete', null, null],
      ['provider_token.resolve', 'organization', org.id],
    ],
  );
  for (const e of events) {
    t.equal(e.actor_user_id, alice.id);
    t.match(e.actor_credential, /^api_token:/);
    t.ok(e.request_id);
    t.equal(e.target_type, 'provider_token');
  }
  t.same(events[0]!.details.fields, ['token', 'url'], 'field names, not values');
  const dump = JSON.stringify(events);
  for (const s of secrets) t.notOk(dump.includes(s), 'no secret in the audit trail');
  t.notOk(dump.includes('iqm.example.com'), 'no credential field value at all');
});

t.test('rewrap moves rows to the new master key; they still resolve; a second run does nothing', async (t) => {
  const { h, alice, aliceToken } = await setup(t);
  const org = await h.org('Lab', [[alice, 'owner']]);
  for (let i = 0; i < 5; i++) {
    const u = await h.user();
    await put(h, await h.apiToken(u), '/api/provider-tokens/ionq', { credential: { api_key: `user-${i}-key` } });
  }
  await put(h, aliceToken, `/api/organizations/${org.id}/provider-tokens/ionq`, { credential: { api_key: 'org-key' } });
  const oldKey = h.config.masterKey;

  const newKeyB64 = randomBytes(32).toString('base64');
  const newKey = masterKeyFrom(newKeyB64, 'k');
  const rotated = { ...h.config, masterKey: newKey, previousMasterKeys: [oldKey] };

  const first = await rewrapAll(h.db, rotated, { batchSize: 2 });
  t.same(first, [
    { target: 'signing_keys', rewrapped: 1, failed: [], remaining: 0 },
    { target: 'provider_tokens', rewrapped: 6, failed: [], remaining: 0 },
  ]);
  const signing = await h.db.selectFrom('signing_keys').select('master_key_id').execute();
  t.ok(
    signing.every((k) => k.master_key_id === newKey.id),
    'the signing key is re-sealed too',
  );
  const keys = await h.db.selectFrom('provider_tokens').select('key_id').execute();
  t.ok(
    keys.every((k) => k.key_id === newKey.id),
    'every row under the new key id',
  );
  const audit = await h.db.selectFrom('audit_events').selectAll().where('action', '=', 'provider_token.rewrap').execute();
  t.equal(
    audit.reduce((n, e) => n + Number(e.details.count), 0),
    6,
  );
  t.equal(audit.length, 3, 'one audit row per batch of 2');
  t.equal(audit[0]!.actor_credential, 'cli');

  const second = await rewrapAll(h.db, rotated, { batchSize: 2 });
  t.same(
    second,
    [
      { target: 'signing_keys', rewrapped: 0, failed: [], remaining: 0 },
      { target: 'provider_tokens', rewrapped: 0, failed: [], remaining: 0 },
    ],
    'idempotent',
  );

  // A server configured with the new key only resolves the rewrapped rows.
  const { buildApp } = await import('../src/app.js');
  const newConfig = Object.freeze({ ...testConfig(h.connectionString), masterKey: newKey, pepper: h.config.pepper, previousMasterKeys: [] });
  const app3 = await buildApp({
    config: newConfig,
    db: h.db,
    connectionString: h.connectionString,
    clock: h.clock,
    logger: false,
    inspectResponse: h.validator.inspect,
  });
  t.teardown(() => app3.close());
  await app3.ready();
  await app3.jobs.start();
  const res = await app3.inject({ method: 'GET', url: '/api/provider-tokens/ionq/resolve', headers: bearer(aliceToken) });
  t.equal(res.statusCode, 200);
  t.same(res.json().credential, { api_key: 'org-key' });

  // The old key alone no longer opens them (the original app has only the old key).
  const stale = await get(h, aliceToken, '/api/provider-tokens/ionq/resolve');
  t.equal(stale.statusCode, 500);
});

t.test('rewrap leaves rows it cannot open, reports them, and carries on', async (t) => {
  const { h, aliceToken } = await setup(t);
  await put(h, aliceToken, '/api/provider-tokens/ionq', { credential: { api_key: 'a' } });
  await put(h, aliceToken, '/api/provider-tokens/iqm', { credential: { token: 'b' } });
  const lost = masterKeyFrom(randomBytes(32).toString('base64'), 'k');
  // One row claims a key nobody has any more.
  await h.db.updateTable('provider_tokens').set({ key_id: lost.id }).where('provider', '=', 'iqm').execute();
  const newKey = masterKeyFrom(randomBytes(32).toString('base64'), 'k');
  const [r] = await rewrapAll(h.db, { masterKey: newKey, previousMasterKeys: [h.config.masterKey] }, { batchSize: 1, only: ['provider_tokens'] });
  t.equal(r!.rewrapped, 1);
  t.equal(r!.failed.length, 1);
  t.equal(r!.failed[0]!.keyId, lost.id);
  t.match(r!.failed[0]!.reason, /not configured/);
  t.equal(r!.remaining, 1);
});

t.test('provider configuration: a subset by name, a JSON file with custom providers, loud errors', async (t) => {
  t.same(
    providersFromEnv({ TESSERA_PROVIDERS: 'ionq, iqm' }).map((p) => p.name),
    ['ionq', 'iqm'],
  );
  t.throws(() => providersFromEnv({ TESSERA_PROVIDERS: 'ionq,dwave' }), /unknown provider "dwave"/);
  t.throws(() => providersFromEnv({ TESSERA_PROVIDERS: 'ionq,ionq' }), /configured twice/);
  const dir = t.testdir({
    'providers.json': JSON.stringify({
      providers: [
        'ionq',
        {
          name: 'quantinuum',
          title: 'Quantinuum',
          schema: { type: 'object', required: ['refresh_token'], properties: { refresh_token: { type: 'string', minLength: 1 } }, additionalProperties: false },
          secretFields: ['refresh_token'],
          hintField: null,
        },
      ],
    }),
    'bad.json': JSON.stringify([
      { name: 'x1', schema: { type: 'object', properties: { a: { type: 'strin' } }, additionalProperties: false }, secretFields: ['a'] },
    ]),
    'open.json': JSON.stringify([{ name: 'x2', schema: { type: 'object', properties: { a: { type: 'string' } } }, secretFields: ['a'] }]),
  });
  const list = providersFromEnv({ TESSERA_PROVIDERS_FILE: `${dir}/providers.json` });
  t.same(
    list.map((p) => p.name),
    ['ionq', 'quantinuum'],
  );
  const reg = new ProviderRegistry(list);
  t.same(reg.validate('quantinuum', { refresh_token: 'r' }), []);
  t.same(reg.validate('quantinuum', { token: 'r' }), [
    { field: '/refresh_token', message: 'is required' },
    { field: '/token', message: 'is not a field of this provider' },
  ]);
  t.throws(() => providersFromEnv({ TESSERA_PROVIDERS_FILE: `${dir}/bad.json` }), /does not compile/);
  t.throws(() => providersFromEnv({ TESSERA_PROVIDERS_FILE: `${dir}/open.json` }), /additionalProperties: false/);
  t.throws(
    () =>
      loadConfig({
        DATABASE_URL: 'postgres://x@127.0.0.1/x',
        TESSERA_MASTER_KEY: randomBytes(32).toString('base64'),
        TESSERA_PEPPER: 'p'.repeat(32),
        TESSERA_PROVIDERS: 'nope',
      }),
    { name: 'ConfigError' },
  );

  const h = await harness(t, { env: { TESSERA_PROVIDERS: 'ionq' } });
  const u = await h.user();
  const tok = await h.apiToken(u);
  t.equal((await put(h, tok, '/api/provider-tokens/ibm_quantum', { credential: { token: 'x' } })).statusCode, 404, 'unconfigured provider');
  t.same((await get(h, tok, '/api/provider-tokens')).json().providers, ['ionq']);
});

t.test('logs redact provider secrets and request bodies', async (t) => {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      lines.push(chunk.toString());
      cb();
    },
  });
  const log = pino(loggerOptions('trace'), sink);
  log.info({ body: { credential: { token: 'LOG-SECRET-1' } } }, 'a body');
  log.info({ req: { method: 'PUT', url: '/api/provider-tokens/ionq?token=LOG-SECRET-8', body: { api_key: 'LOG-SECRET-2' } } }, 'request');
  log.info({ credential: { secret_access_key: 'LOG-SECRET-3', session_token: 'LOG-SECRET-4' } }, 'credential');
  log.info({ x: { api_key: 'LOG-SECRET-5', client_secret: 'LOG-SECRET-6', secret_access_key: 'LOG-SECRET-7' } }, 'fields');
  const out = lines.join('');
  t.equal(lines.length, 4);
  t.notMatch(out, /LOG-SECRET/);
  t.match(out, /\[redacted\]/);
});
