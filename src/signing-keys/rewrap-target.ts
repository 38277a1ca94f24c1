import { DecryptError, open, seal } from '../platform/crypto/aead.js';
import { sealedRowsTarget } from '../platform/crypto/rewrap.js';
import { countSigningKeysByMasterKey, lockSigningKeysToRewrap, replacePrivateKeyCiphertext, type SigningKeyRow } from './signing-keys.repository.js';
import { privateKeyAad } from './signing-key.js';

/** Private signing keys: re-sealed under the current master key, still bound to their kid. */
export const signingKeysRewrapTarget = sealedRowsTarget<SigningKeyRow>(
  {
    name: 'signing_keys',
    auditAction: 'signing_key.rewrap',
    targetType: 'signing_key',
    id: (row) => row.kid,
    keyId: (row) => row.master_key_id,
    census: (db) => countSigningKeysByMasterKey(db),
    lockBatch: (trx, current, after, limit) => lockSigningKeysToRewrap(trx, current, after, limit),
    open: (keys, row) => open(keys, { ciphertext: row.private_key_ciphertext, keyId: row.master_key_id }, privateKeyAad(row.kid)),
    seal: (key, row, plain) => seal(key, plain, privateKeyAad(row.kid)),
    replace: (trx, row, ciphertext, keyId) => replacePrivateKeyCiphertext(trx, row.kid, row.master_key_id, ciphertext, keyId),
  },
  (err) => err instanceof DecryptError,
);
