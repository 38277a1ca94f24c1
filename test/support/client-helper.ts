// Shared by the client SDK tests: a real listening Tessera whose issuer is its own URL, with a
// request counter and a switch that makes the next N requests to a path answer 503.
import type { FastifyInstance } from 'fastify';
import { freePort, harness, type Harness, type TeardownHost } from './helper.js';

export interface LiveTessera {
  h: Harness;
  issuer: string;
  /** Requests seen per path (query string dropped). */
  count(path: string): number;
  /** The next `n` requests to `path` answer 503 temporarily_unavailable with `Retry-After: retryAfter`. */
  failNext(path: string, n: number, retryAfter?: string): void;
}

export async function liveTessera(t: TeardownHost, env: Record<string, string> = {}): Promise<LiveTessera> {
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const counts = new Map<string, number>();
  const failing = new Map<string, { n: number; retryAfter: string }>();
  const routes = (app: FastifyInstance) => {
    app.addHook('onRequest', async (request, reply) => {
      const path = request.url.split('?')[0]!;
      counts.set(path, (counts.get(path) ?? 0) + 1);
      const f = failing.get(path);
      if (f && f.n > 0) {
        f.n--;
        // The body the route's own error format gives a 503 (as the error handler renders it).
        const oauth = request.routeOptions.config?.errorFormat === 'oauth';
        return reply
          .code(503)
          .header('retry-after', f.retryAfter)
          .send(oauth ? { error: 'temporarily_unavailable', error_description: 'test outage' } : { error: 'service_unavailable', message: 'test outage' });
      }
    });
  };
  const h = await harness(t, { env: { TESSERA_ISSUER: issuer, ...env }, routes });
  await h.app.listen({ port, host: '127.0.0.1' });
  return {
    h,
    issuer,
    count: (path) => counts.get(path) ?? 0,
    failNext: (path, n, retryAfter = '0') => void failing.set(path, { n, retryAfter }),
  };
}

/** A clock the client side moves by hand (the server keeps its own). */
export class ManualClock {
  constructor(public ms = Date.now()) {}
  now = (): number => this.ms;
  advance(seconds: number): void {
    this.ms += seconds * 1000;
  }
}

/** An injected sleep that records the delays asked for and does not wait. */
export function recordingSleep(): { sleep: (ms: number) => Promise<void>; delays: number[] } {
  const delays: number[] = [];
  return { delays, sleep: async (ms) => void delays.push(ms) };
}
