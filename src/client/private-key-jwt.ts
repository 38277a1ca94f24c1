import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, importJWK, SignJWT, type CryptoKey, type JWK, type KeyObject } from 'jose';
import { TesseraOAuthError } from './errors.js';
import { normaliseIssuer } from './http.js';

type PrivateKey = CryptoKey | KeyObject;

/** RFC 7523 §2.2 client_assertion_type. */
export const JWT_BEARER_ASSERTION = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

/**
 * private_key_jwt (RFC 7523 §2.2) for an SDK key registered with a public key: each token request
 * carries a fresh assertion (`iss` = `sub` = client_id, `aud` the token endpoint, one minute of
 * life, a new `jti`) signed by a private key that never leaves this machine.
 */
export class PrivateKeyJwt {
  constructor(
    readonly clientId: string,
    private readonly privateKey: PrivateKey,
    readonly alg: string,
  ) {}

  /** From a private JWK as {@link PrivateKeyJwt.register} returns it (keep it in a 0600 file or a keyring). */
  static async fromJwk(clientId: string, privateJwk: JWK): Promise<PrivateKeyJwt> {
    const alg = privateJwk.alg ?? 'ES256';
    return new PrivateKeyJwt(clientId, (await importJWK(privateJwk, alg)) as PrivateKey, alg);
  }

  /**
   * Generates a key pair locally and registers its public half as a new SDK key
   * (`POST /api/sdk-keys`, authenticated with an API token or session): no shared secret is made.
   * Returns the authenticator and the private JWK to keep.
   */
  static async register(o: {
    issuer: string;
    /** An API token (or session token) with scope `api`. */
    apiToken: string;
    name: string;
    scopes?: string[];
    organizationId?: string;
    alg?: string;
    dpopBoundAccessTokens?: boolean;
    fetch?: (input: string | URL, init?: RequestInit) => Promise<Response>;
  }): Promise<{ auth: PrivateKeyJwt; privateJwk: JWK; clientId: string }> {
    const alg = o.alg ?? 'ES256';
    const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
    const publicJwk = { ...(await exportJWK(publicKey)), alg };
    const body: Record<string, unknown> = { name: o.name, token_endpoint_auth_method: 'private_key_jwt', jwk: publicJwk };
    if (o.scopes) body.scopes = o.scopes;
    if (o.organizationId) body.organization_id = o.organizationId;
    if (o.dpopBoundAccessTokens !== undefined) body.dpop_bound_access_tokens = o.dpopBoundAccessTokens;
    const f = o.fetch ?? ((i, init) => fetch(i, init));
    const res = await f(`${normaliseIssuer(o.issuer)}/api/sdk-keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${o.apiToken}`, 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify(body),
    });
    const json = (await res.json().catch(() => ({}))) as { client_id?: string; error?: string; message?: string };
    if (res.status !== 201 || typeof json.client_id !== 'string') {
      throw new TesseraOAuthError(json.error ?? 'invalid_response', res.status, json.message ?? 'could not register the SDK key', false);
    }
    const privateJwk = { ...(await exportJWK(privateKey)), alg };
    return { auth: new PrivateKeyJwt(json.client_id, privateKey, alg), privateJwk, clientId: json.client_id };
  }

  /** A fresh signed assertion for `audience` (the token endpoint URL). */
  assertion(audience: string): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ jti: randomUUID() })
      .setProtectedHeader({ alg: this.alg })
      .setIssuer(this.clientId)
      .setSubject(this.clientId)
      .setAudience(audience)
      .setIssuedAt(now)
      .setExpirationTime(now + 60)
      .sign(this.privateKey);
  }

  /** Adds `client_id`, `client_assertion_type` and a fresh `client_assertion` to a token request body. */
  async authenticate(body: URLSearchParams, endpoint: string): Promise<void> {
    body.set('client_id', this.clientId);
    body.set('client_assertion_type', JWT_BEARER_ASSERTION);
    body.set('client_assertion', await this.assertion(endpoint));
  }
}
