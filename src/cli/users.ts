import { activateUser, suspendUser } from '../identity/users.service.js';
import { CLI_ACTOR, cliCascades, flags, print, required, withRuntime, type Command } from './context.js';
import { resolveUser } from './identity.js';

/** Suspending and re-activating users. */
export const userStatusCommands: Command[] = [
  {
    name: 'users suspend',
    usage: 'tessera users suspend --user USER',
    summary:
      'suspend a user (id or email): every API token and session of theirs ends and every SDK key is disabled, at once, ' +
      'on every instance; tokens issued before stay refused for good',
    async run(argv) {
      const { values } = flags(argv, { user: { type: 'string' } }, this.usage);
      const ref = required(values.user, 'user', this.usage);
      await withRuntime(async ({ handle }) => {
        const user = await resolveUser(handle.db, ref);
        const done = await suspendUser({ db: handle.db, cascades: cliCascades() }, { userId: user.id, now: new Date(), actor: CLI_ACTOR });
        print({
          id: user.id,
          status: done!.user.status,
          api_tokens_revoked: done!.tokensRevoked,
          sessions_ended: done!.sessionsEnded,
          sdk_keys_disabled: done!.sdkKeysDisabled.length,
        });
      });
    },
  },
  {
    name: 'users activate',
    usage: 'tessera users activate --user USER',
    summary: 'make a suspended user active again (nothing comes back: create new API tokens, re-enable SDK keys)',
    async run(argv) {
      const { values } = flags(argv, { user: { type: 'string' } }, this.usage);
      const ref = required(values.user, 'user', this.usage);
      await withRuntime(async ({ handle }) => {
        const user = await resolveUser(handle.db, ref);
        const updated = await activateUser(handle.db, { userId: user.id, actor: CLI_ACTOR });
        print({ id: user.id, status: updated!.status });
      });
    },
  },
];
