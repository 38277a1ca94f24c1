import t from 'tap';
import { randomBytes } from 'node:crypto';
import { open, seal, DecryptError } from '../src/platform/crypto/aead.js';
import { masterKeyFrom } from '../src/platform/config.js';
import { crc32, hashSecret, randomBase62, randomSecret, safeEqual } from '../src/platform/crypto/secrets.js';
import { generateApiToken, isWellFormedApiToken } from '../src/api-tokens/api-token.js';

const mk = () => masterKeyFrom(randomBytes(32).toString('base64'), 'test');

t.test('seal/open round-trips and binds the ciphertext to its place', async (t) => {
  const k = mk();
  const a = seal(k, 'provider secret', 'user:1:ibm_quantum');
  t.equal(a.keyId, k.id);
  t.notOk(a.ciphertext.includes(Buffer.from('provider secret')));
  t.equal(open([k], a, 'user:1:ibm_quantum').toString(), 'provider secret');
  t.throws(() => open([k], a, 'user:2:ibm_quantum'), DecryptError, 'moved to another owner');
  const flipped = Buffer.from(a.ciphertext);
  flipped[15] = flipped[15]! ^ 1;
  t.throws(() => open([k], { ...a, ciphertext: flipped }, 'user:1:ibm_quantum'), DecryptError, 'tampered');
  t.throws(() => open([mk()], a, 'user:1:ibm_quantum'), /not configured/, 'unknown master key');
  const b = seal(k, 'provider secret', 'user:1:ibm_quantum');
  t.notSame(a.ciphertext, b.ciphertext, 'fresh nonce each time');
});

t.test('secrets carry 256 bits and hashes are keyed', async (t) => {
  t.equal(Buffer.from(randomSecret(), 'base64url').length, 32);
  t.throws(() => randomSecret(16), TypeError);
  t.ok(randomBase62(256).length >= 43);
  const p1 = randomBytes(32);
  const p2 = randomBytes(32);
  t.notSame(hashSecret(p1, 's', 'x'), hashSecret(p2, 's', 'x'), 'pepper matters');
  t.notSame(hashSecret(p1, 's', 'x'), hashSecret(p1, 's', 'y'), 'purpose matters');
  t.ok(safeEqual(Buffer.from('abc'), Buffer.from('abc')));
  t.notOk(safeEqual(Buffer.from('abc'), Buffer.from('abd')));
  t.notOk(safeEqual(Buffer.from('abc'), Buffer.from('abcd')));
  t.equal(crc32('123456789'), 0xcbf43926, 'CRC-32 check value');
});

t.test('API tokens are prefixed and checksummed', async (t) => {
  const tok = generateApiToken();
  t.match(tok, /^tsr_pat_[0-9A-Za-z]{49}$/);
  t.ok(isWellFormedApiToken(tok));
  const swapped = tok.slice(0, 10) + (tok[10] === 'a' ? 'b' : 'a') + tok.slice(11);
  t.notOk(isWellFormedApiToken(swapped), 'a typo breaks the checksum');
  t.notOk(isWellFormedApiToken('tsr_pat_short'));
  t.not(generateApiToken(), tok);
});
