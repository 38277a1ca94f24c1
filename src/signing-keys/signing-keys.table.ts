import type { ColumnType, Generated } from 'kysely';

export type SigningKeyState = 'next' | 'active' | 'retired' | 'revoked';

export interface SigningKeysTable {
  kid: string;
  alg: string;
  state: SigningKeyState;
  /** Public JWK (kty, crv/x/y or n/e, kid, alg, use). */
  public_jwk: ColumnType<Record<string, unknown>, string, string>;
  /** seal(master key, PKCS#8 DER, aad `signing_key:<kid>`). */
  private_key_ciphertext: Buffer;
  master_key_id: string;
  created_at: Generated<Date>;
  activate_after: Date | null;
  activated_at: Date | null;
  retired_at: Date | null;
  not_after: Date | null;
  revoked_at: Date | null;
}

export interface SigningKeyTables {
  signing_keys: SigningKeysTable;
}
