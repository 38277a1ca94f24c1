import { sign as nodeSign, type KeyObject } from 'node:crypto';
import type { SigningAlg } from '../config.js';

/**
 * Compact JWS over `header` and `payload` with node:crypto. The signature is computed on libuv's
 * thread pool (node:crypto's callback form): signing is a large share of a token request's CPU, and
 * off the event loop it runs on another core while the loop parses and answers other requests.
 */
export function signCompact(alg: SigningAlg, privateKey: KeyObject, headerB64: string, payload: object): Promise<string> {
  const input = `${headerB64}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}`;
  const data = Buffer.from(input);
  return new Promise((resolve, reject) => {
    const done = (err: Error | null, sig: Buffer) => (err ? reject(err) : resolve(`${input}.${sig.toString('base64url')}`));
    switch (alg) {
      case 'EdDSA':
        return nodeSign(null, data, privateKey, done);
      case 'ES256':
        return nodeSign('sha256', data, { key: privateKey, dsaEncoding: 'ieee-p1363' }, done);
      case 'RS256':
        return nodeSign('sha256', data, privateKey, done);
    }
  });
}
