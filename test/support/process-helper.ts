// Starting the service as an operator does: a real process, polled until ready.
import { spawn, type ChildProcess } from 'node:child_process';

export async function waitReady(port: number, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/readyz`);
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > until) throw new Error('service did not become ready');
    await new Promise((r) => setTimeout(r, 200));
  }
}

export function startServer(
  env: Record<string, string>,
  cwd: string | undefined,
  entry: string,
): { child: ChildProcess; exited: Promise<number | null>; output: () => string } {
  const child = spawn(process.execPath, [entry, 'serve'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], ...(cwd ? { cwd } : {}) });
  let out = '';
  child.stdout!.on('data', (c) => (out += c));
  child.stderr!.on('data', (c) => (out += c));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { child, exited, output: () => out };
}

/**
 * The environment of `npm start` in a checkout with no configuration: the embedded Postgres, the
 * data folder inside the checkout (no DATABASE_URL, no TESSERA_DATA_DIR from the test's own
 * environment), on free ports.
 */
export function checkoutEnv(port: number, pgPort: number): Record<string, string> {
  return {
    PORT: String(port),
    TESSERA_HOST: '127.0.0.1',
    TESSERA_EMBEDDED_PG_PORT: String(pgPort),
    TESSERA_LOG_LEVEL: 'info',
    DATABASE_URL: '',
    TESSERA_DATA_DIR: '',
  };
}
