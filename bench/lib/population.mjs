// The population fixture's credentials, derived from one 256-bit seed: the bench and the fixture
// script compute the same client_id and secret for key i without storing a million secrets.
// Each secret is HMAC-SHA256(seed, "secret:" i): 256 bits, as unpredictable as the seed.
import { createHash, createHmac } from 'node:crypto';

/** Bumped when the fixture's shape changes, so a cached population is rebuilt. */
export const POPULATION_VERSION = 1;

const mac = (seed, label) => createHmac('sha256', seed).update(label).digest();

/** client_id and client_secret of key `i` (0-based) of the population made from `seed`. */
export function populationCredential(seed, i) {
  const h = mac(seed, `id:${i}`).toString('hex');
  // Shaped as a version-4 UUID: Tessera's client_id check is ^s_[0-9a-f-]{36}$.
  const uuid = `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
  return { client_id: `s_${uuid}`, client_secret: mac(seed, `secret:${i}`).toString('base64url') };
}

/** A short fingerprint (never the value) of a secret, for the cache marker. */
export function fingerprint(buf) {
  return createHash('sha256').update(buf).digest('hex').slice(0, 16);
}
