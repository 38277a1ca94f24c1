import { migrateToLatest } from '../platform/database/migrate.js';
import { findUserByEmail, findUserById } from '../identity/users.repository.js';
import { findOrganization, ROLES } from '../identity/organizations.repository.js';
import { createUserAudited } from '../identity/users.service.js';
import { createOrganizationAsOperator } from '../identity/organizations.service.js';
import { createApiTokenAsOperator } from '../api-tokens/api-tokens.service.js';
import { API_SCOPES, isApiScope } from '../platform/auth/scopes.js';
import type { Role } from '../identity/identity.table.js';
import type { Db } from '../platform/database/database.js';
import { systemClock } from '../platform/clock.js';
import { ApiError } from '../platform/errors/api-error.js';
import { changeMembership } from '../identity/memberships.service.js';
import { inviteAsOperator } from '../identity/invitations.service.js';
import { CLI_ACTOR, cliCascades, CliError, flags, print, required, withRuntime, type Command } from './context.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A user named by id or email. */
export async function resolveUser(db: Db, ref: string) {
  const user = UUID.test(ref) ? await findUserById(db, ref) : await findUserByEmail(db, ref);
  if (!user) throw new CliError(`no user ${ref}`);
  return user;
}

/** Service refusals (ApiError) become CLI errors with the same message. */
function cliError(err: unknown): never {
  if (err instanceof ApiError) throw new CliError(err.message);
  throw err;
}

/** `--org ID --user USER --role R` of the membership commands, checked before any database work. */
function membershipFlags(argv: string[], usage: string): { orgId: string; role: Role; userRef: string } {
  const { values } = flags(argv, { org: { type: 'string' }, user: { type: 'string' }, role: { type: 'string' } }, usage);
  const orgId = required(values.org, 'org', usage);
  const role = (values.role ?? 'member') as Role;
  if (!ROLES.includes(role)) throw new CliError(`--role must be one of ${ROLES.join(', ')}`);
  if (!UUID.test(orgId)) throw new CliError(`--org takes an organization id (uuid), got ${orgId}`);
  return { orgId, role, userRef: required(values.user, 'user', usage) };
}

export const migrateCommand: Command = {
  name: 'migrate',
  usage: 'tessera migrate',
  summary: 'apply pending database migrations (safe with several instances running)',
  async run() {
    await withRuntime(async ({ handle }) => {
      const applied = await migrateToLatest(handle.db);
      print({ applied });
    });
  },
};

export const identityCommands: Command[] = [
  {
    name: 'users create',
    usage: 'tessera users create --email EMAIL --name NAME',
    summary: 'create a user',
    async run(argv) {
      const { values } = flags(argv, { email: { type: 'string' }, name: { type: 'string' } }, this.usage);
      const email = required(values.email, 'email', this.usage);
      const name = required(values.name, 'name', this.usage);
      if (!/^[^\s@]+@[^\s@]+$/.test(email)) throw new CliError(`not an email address: ${email}`);
      await withRuntime(async ({ handle }) => {
        const user = await createUserAudited(handle.db, CLI_ACTOR, { email, name }).catch(cliError);
        print({ id: user.id, email: user.email, name: user.name, status: user.status });
      });
    },
  },
  {
    name: 'orgs create',
    usage: 'tessera orgs create --name NAME [--owner USER]',
    summary: 'create an organization, optionally with its first owner (id or email)',
    async run(argv) {
      const { values } = flags(argv, { name: { type: 'string' }, owner: { type: 'string' } }, this.usage);
      const name = required(values.name, 'name', this.usage);
      await withRuntime(async ({ handle }) => {
        const owner = values.owner ? await resolveUser(handle.db, values.owner) : null;
        const org = await createOrganizationAsOperator(handle.db, CLI_ACTOR, { name, ownerId: owner?.id }).catch(cliError);
        print({ id: org.id, name: org.name, owner: owner?.id ?? null });
      });
    },
  },
  {
    name: 'orgs add-member',
    usage: 'tessera orgs add-member --org ORG_ID --user USER --role owner|maintainer|member',
    summary: 'add a user to an organization, or change their role',
    async run(argv) {
      const { orgId, role, userRef } = membershipFlags(argv, this.usage);
      await withRuntime(async ({ handle }) => {
        const user = await resolveUser(handle.db, userRef);
        if (!(await findOrganization(handle.db, orgId))) throw new CliError(`no organization ${orgId}`);
        const m = await changeMembership(
          { db: handle.db, clock: systemClock, cascades: cliCascades() },
          { kind: 'operator', audit: CLI_ACTOR },
          orgId,
          user.id,
          role,
        ).catch(cliError);
        print({ organization_id: m.organizationId, user_id: m.userId, role: m.role });
      });
    },
  },
  {
    name: 'orgs invite',
    usage: 'tessera orgs invite --org ORG_ID --user USER --role owner|maintainer|member',
    summary: 'invite a user to an organization (a membership once they accept; orgs add-member adds directly)',
    async run(argv) {
      const { orgId, role, userRef } = membershipFlags(argv, this.usage);
      await withRuntime(async ({ handle }) => {
        const user = await resolveUser(handle.db, userRef);
        const inv = await inviteAsOperator({ db: handle.db, clock: systemClock, cascades: cliCascades() }, CLI_ACTOR, orgId, user.id, role).catch(cliError);
        print({
          invitation: {
            id: inv.id,
            organization_id: inv.organization_id,
            user_id: inv.user_id,
            role: inv.role,
            expires_at: inv.expires_at.toISOString(),
          },
        });
      });
    },
  },
  {
    name: 'tokens create',
    usage: 'tessera tokens create --user USER --scopes api[,quantum_tokens][,admin] [--name NAME] [--expires-in DAYS]',
    summary: 'create an API token for a user and print it once (bootstrap an operator with --scopes api,admin)',
    async run(argv) {
      const { values } = flags(
        argv,
        { user: { type: 'string' }, scopes: { type: 'string' }, name: { type: 'string' }, 'expires-in': { type: 'string' } },
        this.usage,
      );
      const scopes = required(values.scopes, 'scopes', this.usage).split(/[ ,]+/).filter(Boolean);
      const bad = scopes.filter((s) => !isApiScope(s));
      if (bad.length || scopes.length === 0) throw new CliError(`unknown scope(s): ${bad.join(', ') || '(none)'}; choose from ${API_SCOPES.join(', ')}`);
      let expiresAt: Date | null = null;
      if (values['expires-in'] !== undefined) {
        const days = Number(values['expires-in']);
        if (!Number.isInteger(days) || days < 1 || days > 3650) throw new CliError('--expires-in takes a whole number of days (1 to 3650)');
        expiresAt = new Date(Date.now() + days * 86400_000);
      }
      await withRuntime(async ({ handle, config }) => {
        const user = await resolveUser(handle.db, required(values.user, 'user', this.usage));
        const { token, row } = await createApiTokenAsOperator(handle.db, config.pepper, CLI_ACTOR, {
          userId: user.id,
          name: values.name?.trim() || 'cli',
          scopes,
          expiresAt,
        });
        process.stderr.write('This token is shown once; store it now.\n');
        print({ id: row.id, user_id: user.id, scopes: row.scopes, expires_at: row.expires_at, token });
      });
    },
  },
];
