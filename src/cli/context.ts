import { parseArgs, type ParseArgsConfig } from 'node:util';
import { openRuntime, type Runtime } from '../platform/runtime.js';
import type { Actor } from '../platform/database/audit.repository.js';
import { credentialCascades } from '../cascades.js';
import type { CascadeRegistry } from '../platform/cascades.js';

/** A CLI failure with a message for the operator (exit code 1, no stack trace). */
export class CliError extends Error {
  override name = 'CliError';
}

export interface Command {
  /** e.g. `users create` */
  name: string;
  usage: string;
  summary: string;
  run(argv: string[]): Promise<void>;
}

export const CLI_ACTOR: Actor = { userId: null, credential: 'cli' };

/** The credential cascades the CLI's changes run (the application's, built the same way). */
export function cliCascades(): CascadeRegistry {
  return credentialCascades();
}

type FlagsConfig<T> = { args: string[]; options: T; allowPositionals: true; strict: true };

/** Parses `--flag value` options; unknown flags are an error naming them. */
export function flags<T extends NonNullable<ParseArgsConfig['options']>>(
  argv: string[],
  options: T,
  usage: string,
): ReturnType<typeof parseArgs<FlagsConfig<T>>> {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new CliError(`${(err as Error).message}\nusage: ${usage}`);
  }
}

export function required(value: string | boolean | undefined, name: string, usage: string): string {
  if (typeof value !== 'string' || value.trim() === '') throw new CliError(`--${name} is required\nusage: ${usage}`);
  return value.trim();
}

/** Runs `fn` with the database open (embedded Postgres started or attached), logs at warn. */
export async function withRuntime<T>(fn: (rt: Runtime) => Promise<T>): Promise<T> {
  const rt = await openRuntime(process.env, { logLevel: process.env.TESSERA_LOG_LEVEL ?? 'warn', logToStderr: true });
  try {
    return await fn(rt);
  } finally {
    await rt.close();
  }
}

/** Prints JSON for scripts, or aligned text. */
export function print(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}
