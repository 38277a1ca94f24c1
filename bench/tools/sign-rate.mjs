// The raw Ed25519 signing rate of this machine with every core: one worker thread per CPU, each
// signing a typical access token's signing input (header.payload, ~330 bytes) synchronously with
// node:crypto for the given time. Nothing else runs in the workers: no HTTP, no parsing.
//
// usage: node bench/tools/sign-rate.mjs [seconds=5] [threads=<cpus>]   -> JSON
// or import { signRate } and await signRate(seconds, threads).
import { generateKeyPairSync, randomUUID, sign } from 'node:crypto';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';

const SELF = fileURLToPath(import.meta.url);

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

/** Signatures per second over `threads` worker threads (default: every CPU), measured for `seconds`. */
export async function signRate(seconds = 5, threads = os.availableParallelism?.() ?? os.cpus().length) {
  const workers = Array.from({ length: threads }, () => new Worker(SELF, { workerData: { seconds } }));
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
  const total = counts.reduce((s, c) => s + c.signatures, 0);
  const elapsed = Math.max(...counts.map((c) => c.seconds));
  return { threads, seconds: elapsed, signatures: total, perSecond: total / elapsed, perThread: counts.map((c) => Math.round(c.signatures / c.seconds)) };
}

if (!isMainThread) {
  const { privateKey } = generateKeyPairSync('ed25519');
  const data = signingInput();
  for (let i = 0; i < 200; i++) sign(null, data, privateKey); // warm-up
  const start = process.hrtime.bigint();
  const until = start + BigInt(Math.round(workerData.seconds * 1e9));
  let n = 0;
  let now = start;
  while (now < until) {
    for (let i = 0; i < 100; i++) sign(null, data, privateKey);
    n += 100;
    now = process.hrtime.bigint();
  }
  parentPort.postMessage({ signatures: n, seconds: Number(now - start) / 1e9 });
} else if (process.argv[1] === SELF) {
  const [seconds, threads] = process.argv.slice(2).map(Number);
  process.stdout.write(JSON.stringify(await signRate(seconds || 5, threads || undefined)) + '\n');
}
