import { API_SCOPES } from '../platform/auth/scopes.js';
import { findUserByEmail } from '../identity/users.repository.js';
import { createUserAudited } from '../identity/users.service.js';
import { DEFAULT_INVITATION_SCOPES, inviteUser } from '../people/invitations.js';
import { CLI_ACTOR, CliError, flags, print, required, withRuntime, type Command } from './context.js';

/** Inviting people to the console. */
export const inviteCommands: Command[] = [
  {
    name: 'users invite',
    usage: 'tessera users invite --email EMAIL [--name NAME] [--scopes api,quantum_tokens]',
    summary:
      'invite a person to the console (the user is created when no user has this email): prints a one-time link, ' +
      'valid for TESSERA_CONSOLE_INVITATION_TTL (default 72h), where they create a passkey or set a password; ' +
      '--scopes are what their console sign-in may grant (default api,quantum_tokens; admin makes an operator)',
    async run(argv) {
      const { values } = flags(argv, { email: { type: 'string' }, name: { type: 'string' }, scopes: { type: 'string' } }, this.usage);
      const email = required(values.email, 'email', this.usage);
      if (!/^[^\s@]+@[^\s@]+$/.test(email) || email.length > 320) throw new CliError(`--email must be an email address\nusage: ${this.usage}`);
      const scopes = values.scopes
        ? values.scopes
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean)
        : [...DEFAULT_INVITATION_SCOPES];
      const unknown = scopes.filter((s) => !(API_SCOPES as readonly string[]).includes(s));
      if (scopes.length === 0 || unknown.length)
        throw new CliError(`--scopes must be a comma-separated list of ${API_SCOPES.join(', ')}\nusage: ${this.usage}`);
      await withRuntime(async ({ handle, config }) => {
        const existing = await findUserByEmail(handle.db, email);
        const user = existing ?? (await createUserAudited(handle.db, CLI_ACTOR, { email, name: values.name?.trim() || email.split('@')[0]! }));
        const inv = await inviteUser(handle.db, config.pepper, CLI_ACTOR, {
          userId: user.id,
          scopes,
          ttlSeconds: config.console.invitationTtlSeconds,
          now: new Date(),
          issuer: config.issuer,
        });
        print({ user_id: user.id, email: user.email, created: !existing, url: inv!.url, scopes: inv!.scopes, expires_at: inv!.expiresAt.toISOString() });
      });
    },
  },
];
