// Child processes of the bench: start, wait for, sample CPU of, and always kill.
import { spawn } from 'node:child_process';
import { createWriteStream, existsSync, readFileSync, readdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
export { freePort } from '../../scripts/free-port.mjs';

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** Every child we started and have not seen exit; killed on any way out. */
const children = new Set();

/**
 * Starts `node <args>` with its output in `logFile`. Returns { child, pid, name, logFile, exited }.
 * The child stays in our process group, so a Ctrl-C in the terminal reaches it as well.
 */
export function startNode(name, args, { env, cwd, logFile }) {
  const out = createWriteStream(logFile, { flags: 'a' });
  const child = spawn(process.execPath, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.pipe(out, { end: false });
  child.stderr.pipe(out, { end: false });
  const proc = { name, child, pid: child.pid, logFile, exitCode: null };
  proc.exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      proc.exitCode = code ?? signal;
      children.delete(proc);
      resolve(proc.exitCode);
    });
  });
  child.once('error', () => children.delete(proc));
  children.add(proc);
  return proc;
}

/** Runs `node <args>` to completion (bounded); resolves with stdout, rejects with stderr. */
export function runNode(args, { env, cwd, timeoutMs = 120_000 }) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    const proc = { name: args.join(' '), child, pid: child.pid };
    children.add(proc);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`timed out after ${timeoutMs / 1000} s: node ${args.join(' ')}`));
    }, timeoutMs);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(timer);
      children.delete(proc);
      if (code === 0) resolve(stdout);
      else reject(new Error(`node ${args.join(' ')} exited ${code}: ${stderr.trim().slice(-2000)}`));
    });
  });
}

/** Polls `url` until it answers 200, the process exits, or `timeoutMs` passes. */
export async function waitReady(proc, url, timeoutMs, everyMs = 250) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`${proc.name} exited (${proc.exitCode}) while starting; see ${proc.logFile}:\n${tail(proc.logFile)}`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
      await res.arrayBuffer();
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`${proc.name} not ready at ${url} within ${timeoutMs / 1000} s; see ${proc.logFile}:\n${tail(proc.logFile)}`);
}

export function tail(file, lines = 30) {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Stops every child: SIGTERM, then SIGKILL after `graceMs`. Safe to call twice. */
export async function stopAll(graceMs = 20_000) {
  const procs = [...children];
  for (const p of procs) {
    try {
      p.child.kill('SIGTERM');
    } catch {
      // gone already
    }
  }
  await Promise.all(
    procs.map((p) =>
      Promise.race([
        p.exited ?? new Promise((r) => p.child.once('exit', r)),
        new Promise((r) => setTimeout(r, graceMs)).then(() => {
          try {
            p.child.kill('SIGKILL');
          } catch {
            // gone already
          }
        }),
      ]),
    ),
  );
}

/** Stops one child: SIGTERM, then SIGKILL after `graceMs`. */
export async function stopProc(p, graceMs = 30_000) {
  if (p.exitCode !== null && p.exitCode !== undefined) return;
  try {
    p.child.kill('SIGTERM');
  } catch {
    // gone already
  }
  const killed = setTimeout(() => {
    try {
      p.child.kill('SIGKILL');
    } catch {
      // gone already
    }
  }, graceMs);
  await p.exited;
  clearTimeout(killed);
}

/** Resident set size now and at its peak (VmRSS, VmHWM from /proc/<pid>/status), in bytes; null if gone. */
export function memory(pid) {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (name) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
    return { rss: kb('VmRSS'), peak: kb('VmHWM') };
  } catch {
    return null;
  }
}

/** Last resort from process.on('exit'): synchronous SIGKILL of whatever is left. */
export function killAllNow() {
  for (const p of children) {
    try {
      p.child.kill('SIGKILL');
    } catch {
      // gone already
    }
  }
}

// ---- CPU accounting from /proc -------------------------------------------------------------

function statFields(pid) {
  try {
    const raw = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces; everything after the last ')' is fixed-format.
    const rest = raw.slice(raw.lastIndexOf(')') + 2).split(' ');
    // rest[0] is field 3 (state); field N is rest[N - 3].
    return {
      ppid: Number(rest[1]),
      utime: Number(rest[11]),
      stime: Number(rest[12]),
      cutime: Number(rest[13]),
      cstime: Number(rest[14]),
    };
  } catch {
    return null;
  }
}

/** CPU seconds (user + system, all threads) the process has used so far; null if it is gone. */
export function cpuSeconds(pid) {
  const f = statFields(pid);
  return f ? (f.utime + f.stime) / CLK_TCK : null;
}

/**
 * CPU seconds of a Postgres cluster: the postmaster, its live children, and the children that
 * have exited already (reaped into the postmaster's cutime/cstime), so connections that come and
 * go between two samples are still counted.
 */
export function clusterCpuSeconds(postmasterPid) {
  const pm = statFields(postmasterPid);
  if (!pm) return null;
  let ticks = pm.utime + pm.stime + pm.cutime + pm.cstime;
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const f = statFields(name);
    if (f && f.ppid === postmasterPid) ticks += f.utime + f.stime;
  }
  return ticks / CLK_TCK;
}

/** The postmaster's pid from `<pgDir>/postmaster.pid`, or null. */
export function postmasterPid(pgDir) {
  const file = `${pgDir}/postmaster.pid`;
  if (!existsSync(file)) return null;
  const pid = Number(readFileSync(file, 'utf8').split('\n')[0]);
  return pid > 0 ? pid : null;
}
