import { sql } from 'kysely';
import t from 'tap';
import { FLUSH_CHUNK, UsageStamps, type UsageTarget } from '../src/platform/database/usage-stamps.js';
import { harness } from './support/helper.js';
import { createSdkKey, getToken } from './support/oauth-helper.js';

t.test('a busy SDK key is stamped once a minute, not on every flush', async (t) => {
  const h = await harness(t);
  const key = await createSdkKey(h, await h.user());
  const row = () =>
    sql<{ last_used_at: Date | null; version: string }>`select last_used_at, xmin::text as version from sdk_keys where client_id = ${key.client_id}`
      .execute(h.db)
      .then((r) => r.rows[0]!);

  t.equal((await row()).last_used_at, null, 'never used');
  const t0 = h.clock.now();
  await getToken(h, key);
  await h.app.usage.flush();
  const first = await row();
  t.equal(first.last_used_at?.getTime(), t0, 'stamped with the time of use');

  h.clock.advance(30);
  await getToken(h, key);
  await h.app.usage.flush();
  t.same(await row(), first, 'used again 30 s later: the row is not written at all (same version)');

  h.clock.advance(31);
  await getToken(h, key);
  await h.app.usage.flush();
  const third = await row();
  t.equal(third.last_used_at?.getTime(), h.clock.now(), 'a minute after the stored stamp it is written again');
  t.not(third.version, first.version);
});

t.test('a flush stamps many ids in chunks; a chunk that fails loses only its own stamps, which the next use brings back', async (t) => {
  const h = await harness(t);
  await sql`create table usage_probe (key text primary key, last_used_at timestamptz)`.execute(h.db);
  await sql`insert into usage_probe (key) select 'k' || lpad(i::text, 4, '0') from generate_series(0, 2499) as i`.execute(h.db);
  await sql`insert into usage_probe (key) values ('poison')`.execute(h.db);
  // One row refuses its update: the statement that carries it fails as a whole.
  await sql`create function usage_probe_refuse() returns trigger language plpgsql as $$
    begin if new.key = 'poison' then raise exception 'refused'; end if; return new; end $$`.execute(h.db);
  await sql`create trigger usage_probe_refuse before update on usage_probe for each row execute function usage_probe_refuse()`.execute(h.db);

  const warnings: unknown[] = [];
  const stamps = new UsageStamps(h.db, { warn: (o: unknown) => void warnings.push(o) } as never);
  const target: UsageTarget = { table: 'usage_probe', keyColumn: 'key', keyType: 'text', everyMs: 60_000 };
  const at = new Date('2026-01-02T03:04:05.000Z');
  const keys = ['poison', ...Array.from({ length: 2500 }, (_, i) => `k${String(i).padStart(4, '0')}`), 'no-such-row'];
  for (const k of keys) stamps.touch(target, k, at);
  await stamps.flush();

  const stamped = async () =>
    (await sql<{ key: string }>`select key from usage_probe where last_used_at = ${at} order by key`.execute(h.db)).rows.map((r) => r.key);
  const after = await stamped();
  // Sorted ids in chunks of FLUSH_CHUNK: k0000..k0999, k1000..k1999, then k2000..k2499 with no-such-row and poison.
  t.equal(FLUSH_CHUNK, 1000);
  t.equal(after.length, 2000, 'the two chunks without the refused row are stamped');
  t.equal(after.at(-1), 'k1999');
  t.equal(warnings.length, 1, 'the failed chunk is logged once');

  // The failed chunk was not remembered as written: using those ids again stamps them.
  await sql`drop trigger usage_probe_refuse on usage_probe`.execute(h.db);
  for (const k of keys) stamps.touch(target, k, at);
  await stamps.flush();
  t.equal((await stamped()).length, 2501, 'every row stamped once the refusal is gone');
  await stamps.close();
});

t.test('stamps only move forward, and an id used again within the interval waits for the next one', async (t) => {
  const h = await harness(t);
  await sql`create table usage_probe (key text primary key, last_used_at timestamptz)`.execute(h.db);
  await sql`insert into usage_probe (key) values ('a')`.execute(h.db);
  const stamps = new UsageStamps(h.db, { warn: () => undefined } as never);
  const target: UsageTarget = { table: 'usage_probe', keyColumn: 'key', keyType: 'text', everyMs: 10_000 };
  const read = async () => (await sql<{ last_used_at: Date }>`select last_used_at from usage_probe`.execute(h.db)).rows[0]!.last_used_at.getTime();
  const base = Date.parse('2026-03-01T00:00:00Z');

  stamps.touch(target, 'a', new Date(base + 5000));
  stamps.touch(target, 'a', new Date(base)); // an older use arriving later does not win
  await stamps.flush();
  t.equal(await read(), base + 5000);

  stamps.touch(target, 'a', new Date(base + 9000));
  await stamps.flush();
  t.equal(await read(), base + 5000, 'within 10 s of the written stamp: not written');
  stamps.touch(target, 'a', new Date(base + 15_000));
  await stamps.flush();
  t.equal(await read(), base + 15_000, 'at the interval: written');
  await stamps.close();
});
