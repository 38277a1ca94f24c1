import t from 'tap';
import { harness, bearer } from './support/helper.js';
import { recordAudit } from '../src/platform/database/audit.repository.js';

t.test('operators page through the audit trail; others cannot read it', async (t) => {
  const h = await harness(t);
  const op = await h.user();
  const admin = await h.apiToken(op, ['api', 'admin']);
  const plain = await h.apiToken(op, ['api']);
  for (let i = 0; i < 5; i++) {
    await recordAudit(
      h.db,
      { userId: op.id, credential: 'cli', ip: '127.0.0.1' },
      { action: i % 2 ? 'a.odd' : 'a.even', targetType: 'thing', targetId: `t${i}`, details: { i } },
    );
  }
  const page1 = await h.inject({ method: 'GET', url: '/admin/audit-events?limit=2', headers: bearer(admin) });
  t.equal(page1.statusCode, 200);
  const b1 = page1.json();
  t.same(
    b1.events.map((e: { target_id: string }) => e.target_id),
    ['t4', 't3'],
    'newest first',
  );
  t.same(b1.events[0].details, { i: 4 });
  const page2 = await h.inject({ method: 'GET', url: `/admin/audit-events?limit=2&before=${b1.next_before}`, headers: bearer(admin) });
  t.same(
    page2.json().events.map((e: { target_id: string }) => e.target_id),
    ['t2', 't1'],
  );
  const odd = await h.inject({ method: 'GET', url: '/admin/audit-events?action=a.odd', headers: bearer(admin) });
  t.same(
    odd.json().events.map((e: { target_id: string }) => e.target_id),
    ['t3', 't1'],
  );
  t.equal(odd.json().next_before, null);

  const denied = await h.inject({ method: 'GET', url: '/admin/audit-events', headers: bearer(plain) });
  t.equal(denied.statusCode, 403);
  const bad = await h.inject({ method: 'GET', url: '/admin/audit-events?limit=0', headers: bearer(admin) });
  t.equal(bad.statusCode, 400);
  const unknown = await h.inject({ method: 'GET', url: '/admin/audit-events?drop=table', headers: bearer(admin) });
  t.equal(unknown.statusCode, 400, 'unknown query parameters are refused');
});
