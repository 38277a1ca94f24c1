// A steady flow of revocations into Tessera, in its own process (so its CPU is not the bench's):
// RFC 7009 POST /oauth/revoke of access tokens issued beforehand to the bench's revoker SDK keys.
// Each revocation commits a `token_revoked` security event that every verifier subscribed to
// /events/stream receives.
//
// Driven by bench/run.mjs over the IPC channel:
//   { cmd: 'prepare', seconds }  issue enough tokens for `seconds` at the rate (outside the measured run)
//                                -> { type: 'prepared', tokens }
//   { cmd: 'go' }                start revoking at the rate -> { type: 'going' }
//   { cmd: 'stop' }              stop -> { type: 'stopped', revoked, failed, seconds, perSecond, lastRevoked, problems }
// env: BENCH_TESSERA_URL, BENCH_REVOKER_KEYS (JSON [{client_id, client_secret}, ...]), BENCH_REVOCATIONS_PER_SECOND
const base = process.env.BENCH_TESSERA_URL;
const keys = JSON.parse(process.env.BENCH_REVOKER_KEYS ?? '[]');
const rate = Number(process.env.BENCH_REVOCATIONS_PER_SECOND);
if (!base || !keys.length || !(rate > 0)) throw new Error('BENCH_TESSERA_URL, BENCH_REVOKER_KEYS and BENCH_REVOCATIONS_PER_SECOND are required');

const FORM = { 'content-type': 'application/x-www-form-urlencoded' };
const auth = keys.map((k) => 'Basic ' + Buffer.from(`${encodeURIComponent(k.client_id)}:${encodeURIComponent(k.client_secret)}`).toString('base64'));
/** Issued, not yet revoked: [token, index of the key that holds it]. */
const ready = [];
let nextKey = 0;
const MAX_IN_FLIGHT = 128;

async function issue() {
  const k = nextKey++ % auth.length;
  const res = await fetch(`${base}/oauth/token`, { method: 'POST', headers: { ...FORM, authorization: auth[k] }, body: 'grant_type=client_credentials' });
  const body = await res.json().catch(() => null);
  if (res.status !== 200 || typeof body?.access_token !== 'string') throw new Error(`POST /oauth/token answered ${res.status}`);
  ready.push([body.access_token, k]);
}

async function prepare(seconds) {
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
process.on('disconnect', () => process.exit(0));
process.send({ type: 'started' });
