import { DecryptError, seal } from '../platform/crypto/aead.js';
import { sealedRowsTarget } from '../platform/crypto/rewrap.js';
import { countByKey, lockRowsToRewrap, replaceCiphertext, type ProviderTokenRow } from './provider-tokens.repository.js';
import { openCredentialBytes, ownerOfRow, providerTokenAad } from './provider-tokens.service.js';

/** Provider credentials: opened with whichever key sealed them, sealed again under the current key (same AAD). */
export const providerTokensRewrapTarget = sealedRowsTarget<ProviderTokenRow>(
  {
    name: 'provider_tokens',
    auditAction: 'provider_token.rewrap',
    targetType: 'provider_token',
    id: (row) => row.id,
    keyId: (row) => row.key_id,
    census: (db) => countByKey(db),
    lockBatch: (trx, current, after, limit) => lockRowsToRewrap(trx, current, after, limit),
    open: (keys, row) => openCredentialBytes(keys, row),
    seal: (key, row, plain) => seal(key, plain, providerTokenAad(ownerOfRow(row), row.provider)),
    replace: (trx, row, ciphertext, keyId) => replaceCiphertext(trx, row.id, row.key_id, ciphertext, keyId),
  },
  (err) => err instanceof DecryptError,
);
