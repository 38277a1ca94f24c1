import type { ColumnType, Generated } from 'kysely';

export interface ApiTokensTable {
  id: Generated<string>;
  user_id: string;
  name: string;
  /** HMAC-SHA256(pepper, token); the token itself is never stored. */
  token_hash: Buffer;
  /** The first characters of the token, for people to recognise it in a list. */
  display_prefix: string;
  scopes: ColumnType<string[], string[], string[]>;
  created_at: Generated<Date>;
  expires_at: Date | null;
  last_used_at: Date | null;
  revoked_at: Date | null;
  /**
   * The API token whose holder created this one through the API (directly or with a session made
   * from it); null when an operator created it. Never later than its parent's expiry nor more
   * scopes; revoking the parent revokes it.
   */
  parent_api_token_id: string | null;
}

export interface ApiTokenTables {
  api_tokens: ApiTokensTable;
}
