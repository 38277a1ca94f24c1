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
}

export interface ApiTokenTables {
  api_tokens: ApiTokensTable;
}
