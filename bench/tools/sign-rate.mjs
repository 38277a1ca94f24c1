// Raw signature rates of this machine with every core: one worker thread per CPU, each working
// synchronously with node:crypto for the given time, nothing else in the workers (no HTTP, no parsing).
// - signRate: Ed25519 signatures of a typical access token's signing input (header.payload, ~330 bytes);
// - proofCheckRate: checks of a DPoP proof's signature (the bench's proofs: ES256, or EdDSA with
//   BENCH_DPOP_ALG=EdDSA), each of the same proof, with the key object made once.
//
// usage: node bench/tools/sign-rate.mjs [seconds=5] [threads=<cpus>] [sign|proof-check]   -> JSON
// or import { signRate, proofCheckRate } and await signRate(seconds, threads).
import { generateKeyPairSync, randomUUID, sign, verify } from 'node:crypto';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { DPOP_ALG, dpopKey, dpopProof } from '../lib/dpop-proofs.mjs';

const SELF = fileURLToPath(import.meta.url);
const CPUS = os.availableParallelism?.() ?? os.cpus().length;

function signingInput() {
  const header = Buffer.from(JSON.stringify({ alg: 'EdDSA', kid: 'k'.repeat(43), typ: 'at+jwt' })).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const payload = {
    iss: 'http://127.0.0.1:8080',
    sub: randomUUID(),
    aud: 'urn:bench:api',
    iat: now,
    exp: now + 3600,
    jti: randomUUID(),
    client_id: `s_${randomUUID()}`,
    scope: 'api',
  };
  return Buffer.from(`${header}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}`);
}

/** The one operation a worker repeats: an Ed25519 signature, or a DPoP proof's signature check. */
function operation(op) {
  if (op === 'sign') {
    const { privateKey } = generateKeyPairSync('ed25519');
    const data = signingInput();
    return () => sign(null, data, privateKey);
  }
  const key = dpopKey(DPOP_ALG);
  const proof = dpopProof(key, 'GET', 'http://127.0.0.1:8080/gateway/verify', 'a'.repeat(600));
  const dot = proof.lastIndexOf('.');
  const data = Buffer.from(proof.slice(0, dot));
  const sig = Buffer.from(proof.slice(dot + 1), 'base64url');
  const { publicKey } = key;
  if (DPOP_ALG === 'EdDSA') return () => verify(null, data, publicKey, sig);
  const ec = { key: publicKey, dsaEncoding: 'ieee-p1363' };
  return () => verify('sha256', data, ec, sig);
}

async function rate(op, seconds, threads) {
  const workers = Array.from({ length: threads }, () => new Worker(SELF, { workerData: { seconds, op } }));
  const counts = await Promise.all(
    workers.map(
      (w) =>
        new Promise((resolve, reject) => {
          w.once('message', resolve);
          w.once('error', reject);
        }),
    ),
  );
  await Promise.all(workers.map((w) => w.terminate()));
  const total = counts.reduce((s, c) => s + c.count, 0);
  const elapsed = Math.max(...counts.map((c) => c.seconds));
  return { threads, seconds: elapsed, count: total, perSecond: total / elapsed, perThread: counts.map((c) => Math.round(c.count / c.seconds)) };
}

/** Ed25519 signatures per second over `threads` worker threads (default: every CPU), measured for `seconds`. */
export function signRate(seconds = 5, threads = CPUS) {
  return rate('sign', seconds, threads);
}

/** DPoP proof signature checks per second (the bench's algorithm) over `threads` worker threads, measured for `seconds`. */
export async function proofCheckRate(seconds = 5, threads = CPUS) {
  return { ...(await rate('proof-check', seconds, threads)), alg: DPOP_ALG };
}

if (!isMainThread) {
  const once = operation(workerData.op);
  for (let i = 0; i < 200; i++) once(); // warm-up
  const start = process.hrtime.bigint();
  const until = start + BigInt(Math.round(workerData.seconds * 1e9));
  let n = 0;
  let now = start;
  while (now < until) {
    for (let i = 0; i < 100; i++) once();
    n += 100;
    now = process.hrtime.bigint();
  }
  parentPort.postMessage({ count: n, seconds: Number(now - start) / 1e9 });
} else if (process.argv[1] === SELF) {
  const [seconds, threads] = process.argv.slice(2, 4).map(Number);
  const measure = process.argv[4] === 'proof-check' ? proofCheckRate : signRate;
  process.stdout.write(JSON.stringify(await measure(seconds || 5, threads || undefined)) + '\n');
}
