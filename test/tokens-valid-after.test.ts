// Every way of cutting off an SDK key's tokens stamps `tokens_valid_after` by one rule: a whole
// second after the moment and after the row's previous stamp, so it is later than the `iat` of every
// token the key has issued, including tokens whose `iat` issuance rounded up to an earlier stamp.
import t from 'tap';
import { randomBytes, randomUUID } from 'node:crypto';
import { harness } from './support/helper.js';
import { cutOffOrganizationKeys, disableSdkKeysOfUser, insertSdkKey } from '../src/oauth/sdk-keys.repository.js';
import { issuedAtFor, nextTokensValidAfter } from '../src/oauth/access-token.js';

t.test('bulk cut-offs (suspension, leaving an organization) stamp what a single disable stamps', async (t) => {
  const h = await harness(t);
  // previous stamp (ms or null) x moment of the cut-off (ms)
  const cases: Array<[number | null, number]> = [
    [null, 1_700_000_000_700],
    [null, 1_700_000_000_000],
    [1_700_000_001_000, 1_700_000_000_500], // a stamp already a second ahead (disable then enable in this second)
    [1_700_000_000_250, 1_700_000_000_900], // an older millisecond stamp
    [1_699_999_000_000, 1_700_000_000_999],
  ];
  for (const [previous, at] of cases) {
    const u = await h.user();
    const org = await h.org(undefined, [[u, 'member']]);
    const key = await insertSdkKey(h.db, {
      clientId: `s_${randomUUID()}`,
      userId: u.id,
      name: 'k',
      secretHash: randomBytes(32),
      scopes: ['api'],
      organizationId: org.id,
    });
    const setPrevious = () =>
      h.db
        .updateTable('sdk_keys')
        .set({ tokens_valid_after: previous === null ? null : new Date(previous) })
        .where('id', '=', key.id)
        .execute();
    const stamp = async () =>
      (await h.db.selectFrom('sdk_keys').select('tokens_valid_after').where('id', '=', key.id).executeTakeFirstOrThrow()).tokens_valid_after!.getTime();
    const expected = nextTokensValidAfter(previous, at);

    await setPrevious();
    await cutOffOrganizationKeys(h.db, u.id, org.id, new Date(at));
    t.equal(await stamp(), expected, `leaving an organization: previous ${previous}, at ${at}`);

    await setPrevious();
    await disableSdkKeysOfUser(h.db, u.id, new Date(at));
    t.equal(await stamp(), expected, `suspension: previous ${previous}, at ${at}`);

    // The stamp refuses every token issued before it: the latest iat issuance could have given is below it.
    const latestIssuedIat = issuedAtFor({ tokensValidAfterMs: previous ?? 0 }, at);
    t.ok(latestIssuedIat * 1000 < expected, `a token issued up to the cut-off (iat ${latestIssuedIat}) is refused`);
  }
});
