import type { ColumnType, Generated } from 'kysely';

export type SdkKeyStatus = 'enabled' | 'disabled';
export type SdkKeyAuthMethod = 'client_secret_basic' | 'private_key_jwt';

/** A registered public key: its public members and the algorithm assertions are signed with. */
export interface PublicJwk {
  kty: string;
  alg: string;
  crv?: string;
  x?: string;
  y?: string;
  n?: string;
  e?: string;
  kid?: string;
}

export interface SdkKeysTable {
  id: Generated<string>;
  /** `s_<uuid>`, the OAuth client_id. */
  client_id: string;
  user_id: string;
  name: string;
  /** HMAC-SHA256(pepper, 'sdk_key' \0 secret); the secret itself is never stored. Null for private_key_jwt keys. */
  secret_hash: Buffer | null;
  scopes: ColumnType<string[], string[], string[]>;
  organization_id: string | null;
  status: ColumnType<SdkKeyStatus, SdkKeyStatus | undefined, SdkKeyStatus>;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
  last_used_at: Date | null;
  /** Tokens issued (iat) before this instant are rejected. */
  tokens_valid_after: Date | null;
  /** The API token that created the key; revoking it deletes the key. Null: no parent. */
  parent_api_token_id: string | null;
  /** The key stops authenticating then (its parent's expiry); its tokens expire by then too. */
  expires_at: Date | null;
  /** Audiences its tokens may name besides the issuer; null: any the operator allows. */
  audiences: ColumnType<string[] | null, string[] | null | undefined, string[] | null>;
  /** The secret before the last rotation, accepted until `previous_secret_expires_at` (both null: none). */
  previous_secret_hash: ColumnType<Buffer | null, Buffer | null | undefined, Buffer | null>;
  previous_secret_expires_at: ColumnType<Date | null, Date | null | undefined, Date | null>;
  /** How the key authenticates: a secret (Basic or post) or assertions signed by the key of `public_jwk`. */
  token_endpoint_auth_method: ColumnType<SdkKeyAuthMethod, SdkKeyAuthMethod | undefined, SdkKeyAuthMethod>;
  /** The public JWK of a private_key_jwt key (public members and `alg` only). */
  public_jwk: ColumnType<PublicJwk | null, string | null, string | null>;
  /** RFC 9449 §5.2: the key gets DPoP-bound tokens only. */
  dpop_bound_access_tokens: ColumnType<boolean, boolean | undefined, boolean>;
}

export interface RevokedTokensTable {
  jti: string;
  client_id: string | null;
  expires_at: Date;
  revoked_at: Generated<Date>;
}

export interface OAuthTables {
  sdk_keys: SdkKeysTable;
  revoked_tokens: RevokedTokensTable;
}
