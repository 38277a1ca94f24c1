import { createHash, randomUUID } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK, type KeyObject } from 'jose';

type PrivateKey = CryptoKey | KeyObject;

/**
 * A DPoP key (RFC 9449): proofs for token requests and resource requests, and the server nonces
 * (`DPoP-Nonce`) remembered per origin. The private key never leaves the process.
 */
export class DpopKey {
  private readonly nonces = new Map<string, string>();

  constructor(
    readonly privateKey: PrivateKey,
    readonly publicJwk: JWK,
    readonly alg: string,
  ) {}

  /** A fresh key pair (ES256 by default; EdDSA, ES384, PS256, RS256 also work with Tessera). */
  static async generate(alg = 'ES256'): Promise<DpopKey> {
    const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
    const { kty, crv, x, y, n, e } = await exportJWK(publicKey);
    const jwk = Object.fromEntries(Object.entries({ kty, crv, x, y, n, e }).filter(([, v]) => v !== undefined)) as JWK;
    return new DpopKey(privateKey, jwk, alg);
  }

  /** JWK SHA-256 thumbprint: the `cnf.jkt` of the tokens bound to this key. */
  thumbprint(): Promise<string> {
    return calculateJwkThumbprint(this.publicJwk, 'sha256');
  }

  /** A proof for one request (`url` without query or fragment is what is signed); with `accessToken`, its `ath`. */
  async proof(method: string, url: string, accessToken?: string): Promise<string> {
    const u = new URL(url);
    const htu = `${u.origin}${u.pathname}`;
    const claims: Record<string, unknown> = { htm: method.toUpperCase(), htu, jti: randomUUID(), iat: Math.floor(Date.now() / 1000) };
    if (accessToken !== undefined) claims.ath = createHash('sha256').update(accessToken).digest('base64url');
    const nonce = this.nonces.get(u.origin);
    if (nonce !== undefined) claims.nonce = nonce;
    return new SignJWT(claims).setProtectedHeader({ typ: 'dpop+jwt', alg: this.alg, jwk: this.publicJwk }).sign(this.privateKey);
  }

  /**
   * Remembers the `DPoP-Nonce` a response carries and tells whether it is a `use_dpop_nonce`
   * challenge (400 from a token endpoint, 401 from a resource server), i.e. whether the request
   * should be sent again with a new proof.
   */
  async nonceChallenge(url: string, res: Response): Promise<boolean> {
    const nonce = res.headers.get('dpop-nonce');
    if (nonce === null) return false;
    this.nonces.set(new URL(url).origin, nonce);
    if (res.status === 401) return /use_dpop_nonce/.test(res.headers.get('www-authenticate') ?? '');
    if (res.status !== 400) return false;
    try {
      return ((await res.clone().json()) as { error?: unknown }).error === 'use_dpop_nonce';
    } catch {
      return false;
    }
  }
}

/**
 * `fetch` for a DPoP-bound access token: `Authorization: DPoP <token>` and a fresh proof for the
 * request, sent again once with the server's nonce when it answers `use_dpop_nonce`.
 */
export async function dpopFetch(
  key: DpopKey,
  accessToken: string,
  input: string | URL,
  init: RequestInit = {},
  baseFetch: (input: string | URL, init?: RequestInit) => Promise<Response> = (i, o) => fetch(i, o),
): Promise<Response> {
  const url = String(input);
  const method = (init.method ?? 'GET').toUpperCase();
  const send = async () => {
    const headers = new Headers(init.headers);
    headers.set('authorization', `DPoP ${accessToken}`);
    headers.set('dpop', await key.proof(method, url, accessToken));
    return baseFetch(input, { ...init, headers });
  };
  const res = await send();
  if (!(await key.nonceChallenge(url, res))) return res;
  await res.body?.cancel().catch(() => undefined);
  return send();
}
