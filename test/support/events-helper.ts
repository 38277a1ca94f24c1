// Shared by the security-events tests: two listening instances on one database, a verifier's
// verdict as a string, and polling until a condition holds.
import type { Test } from 'tap';
import type { FastifyInstance } from 'fastify';
import { TesseraVerifyError, type Verifier } from '../../src/client/index.js';
import { freePort, harness, type Harness } from './helper.js';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it returns true (at most `ms`); returns its last answer. */
export async function eventually(check: () => Promise<boolean>, ms = 10_000): Promise<boolean> {
  const end = Date.now() + ms;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > end) return false;
    await sleep(20);
  }
}

/** `ok`, or the reason the verifier refused `token`. */
export async function outcome(v: Verifier, token: string): Promise<string> {
  try {
    await v.verify(token);
    return 'ok';
  } catch (err) {
    if (err instanceof TesseraVerifyError) return err.reason;
    throw err;
  }
}

export interface TwoInstances {
  h: Harness;
  issuer: string;
  urlA: string;
  urlB: string;
  b: FastifyInstance;
}

/** Instance A (the harness, listening at the issuer URL) and a second instance B on the same database. */
export async function twoInstances(t: Test): Promise<TwoInstances> {
  const portA = await freePort();
  const issuer = `http://127.0.0.1:${portA}`;
  const h = await harness(t, { env: { TESSERA_ISSUER: issuer, TESSERA_RATE_LIMIT: 'false' } });
  await h.app.listen({ port: portA, host: '127.0.0.1' });
  const b = await h.instance();
  const portB = await freePort();
  await b.listen({ port: portB, host: '127.0.0.1' });
  return { h, issuer, urlA: issuer, urlB: `http://127.0.0.1:${portB}`, b };
}
