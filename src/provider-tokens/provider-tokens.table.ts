import type { ColumnType, Generated } from 'kysely';

export type ProviderTokenOwnerType = 'user' | 'organization';

/** A quantum provider credential of a user or an organization, sealed under the master key. */
export interface ProviderTokensTable {
  id: Generated<string>;
  owner_type: ProviderTokenOwnerType;
  /** Set for `user` owners, null otherwise. */
  user_id: string | null;
  /** Set for `organization` owners, null otherwise. */
  organization_id: string | null;
  provider: string;
  label: string | null;
  /** nonce || AES-256-GCM ciphertext || tag of the credential JSON; AAD binds owner and provider. */
  ciphertext: Buffer;
  /** Id of the master key that sealed `ciphertext`. */
  key_id: string;
  /** `…abcd`: last characters of the provider's hint field, or null when that would reveal too much. */
  hint: string | null;
  created_by: string | null;
  updated_by: string | null;
  created_at: Generated<Date>;
  updated_at: ColumnType<Date, Date | string | undefined, Date | string>;
  last_used_at: Date | null;
}

export interface ProviderTokenTables {
  provider_tokens: ProviderTokensTable;
}
