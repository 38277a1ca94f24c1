import type { Runtime } from '../platform/runtime.js';
import { SigningKeyLifecycle } from '../signing-keys/rotation.js';
import { ApiError } from '../platform/errors/api-error.js';
import { CLI_ACTOR, CliError, flags, print, withRuntime, type Command } from './context.js';

/** What the commands pass to the signing-key lifecycle besides the runtime (tests inject a pause). */
export interface KeyCommandOptions {
  /** Called at each lifecycle step's points (`<step>:commit` inside its transaction, `<step>:done` after it). */
  pause?: (point: string) => Promise<void>;
}

/** `tessera keys ...` (next to `keys rewrap`), with the lifecycle made from `opts`. */
export function keyCommandsWith(opts: KeyCommandOptions): Command[] {
  const lifecycleOf = (rt: Runtime): SigningKeyLifecycle =>
    new SigningKeyLifecycle({
      db: rt.handle.db,
      config: rt.config,
      clock: { now: () => Date.now() },
      log: rt.log,
      ...(opts.pause && { pause: opts.pause }),
    });

  const list: Command = {
    name: 'keys list',
    usage: 'tessera keys list',
    summary: 'list signing keys (kid, alg, state, times; never private material) and the rotation schedule',
    async run(argv) {
      flags(argv, {}, this.usage);
      await withRuntime(async (rt) => {
        const lc = lifecycleOf(rt);
        print({ keys: await lc.list(), next_rotation_at: await lc.nextRotationAt() });
      });
    },
  };

  const rotate: Command = {
    name: 'keys rotate',
    usage: 'tessera keys rotate [--immediate]',
    summary: 'pre-publish a new signing key (it signs after TESSERA_KEY_PREPUBLISH); --immediate: it signs now',
    async run(argv) {
      const { values, positionals } = flags(argv, { immediate: { type: 'boolean' } }, this.usage);
      if (positionals.length) throw new CliError(`unexpected argument ${positionals[0]}\nusage: ${this.usage}`);
      await withRuntime(async (rt) => {
        const result = await lifecycleOf(rt).rotate(CLI_ACTOR, { immediate: values.immediate === true });
        print(result);
        if (result.warning) process.stderr.write(`tessera: warning: ${result.warning}\n`);
      });
    },
  };

  const revoke: Command = {
    name: 'keys revoke',
    usage: 'tessera keys revoke <kid>',
    summary: 'emergency: unpublish a signing key and reject its tokens (an active key is replaced in the same step)',
    async run(argv) {
      const { positionals } = flags(argv, {}, this.usage);
      if (positionals.length !== 1) throw new CliError(`name one kid\nusage: ${this.usage}`);
      await withRuntime(async (rt) => {
        try {
          print(await lifecycleOf(rt).revoke(CLI_ACTOR, positionals[0]!));
        } catch (err) {
          // The operator named the kid: say which one is unknown.
          if (err instanceof ApiError) throw new CliError(err.code === 'not_found' ? `signing key ${positionals[0]!} not found` : err.message);
          throw err;
        }
      });
    },
  };

  const prune: Command = {
    name: 'keys prune',
    usage: 'tessera keys prune',
    summary: 'remove retired and revoked signing keys whose tokens have all expired (the job does it too)',
    async run(argv) {
      flags(argv, {}, this.usage);
      await withRuntime(async (rt) => {
        print({ removed: await lifecycleOf(rt).prune(CLI_ACTOR) });
      });
    },
  };

  return [list, rotate, revoke, prune];
}

/** `tessera keys ...` (next to `keys rewrap`). */
export const keyCommands: Command[] = keyCommandsWith({});
