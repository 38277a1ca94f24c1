import type { ColumnType, Generated } from 'kysely';

export type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
export type Role = 'owner' | 'maintainer' | 'member';
export type UserStatus = 'active' | 'suspended';

export interface UsersTable {
  id: Generated<string>;
  email: string;
  name: string;
  status: ColumnType<UserStatus, UserStatus | undefined, UserStatus>;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
}

export interface OrganizationsTable {
  id: Generated<string>;
  name: string;
  created_at: Generated<Date>;
}

export interface MembershipsTable {
  organization_id: string;
  user_id: string;
  role: Role;
  created_at: Generated<Date>;
}

/** A pending invitation to join an organization (not a membership until accepted). */
export interface OrganizationInvitationsTable {
  id: Generated<string>;
  organization_id: string;
  user_id: string;
  role: Role;
  invited_by: string | null;
  created_at: Generated<Date>;
  expires_at: Timestamp;
}

export interface AuditEventsTable {
  id: Generated<number>;
  occurred_at: Generated<Date>;
  actor_user_id: string | null;
  /** What authenticated the actor: `api_token:<id>`, `session:<id>`, `client:<client_id>`, `cli`, `system`. */
  actor_credential: string | null;
  action: string;
  target_type: string | null;
  target_id: string | null;
  organization_id: string | null;
  ip: string | null;
  request_id: string | null;
  details: ColumnType<Record<string, unknown>, string | undefined, string>;
}

export interface IdentityTables {
  users: UsersTable;
  organizations: OrganizationsTable;
  memberships: MembershipsTable;
  organization_invitations: OrganizationInvitationsTable;
  audit_events: AuditEventsTable;
}
