import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ConfigError } from './platform/config.js';
import { CliError, type Command } from './cli/context.js';
import { identityCommands, migrateCommand } from './cli/identity.js';
import { rewrapCommand } from './cli/rewrap.js';
import { keyCommands } from './cli/keys.js';
import { userStatusCommands } from './cli/users.js';
import { inviteCommands } from './cli/invite.js';
import { runServer } from './server.js';

const serveCommand: Command = {
  name: 'serve',
  usage: 'tessera serve',
  summary: 'run the service (embedded Postgres under ./.tessera when DATABASE_URL is unset)',
  run: () => runServer(),
};

/** Every operator command; features add theirs here. */
export const COMMANDS: Command[] = [serveCommand, migrateCommand, ...identityCommands, ...userStatusCommands, ...inviteCommands, rewrapCommand, ...keyCommands];

function help(): string {
  return ['usage: tessera <command> [options]', '', ...COMMANDS.map((c) => `  ${c.usage}\n      ${c.summary}`)].join('\n');
}

/** Finds the longest command name matching the start of argv (among `commands`, by default every command). */
export async function main(argv: string[], commands: readonly Command[] = COMMANDS): Promise<number> {
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    process.stdout.write(help() + '\n');
    return argv.length === 0 ? 1 : 0;
  }
  const matches = commands
    .filter((c) => {
      const words = c.name.split(' ');
      return words.every((w, i) => argv[i] === w);
    })
    .sort((a, b) => b.name.length - a.name.length);
  const cmd = matches[0];
  if (!cmd) {
    process.stderr.write(`tessera: unknown command "${argv.join(' ')}"\n\n${help()}\n`);
    return 1;
  }
  try {
    await cmd.run(argv.slice(cmd.name.split(' ').length));
    return 0;
  } catch (err) {
    if (err instanceof CliError || err instanceof ConfigError) {
      process.stderr.write(`tessera: ${err.message}\n`);
      return 1;
    }
    process.stderr.write(`tessera: ${(err as Error).message ?? String(err)}\n`);
    return 1;
  }
}

const invokedDirectly = (() => {
  try {
    return realpathSync(process.argv[1] ?? '') === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
})();
const viaLauncher = process.argv[1]?.endsWith('tessera.js') || process.argv[1]?.endsWith('/tessera');

if (invokedDirectly || viaLauncher) {
  main(process.argv.slice(2)).then(
    (code) => {
      // `serve` keeps running; every other command exits when done.
      if (process.argv[2] !== 'serve' || code !== 0) process.exit(code);
    },
    (err) => {
      process.stderr.write(`tessera: ${(err as Error).message}\n`);
      process.exit(1);
    },
  );
}
