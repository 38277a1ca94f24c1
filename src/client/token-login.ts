import { TesseraConfigError } from './errors.js';
import { errorFromResponse, normaliseIssuer, requestWithRetry, SingleFlight, transport, type Transport, type TransportOptions } from './http.js';

export interface TokenLoginOptions extends TransportOptions {
  /** Tessera's base URL (default `TESSERA_URL`). */
  issuer?: string;
  /** The API token to log in with (default `TESSERA_API_TOKEN`). */
  apiToken?: string;
  /** Log in again when the session expires within this many ms (default 30000). */
  refreshWindowMs?: number;
  env?: Record<string, string | undefined>;
}

/** A session from `POST /api/users/loginWithToken`. `expiresAt` in ms on the client's clock. */
export interface Session {
  token: string;
  ttl: number;
  created: string;
  userId: string;
  expiresAt: number;
}

/**
 * The API-token flow (compatible with the IBM Quantum one): `login()` trades an API token for a
 * temporary access token (a session, sent as `x-access-token`), `logout()` ends it everywhere.
 * `getToken()` / `headers()` keep one session, logging in again shortly before it expires.
 */
export class TokenLogin {
  readonly issuer: string;
  private readonly t: Transport;
  private readonly apiToken: string | undefined;
  private readonly refreshWindowMs: number;
  private session: Session | null = null;
  private readonly flight = new SingleFlight<Session>();

  constructor(options: TokenLoginOptions = {}) {
    const env = options.env ?? process.env;
    const issuer = options.issuer ?? env.TESSERA_URL;
    if (!issuer) throw new TesseraConfigError('no Tessera URL: pass issuer or set TESSERA_URL');
    this.issuer = normaliseIssuer(issuer);
    this.apiToken = options.apiToken ?? (env.TESSERA_API_TOKEN || undefined);
    this.refreshWindowMs = options.refreshWindowMs ?? 30_000;
    this.t = transport(options);
  }

  /** `POST /api/users/loginWithToken`: a new session (the one `getToken()` uses when no token is passed). */
  async login(apiToken?: string): Promise<Session> {
    const token = apiToken ?? this.apiToken;
    if (!token) throw new TesseraConfigError('no API token: pass one or set TESSERA_API_TOKEN');
    const started = this.t.now();
    const res = await requestWithRetry(this.t, `${this.issuer}/api/users/loginWithToken`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({ apiToken: token }),
    });
    if (!res.ok) throw await errorFromResponse(res);
    const body = (await res.json()) as { id: string; ttl: number; created: string; userId: string };
    const session: Session = { token: body.id, ttl: body.ttl, created: body.created, userId: body.userId, expiresAt: started + body.ttl * 1000 };
    if (apiToken === undefined) this.session = session;
    return session;
  }

  /**
   * `POST /api/users/logout`: ends the given session (default: the one held). Throws
   * `TesseraOAuthError` `invalid_token` when the session had already ended.
   */
  async logout(token?: string): Promise<void> {
    const t = token ?? this.session?.token;
    if (!t) return;
    if (this.session?.token === t) this.session = null;
    const res = await requestWithRetry(this.t, `${this.issuer}/api/users/logout`, {
      method: 'POST',
      headers: { 'x-access-token': t },
    });
    if (!res.ok) throw await errorFromResponse(res);
    await res.body?.cancel().catch(() => undefined);
  }

  /** The held session token, logging in (once for concurrent callers) when none is valid. */
  async getToken(): Promise<string> {
    const s = this.session;
    if (s && s.expiresAt - this.t.now() > this.refreshWindowMs) return s.token;
    return (await this.flight.run(() => this.login())).token;
  }

  /** `{ 'x-access-token': <session token> }` */
  async headers(): Promise<{ 'x-access-token': string }> {
    return { 'x-access-token': await this.getToken() };
  }
}
