import type { ColumnType, Generated } from 'kysely';

/** Temporary access tokens from `POST /api/users/loginWithToken`. */
export interface SessionsTable {
  id: Generated<string>;
  /** HMAC-SHA256(pepper, token, 'session'); the token itself is never stored. */
  token_hash: Buffer;
  user_id: string;
  /** The API token the session was made from; revoking it ends the session. */
  api_token_id: string;
  /** The scopes of that API token at login (API token scopes never change). */
  scopes: ColumnType<string[], string[], string[]>;
  created_at: ColumnType<Date, Date | undefined, Date>;
  /** Absolute expiry; with sliding sessions the effective expiry is also `last_used_at + ttl`. */
  expires_at: ColumnType<Date, Date, Date>;
  last_used_at: Date | null;
  /** Set by logout, API token revocation or user suspension. */
  revoked_at: Date | null;
  /** Where the login came from (audit aid). */
  ip: string | null;
}

export interface SessionTables {
  sessions: SessionsTable;
}
