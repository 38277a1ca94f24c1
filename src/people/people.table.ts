import type { ColumnType, Generated } from 'kysely';

/** Per-user sign-in state for people (the console). */
export interface PeopleAccountsTable {
  user_id: string;
  /** argon2id PHC string; null: no password set. */
  password_hash: string | null;
  /** The root API token console sessions act for; its secret was never shown to anyone. */
  grant_api_token_id: string | null;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
}

export interface PasskeysTable {
  id: Generated<string>;
  user_id: string;
  /** WebAuthn credential id (base64url). */
  credential_id: string;
  public_key: Buffer;
  counter: ColumnType<string, number | string | undefined, number | string>;
  transports: ColumnType<string[], string[] | undefined, string[]>;
  name: string;
  created_at: Generated<Date>;
  last_used_at: Date | null;
}

export interface ConsoleSessionsTable {
  id: Generated<string>;
  /** HMAC-SHA256(pepper, cookie value, 'console_session'); the cookie value is never stored. */
  token_hash: Buffer;
  user_id: string;
  /** The API token the session acts for (the user's console grant, or the token signed in with). */
  api_token_id: string;
  method: 'passkey' | 'password' | 'api_token';
  created_at: Date;
  last_seen_at: Date;
  /** Absolute end; the idle end is `last_seen_at` plus the configured idle timeout. */
  expires_at: Date;
  revoked_at: Date | null;
  ip: string | null;
  user_agent: string | null;
}

export interface UserInvitationsTable {
  id: Generated<string>;
  user_id: string;
  /** HMAC-SHA256(pepper, invitation code, 'user_invitation'). */
  token_hash: Buffer;
  scopes: ColumnType<string[], string[], string[]>;
  created_at: Date;
  expires_at: Date;
  used_at: Date | null;
}

export type PeopleTables = {
  people_accounts: PeopleAccountsTable;
  passkeys: PasskeysTable;
  console_sessions: ConsoleSessionsTable;
  user_invitations: UserInvitationsTable;
};
