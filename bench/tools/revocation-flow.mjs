// A steady flow of access-token revocations into Tessera, in its own process (so its CPU is not the
// bench's). Each revocation commits a `token_revoked` security event that every verifier
// subscribed to /events/stream receives. Two sources (BENCH_REVOCATION_SOURCE):
//   sql  (default) Tessera's own revokeTokens (dist) straight into Postgres, in small batches: the
//        same rows the RFC 7009 endpoint writes (denylist, audit, `revoked_token` change events),
//        so the triggers make the same security events and NOTIFYs; Tessera's HTTP workers and
//        client authentication stay out of it, and what the run measures is what the event
//        stream costs the verifications.
//   http RFC 7009 POST /oauth/revoke, as SDK keys revoke: Tessera also spends its cores on the
//        flow's requests, competing with the verifications being measured.
// The tokens are issued to the bench's revoker SDK keys beforehand (POST /oauth/token, outside the run).
//
// Driven by bench/run.mjs over the IPC channel:
//   { cmd: 'prepare', seconds }  issue enough tokens for `seconds` at the rate (outside the measured run)
//                                -> { type: 'prepared', tokens }
//   { cmd: 'go' }                start revoking at the rate -> { type: 'going' }
//   { cmd: 'stop' }              stop -> { type: 'stopped', revoked, failed, seconds, perSecond, lastRevoked, problems }
// env: BENCH_TESSERA_URL, BENCH_REVOKER_KEYS (JSON [{client_id, client_secret}, ...]), BENCH_REVOCATIONS_PER_SECOND,
// BENCH_REVOCATION_SOURCE; for sql, the bench's TESSERA_* variables (it attaches to the embedded Postgres).
const base = process.env.BENCH_TESSERA_URL;
const keys = JSON.parse(process.env.BENCH_REVOKER_KEYS ?? '[]');
const rate = Number(process.env.BENCH_REVOCATIONS_PER_SECOND);
const source = process.env.BENCH_REVOCATION_SOURCE || 'sql';
if (!base || !keys.length || !(rate > 0)) throw new Error('BENCH_TESSERA_URL, BENCH_REVOKER_KEYS and BENCH_REVOCATIONS_PER_SECOND are required');
if (source !== 'sql' && source !== 'http') throw new Error(`BENCH_REVOCATION_SOURCE must be sql or http, got "${source}"`);

const FORM = { 'content-type': 'application/x-www-form-urlencoded' };
const auth = keys.map((k) => 'Basic ' + Buffer.from(`${encodeURIComponent(k.client_id)}:${encodeURIComponent(k.client_secret)}`).toString('base64'));
/** Issued, not yet revoked: [token, index of the key that holds it]. */
const ready = [];
let nextKey = 0;
const MAX_IN_FLIGHT = 128;
/** Revocations per transaction of the sql source, at most (the endpoint groups up to 128). */
const SQL_BATCH = 50;

/** For the sql source: Tessera's runtime on the bench's database, and each revoker key's owner. */
let sqlSide = null;
async function openSql() {
  const { openRuntime } = await import('../../dist/src/platform/runtime.js');
  const { revokeTokens } = await import('../../dist/src/oauth/revoked-tokens.repository.js');
  const { sql } = await import('kysely');
  const rt = await openRuntime(process.env, { logLevel: 'warn', logToStderr: true });
  const ids = keys.map((k) => k.client_id);
  const { rows } = await sql`select client_id, user_id from sdk_keys where client_id = any(${ids})`.execute(rt.handle.db);
  const owners = new Map(rows.map((r) => [r.client_id, r.user_id]));
  for (const id of ids) if (!owners.has(id)) throw new Error(`revoker SDK key ${id} is not in the database`);
  return { rt, owners, revoke: (inputs) => revokeTokens(rt.handle.db, inputs) };
}

/** The claims of one of our tokens (issued by Tessera a moment ago: no need to verify it here). */
const claimsOf = (token) => JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString());

async function issue() {
  const k = nextKey++ % auth.length;
  const res = await fetch(`${base}/oauth/token`, { method: 'POST', headers: { ...FORM, authorization: auth[k] }, body: 'grant_type=client_credentials' });
  const body = await res.json().catch(() => null);
  if (res.status !== 200 || typeof body?.access_token !== 'string') throw new Error(`POST /oauth/token answered ${res.status}`);
  ready.push([body.access_token, k]);
}

async function prepare(seconds) {
  if (source === 'sql') sqlSide ??= await openSql();
  // A little over what the run needs: the pacing never waits for tokens.
  const want = Math.ceil(rate * (seconds + 2));
  const jobs = Math.max(0, want - ready.length);
  let i = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (i < jobs) {
        i++;
        await issue();
      }
    }),
  );
  return ready.length;
}

let flow = null;

function go() {
  return source === 'sql' ? goSql() : goHttp();
}

/**
 * Every 5 ms, what is due since the start goes in one transaction of at most SQL_BATCH
 * revocations, one transaction at a time: the pacing of the endpoint's group commit without its
 * HTTP. A database that cannot keep up shows as a lower achieved rate.
 */
function goSql() {
  const state = { revoked: 0, failed: 0, inFlight: 0, started: performance.now(), lastRevoked: null, problems: [], timer: null, due: 0 };
  const tick = () => {
    if (state.inFlight > 0) return;
    const due = Math.floor(((performance.now() - state.started) / 1000) * rate);
    const batch = [];
    while (state.due < due && batch.length < SQL_BATCH && ready.length) {
      state.due++;
      batch.push(ready.shift());
    }
    if (batch.length === 0) {
      if (!ready.length && state.problems.length < 5 && !state.problems.includes('ran out of issued tokens')) state.problems.push('ran out of issued tokens');
      return;
    }
    const inputs = batch.map(([token, k]) => {
      const c = claimsOf(token);
      return { jti: c.jti, exp: c.exp, clientId: keys[k].client_id, userId: sqlSide.owners.get(keys[k].client_id), ip: null, requestId: null };
    });
    state.inFlight = batch.length;
    sqlSide
      .revoke(inputs)
      .then(() => {
        state.revoked += batch.length;
        state.lastRevoked = batch[batch.length - 1][0];
      })
      .catch((err) => {
        state.failed += batch.length;
        if (state.problems.length < 5) state.problems.push(`revokeTokens: ${String(err?.message ?? err)}`);
      })
      .finally(() => (state.inFlight = 0));
  };
  state.timer = setInterval(tick, 5);
  return state;
}

function goHttp() {
  const state = { revoked: 0, failed: 0, inFlight: 0, started: performance.now(), lastRevoked: null, problems: [], timer: null, due: 0 };
  // Every 5 ms, send what is due since the start, at most MAX_IN_FLIGHT at once: Tessera commits
  // concurrent revocations together (one pool connection per group of up to 128), so this many in
  // flight keep it fed without any revocation waiting out the pool's 2 s acquire timeout (503). A
  // server that cannot keep up shows as a lower achieved rate.
  const tick = () => {
    const due = Math.floor(((performance.now() - state.started) / 1000) * rate);
    while (state.due < due && state.inFlight < MAX_IN_FLIGHT && ready.length) {
      state.due++;
      const [token, k] = ready.shift();
      state.inFlight++;
      fetch(`${base}/oauth/revoke`, { method: 'POST', headers: { ...FORM, authorization: auth[k] }, body: `token=${token}&token_type_hint=access_token` })
        .then(async (res) => {
          await res.arrayBuffer();
          if (res.status === 200) {
            state.revoked++;
            state.lastRevoked = token;
          } else {
            state.failed++;
            if (state.problems.length < 5) state.problems.push(`POST /oauth/revoke answered ${res.status}`);
          }
        })
        .catch((err) => {
          state.failed++;
          if (state.problems.length < 5) state.problems.push(String(err?.message ?? err));
        })
        .finally(() => state.inFlight--);
    }
    if (!ready.length && state.problems.length < 5 && !state.problems.includes('ran out of issued tokens')) state.problems.push('ran out of issued tokens');
  };
  state.timer = setInterval(tick, 5);
  return state;
}

async function stop(state) {
  clearInterval(state.timer);
  const seconds = (performance.now() - state.started) / 1000;
  while (state.inFlight > 0) await new Promise((r) => setTimeout(r, 5));
  return {
    type: 'stopped',
    revoked: state.revoked,
    failed: state.failed,
    seconds,
    perSecond: state.revoked / seconds,
    lastRevoked: state.lastRevoked,
    problems: state.problems,
  };
}

process.on('message', async (msg) => {
  try {
    if (msg.cmd === 'prepare') process.send({ type: 'prepared', tokens: await prepare(msg.seconds) });
    else if (msg.cmd === 'go') {
      flow = go();
      process.send({ type: 'going' });
    } else if (msg.cmd === 'stop') {
      const out = await stop(flow);
      flow = null;
      process.send(out);
    }
  } catch (err) {
    process.send({ type: 'error', message: String(err?.message ?? err) });
  }
});
process.on('disconnect', () => {
  // The runtime attached to Postgres: close it (never the cluster, which the bench's Tessera started).
  if (sqlSide) sqlSide.rt.close().finally(() => process.exit(0));
  else process.exit(0);
});
process.send({ type: 'started' });
