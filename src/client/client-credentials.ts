import { resolveBranding, type ResolvedBranding } from './branding.js';
import { resolveCredentials, type CredentialOptions } from './credentials.js';
import { TesseraConfigError, TesseraOAuthError } from './errors.js';
import {
  discover,
  errorFromResponse,
  normaliseIssuer,
  requestWithRetry,
  SingleFlight,
  transport,
  type FetchLike,
  type ServerMetadata,
  type Transport,
  type TransportOptions,
} from './http.js';
import { dpopFetch, type DpopKey } from './dpop.js';
import type { PrivateKeyJwt } from './private-key-jwt.js';

export interface ClientCredentialsOptions extends CredentialOptions, TransportOptions {
  /** Tessera's base URL (its issuer). Default: the key file's or account's `issuer`, else `TESSERA_URL`, else the branding's default. */
  issuer?: string;
  /** Scopes to ask for (default: every scope of the SDK key). */
  scope?: string | readonly string[];
  /** Audience (resource server) of the tokens (default: Tessera itself). */
  audience?: string;
  /** Organization the SDK works in (default: the key file's or account's, else `TESSERA_ORGANIZATION_ID`, else discovered). */
  organizationId?: string;
  /** Renew a cached token when it expires within this many ms (default 30000). */
  refreshWindowMs?: number;
  /** Authenticate with signed assertions (private_key_jwt) instead of a secret; its clientId is the SDK key's. */
  privateKeyJwt?: PrivateKeyJwt;
  /** Get DPoP-bound tokens (RFC 9449) with this key; `ClientCredentialsAuth.fetch` then sends proofs. */
  dpop?: DpopKey;
}

/** A token as cached: `expiresAt` in ms on the client's clock. */
export interface AccessToken {
  accessToken: string;
  tokenType: string;
  scope: string;
  expiresIn: number;
  expiresAt: number;
}

/** RFC 6749 §2.3.1: id and secret form-urlencoded, then base64. */
function basicAuth(id: string, secret: string): string {
  const enc = (s: string) => encodeURIComponent(s).replace(/%20/g, '+');
  return `Basic ${Buffer.from(`${enc(id)}:${enc(secret)}`).toString('base64')}`;
}

function claimsOf(jwt: string): Record<string, unknown> {
  try {
    return JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString('utf8')) as Record<string, unknown>;
  } catch {
    return {};
  }
}

/**
 * An SDK key trading itself for access tokens (`client_credentials`). The token endpoint comes from
 * discovery; the token is cached in memory and renewed when it expires within `refreshWindowMs`;
 * concurrent callers share one request; transient failures (network, 5xx, 429) are retried with
 * backoff, while a refused key (`invalid_client`, `invalid_scope`, ...) throws `TesseraOAuthError` at once.
 */
export class ClientCredentials {
  readonly clientId: string;
  readonly issuer: string;
  private readonly secret: string;
  readonly dpop: DpopKey | undefined;
  private readonly assertions: PrivateKeyJwt | undefined;
  private readonly t: Transport;
  private readonly scope: string | undefined;
  private readonly audience: string | undefined;
  private readonly refreshWindowMs: number;
  private readonly env: Record<string, string | undefined>;
  private readonly explicitOrg: string | undefined;
  private readonly brand: ResolvedBranding;
  private cached: AccessToken | null = null;
  private md: Promise<ServerMetadata> | null = null;
  private org: Promise<string | null> | null = null;
  private readonly tokenFlight = new SingleFlight<AccessToken>();

  constructor(options: ClientCredentialsOptions = {}) {
    const creds = options.privateKeyJwt
      ? { clientId: options.privateKeyJwt.clientId, clientSecret: '', issuer: undefined, organizationId: undefined }
      : resolveCredentials(options);
    this.assertions = options.privateKeyJwt;
    this.dpop = options.dpop;
    this.env = options.env ?? process.env;
    this.brand = resolveBranding(options.branding);
    const b = this.brand;
    const issuer = options.issuer ?? creds.issuer ?? (this.env[b.v('URL')] || b.defaultIssuer);
    if (!issuer) throw new TesseraConfigError(`no ${b.product} URL: pass issuer, put "issuer" in the key file or account, or set ${b.v('URL')}`);
    this.issuer = normaliseIssuer(issuer);
    this.clientId = creds.clientId;
    this.secret = creds.clientSecret;
    this.t = transport(options);
    this.scope = typeof options.scope === 'string' ? options.scope : options.scope?.join(' ');
    this.audience = options.audience;
    this.refreshWindowMs = options.refreshWindowMs ?? 30_000;
    this.explicitOrg = options.organizationId ?? creds.organizationId;
  }

  /** Authorization server metadata (RFC 8414), fetched once. */
  metadata(): Promise<ServerMetadata> {
    if (!this.md) {
      this.md = discover(this.t, this.issuer);
      this.md.catch(() => {
        this.md = null;
      });
    }
    return this.md;
  }

  /** A valid access token (JWT). */
  async getToken(): Promise<string> {
    return (await this.getAccessToken()).accessToken;
  }

  /** The cached token, renewed first when it expires within the refresh window. */
  async getAccessToken(): Promise<AccessToken> {
    const c = this.cached;
    if (c && c.expiresAt - this.t.now() > this.refreshWindowMs) return c;
    return this.tokenFlight.run(() => this.requestToken());
  }

  /** Forgets the cached token (after a resource server refused it, say). */
  invalidate(): void {
    this.cached = null;
  }

  private async requestToken(): Promise<AccessToken> {
    const { token_endpoint } = await this.metadata();
    const params = new URLSearchParams({ grant_type: 'client_credentials' });
    if (this.scope) params.set('scope', this.scope);
    if (this.audience) params.set('audience', this.audience);
    const started = this.t.now();
    // Built anew for every attempt: an assertion and a proof are each accepted once, so a retry
    // after a 5xx or a lost answer carries a new `jti` (the server may have recorded the first).
    const attempt = async (): Promise<RequestInit> => {
      const body = new URLSearchParams(params);
      const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
      if (this.assertions) await this.assertions.authenticate(body, token_endpoint);
      else headers.authorization = basicAuth(this.clientId, this.secret);
      if (this.dpop) headers.dpop = await this.dpop.proof('POST', token_endpoint);
      return { method: 'POST', headers, body: body.toString() };
    };
    let res = await requestWithRetry(this.t, token_endpoint, attempt);
    // RFC 9449 §8: the server asks for its nonce; the next proof carries it.
    if (this.dpop && (await this.dpop.nonceChallenge(token_endpoint, res))) {
      await res.body?.cancel().catch(() => undefined);
      res = await requestWithRetry(this.t, token_endpoint, attempt);
    }
    if (!res.ok) throw await errorFromResponse(res);
    const json = (await res.json()) as Record<string, unknown>;
    if (typeof json.access_token !== 'string' || typeof json.expires_in !== 'number') {
      throw new TesseraOAuthError('invalid_response', res.status, 'the token response lacks access_token or expires_in', false);
    }
    const token: AccessToken = {
      accessToken: json.access_token,
      tokenType: typeof json.token_type === 'string' ? json.token_type : 'Bearer',
      scope: typeof json.scope === 'string' ? json.scope : '',
      expiresIn: json.expires_in,
      expiresAt: started + json.expires_in * 1000,
    };
    this.cached = token;
    return token;
  }

  /**
   * The headers that authorize one request with the current token: `Authorization: Bearer`, or for
   * a DPoP-bound token `Authorization: DPoP` and a fresh proof of `method` and `url` (with `ath`,
   * RFC 9449 §7.1). Call it for every request and every retry: the server accepts a proof once.
   */
  async authorization(method: string, url: string | URL): Promise<Record<string, string>> {
    const token = await this.getAccessToken();
    if (this.dpop && token.tokenType.toLowerCase() === 'dpop') {
      return { authorization: `DPoP ${token.accessToken}`, dpop: await this.dpop.proof(method, String(url), token.accessToken) };
    }
    return { authorization: `Bearer ${token.accessToken}` };
  }

  /**
   * A request to Tessera with the current token ({@link ClientCredentials.authorization} per
   * attempt), retried as every client request is, and sent once more with the server's nonce
   * when a DPoP-bound token meets `use_dpop_nonce`.
   */
  async authorizedRequest(url: string, init: RequestInit = {}): Promise<Response> {
    const method = (init.method ?? 'GET').toUpperCase();
    const attempt = async (): Promise<RequestInit> => {
      const headers = new Headers(init.headers);
      for (const [k, v] of Object.entries(await this.authorization(method, url))) headers.set(k, v);
      return { ...init, method, headers };
    };
    let res = await requestWithRetry(this.t, url, attempt);
    if (this.dpop && (await this.dpop.nonceChallenge(url, res))) {
      await res.body?.cancel().catch(() => undefined);
      res = await requestWithRetry(this.t, url, attempt);
    }
    return res;
  }

  /**
   * The organization the SDK works in: `organizationId` option (or the key file's or account's), else `TESSERA_ORGANIZATION_ID`, else
   * the `org_id` the SDK key's tokens carry, else discovered through `GET /api/users/me/organizations`
   * (the first one, with a warning when there are several; null when none). Resolved once.
   */
  organizationId(): Promise<string | null> {
    if (!this.org) {
      this.org = this.resolveOrganization();
      this.org.catch(() => {
        this.org = null;
      });
    }
    return this.org;
  }

  private async resolveOrganization(): Promise<string | null> {
    if (this.explicitOrg) return this.explicitOrg;
    const fromEnv = this.env[this.brand.v('ORGANIZATION_ID')];
    if (fromEnv) return fromEnv;
    const token = await this.getToken();
    const bound = claimsOf(token).org_id;
    if (typeof bound === 'string' && bound) return bound;
    const res = await this.authorizedRequest(`${this.issuer}/api/users/me/organizations`, { headers: { accept: 'application/json' } });
    if (!res.ok) throw await errorFromResponse(res);
    const { organizations: items } = (await res.json()) as { organizations: Array<{ id: string; name: string }> };
    if (items.length === 0) return null;
    const chosen = items[0]!;
    if (items.length > 1) {
      this.t.logger.warn(
        `${this.brand.product}: the SDK key's owner belongs to ${items.length} organizations; using ${chosen.id} (${chosen.name}). ` +
          `Set ${this.brand.v('ORGANIZATION_ID')} or pass organizationId to choose.`,
      );
    }
    return chosen.id;
  }
}

/**
 * Bearer authentication for outgoing requests with a `ClientCredentials` token: `headers()` for any
 * HTTP client, or `fetch()` which adds the header and, when the server answers 401, renews the
 * token once and replays the request (when the challenge says `invalid_token` and the body can be
 * replayed).
 */
export class ClientCredentialsAuth {
  readonly credentials: ClientCredentials;
  private readonly baseFetch: FetchLike;

  constructor(credentials: ClientCredentials | ClientCredentialsOptions = {}) {
    this.credentials = credentials instanceof ClientCredentials ? credentials : new ClientCredentials(credentials);
    const f = credentials instanceof ClientCredentials ? undefined : credentials.fetch;
    this.baseFetch = f ?? ((input, init) => fetch(input, init));
  }

  /**
   * `{ authorization: 'Bearer <token>' }`; for a DPoP-bound token `{ authorization: 'DPoP <token>', dpop: <proof> }`,
   * which needs the request's method and URL (a proof is made for one request: call this for each).
   */
  async headers(method?: string, url?: string | URL): Promise<{ authorization: string; dpop?: string }> {
    const token = await this.credentials.getAccessToken();
    if (this.credentials.dpop && token.tokenType.toLowerCase() === 'dpop') {
      if (method === undefined || url === undefined) {
        throw new TesseraConfigError('a DPoP-bound token needs a proof for each request: call headers(method, url)');
      }
      return this.credentials.authorization(method, url) as Promise<{ authorization: string; dpop: string }>;
    }
    return { authorization: `Bearer ${token.accessToken}` };
  }

  /** `fetch` with the Authorization header added (with a DPoP proof for DPoP-bound tokens). */
  fetch = async (input: string | URL, init: RequestInit = {}): Promise<Response> => {
    const dpop = this.credentials.dpop;
    const send = async () => {
      if (dpop) {
        const token = await this.credentials.getAccessToken();
        if (token.tokenType.toLowerCase() === 'dpop') return dpopFetch(dpop, token.accessToken, input, init, this.baseFetch);
      }
      const headers = new Headers(init.headers);
      headers.set('authorization', `Bearer ${await this.credentials.getToken()}`);
      return this.baseFetch(input, { ...init, headers });
    };
    const res = await send();
    const replayable = init.body === undefined || init.body === null || typeof init.body === 'string' || init.body instanceof URLSearchParams;
    const challenge = res.headers.get('www-authenticate') ?? '';
    if (res.status !== 401 || !replayable || !/invalid_token/.test(challenge)) return res;
    await res.body?.cancel().catch(() => undefined);
    this.credentials.invalidate();
    return send();
  };
}
