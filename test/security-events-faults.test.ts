// Security events across Postgres restarts (fast, then immediate) with two instances and two
// verifiers: every revocation Postgres acknowledged reaches a stream receiver on each instance,
// none is lost while the LISTEN connection is down, and each verifier refuses every revoked token.
import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { FastifyInstance } from 'fastify';
import { sql } from 'kysely';
import { startEmbeddedPostgres } from '../src/platform/database/embedded.js';
import { createDb } from '../src/platform/database/database.js';
import { migrateToLatest } from '../src/platform/database/migrate.js';
import { buildApp } from '../src/app.js';
import { createUser } from '../src/identity/users.repository.js';
import { issueApiToken } from '../src/api-tokens/api-tokens.service.js';
import { createVerifier } from '../src/client/index.js';
import { freePort, testConfig } from './support/helper.js';
import { basic } from './support/oauth-helper.js';
import { outcome, sleep } from './support/events-helper.js';

const run = promisify(execFile);
const form = { 'content-type': 'application/x-www-form-urlencoded' };

/** Reads a stream with plain fetch, resuming with Last-Event-ID after every break; records the ids. */
function collector(url: string, token: string) {
  const ids = new Set<number>();
  let last: string | null = null;
  let stopped = false;
  let ac = new AbortController();
  void (async () => {
    while (!stopped) {
      try {
        ac = new AbortController();
        const headers: Record<string, string> = { authorization: `Bearer ${token}` };
        if (last) headers['last-event-id'] = last;
        const res = await fetch(url, { headers, signal: ac.signal });
        if (res.status !== 200) throw new Error(String(res.status));
        const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let i: number;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            const m = /^id: (\d+)$/m.exec(block);
            if (m) {
              ids.add(Number(m[1]));
              last = m[1]!;
            }
          }
        }
      } catch {
        // reconnect below
      }
      await sleep(100);
    }
  })();
  return {
    ids,
    stop() {
      stopped = true;
      ac.abort();
    },
  };
}

t.test('Postgres restarted (fast, then immediate): no committed security event is lost', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'tessera-events-faults-'));
  const pg = await startEmbeddedPostgres({ dataDir: dir, port: await freePort(), ephemeral: true });
  t.teardown(async () => {
    await pg.stop().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });
  const asUser = process.getuid?.() === 0 ? ['-u', 'postgres'] : [];
  const pgctl = (args: string[]) => (asUser.length ? run('runuser', [...asUser, '--', pg.bin.pg_ctl, ...args]) : run(pg.bin.pg_ctl, args));

  const portA = await freePort();
  const issuer = `http://127.0.0.1:${portA}`;
  const config = testConfig(pg.connectionString, { TESSERA_ISSUER: issuer, TESSERA_DB_CONNECT_TIMEOUT_MS: '1000' });
  const admin = createDb({ connectionString: pg.connectionString, max: 2 });
  await migrateToLatest(admin.db);
  const apps: FastifyInstance[] = [];
  const handles = [admin];
  t.teardown(async () => {
    for (const a of apps.reverse()) await a.close();
    for (const h of handles) await h.close();
  });
  const start = async (port: number) => {
    const handle = createDb({ connectionString: pg.connectionString, max: 5 });
    handles.push(handle);
    const app = await buildApp({ config, db: handle.db, connectionString: pg.connectionString, logger: false });
    apps.push(app);
    await app.ready();
    await app.jobs.start();
    await app.listen({ port, host: '127.0.0.1' });
    return `http://127.0.0.1:${port}`;
  };
  const urlA = await start(portA);
  const urlB = await start(await freePort());

  const u = await createUser(admin.db, { email: 'faults@example.com', name: 'F' });
  const { token: apiToken } = await issueApiToken(admin.db, config.pepper, { userId: u.id, name: 't', scopes: ['api', 'events:read'], expiresAt: null });
  const keyRes = await fetch(`${urlA}/api/sdk-keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'k', scopes: ['api'] }),
  });
  t.equal(keyRes.status, 201);
  const key = (await keyRes.json()) as { client_id: string; client_secret: string };
  const clientAuth = { authorization: basic(key.client_id, key.client_secret) };
  const mint = async () => {
    const r = await fetch(`${urlA}/oauth/token`, { method: 'POST', headers: { ...form, ...clientAuth }, body: 'grant_type=client_credentials' });
    return r.status === 200 ? ((await r.json()) as { access_token: string }).access_token : null;
  };
  const revoke = async (url: string, tok: string) =>
    (
      await fetch(`${url}/oauth/revoke`, {
        method: 'POST',
        headers: { ...form, ...clientAuth },
        body: `token=${tok}`,
        signal: AbortSignal.timeout(5000),
      }).catch(() => null)
    )?.status ?? 0;

  const streamA = collector(`${urlA}/events/stream`, apiToken);
  const streamB = collector(`${urlB}/events/stream`, apiToken);
  const vA = createVerifier({
    issuer,
    audience: issuer,
    revocations: 'stream',
    events: { auth: async () => apiToken, url: `${urlA}/events/stream`, graceMs: 60_000 },
  });
  const vB = createVerifier({
    issuer,
    audience: issuer,
    jwksUri: `${urlB}/.well-known/jwks.json`,
    revocations: 'stream',
    events: { auth: async () => apiToken, url: `${urlB}/events/stream`, graceMs: 60_000 },
  });
  t.teardown(() => {
    streamA.stop();
    streamB.stop();
    vA.close();
    vB.close();
  });
  await Promise.all([vA.revocationStream!.ready(), vB.revocationStream!.ready()]);

  const revoked: string[] = [];
  const live = (await mint())!;
  for (const mode of ['fast', 'immediate'] as const) {
    for (let i = 0; i < 5; i++) {
      const tok = (await mint())!;
      if ((await revoke(i % 2 ? urlA : urlB, tok)) === 200) revoked.push(tok);
    }
    // Revocations keep coming while Postgres goes down and comes back: each one acknowledged counts.
    let going = true;
    const load = (async () => {
      let i = 0;
      while (going) {
        const tok = await mint().catch(() => null);
        if (tok && (await revoke(i++ % 2 ? urlA : urlB, tok)) === 200) revoked.push(tok);
        await sleep(20);
      }
    })();
    await pgctl(['restart', '-D', pg.dataDir, '-m', mode, '-w', '-t', '30', '-l', path.join(pg.dataDir, `restart-${mode}.log`)]);
    // Until a few revocations have been acknowledged after the restart.
    const after = revoked.length;
    for (let n = 0; n < 500 && revoked.length < after + 5; n++) await sleep(20);
    going = false;
    await load;
    t.ok(revoked.length >= after + 5, `${mode}: revocations acknowledged after the restart`);
  }

  const committed = (await sql<{ id: number }>`select id from security_events order by id`.execute(admin.db)).rows.map((r) => Number(r.id));
  t.ok(committed.length >= revoked.length, `every acknowledged revocation is an event (${committed.length} events, ${revoked.length} revocations)`);
  const everyId = async () => {
    for (let n = 0; n < 500; n++) {
      if (committed.every((id) => streamA.ids.has(id) && streamB.ids.has(id))) return true;
      await sleep(20);
    }
    return false;
  };
  t.ok(await everyId(), 'every committed event reached a stream receiver on each instance');
  for (const tok of revoked) {
    let o = ['', ''];
    for (let n = 0; n < 500; n++) {
      o = [await outcome(vA, tok), await outcome(vB, tok)];
      if (o.every((x) => x === 'revoked')) break;
      await sleep(20);
    }
    if (!o.every((x) => x === 'revoked')) t.fail(`a revoked token is refused by both verifiers (${o.join(', ')})`);
  }
  t.pass(`${revoked.length} revoked tokens checked on both verifiers`);
  t.same([await outcome(vA, live), await outcome(vB, live)], ['ok', 'ok'], 'the unrevoked token is still accepted');
});
