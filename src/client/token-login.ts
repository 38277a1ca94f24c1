import { defaultAccountName, loadAccount } from './accounts.js';
import { resolveBranding, type Branding } from './branding.js';
import { TesseraConfigError } from './errors.js';
import { errorFromResponse, normaliseIssuer, requestWithRetry, SingleFlight, transport, type Transport, type TransportOptions } from './http.js';

export interface TokenLoginOptions extends TransportOptions {
  /** Tessera's base URL (default: the account's, else `TESSERA_URL`, else the branding's default). */
  issuer?: string;
  /** The API token to log in with (default `TESSERA_API_TOKEN`, else the `account`'s or the default account's). */
  apiToken?: string;
  /** A saved account holding an `api_token` (see `saveAccount`). */
  account?: string;
  /** The saved-accounts file (default `TESSERA_ACCOUNTS_FILE`, else `~/.tessera/accounts.json`). */
  accountsFile?: string;
  /** Environment-variable prefix, default issuer and accounts file of a platform embedding the client. */
  branding?: Branding;
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
  private readonly tokenVar: string;
  private readonly refreshWindowMs: number;
  private session: Session | null = null;
  private readonly flight = new SingleFlight<Session>();

  constructor(options: TokenLoginOptions = {}) {
    const env = options.env ?? process.env;
    const b = resolveBranding(options.branding);
    const fileOpts = {
      ...(options.accountsFile !== undefined && { path: options.accountsFile }),
      ...(options.branding && { branding: options.branding }),
      env,
    };
    let token = options.apiToken ?? (options.account === undefined ? env[b.v('API_TOKEN')] || undefined : undefined);
    let accountIssuer: string | undefined;
    // A named account must hold an API token; the default account is used when it holds one.
    if (!token && options.account !== undefined) {
      const a = loadAccount(options.account, fileOpts);
      if (!a.apiToken) throw new TesseraConfigError(`account '${a.name}' holds no api_token`);
      token = a.apiToken;
      accountIssuer = a.issuer;
    } else if (!token && defaultAccountName(fileOpts)) {
      const a = loadAccount(undefined, fileOpts);
      if (a.apiToken) {
        token = a.apiToken;
        accountIssuer = a.issuer;
      }
    }
    const issuer = options.issuer ?? accountIssuer ?? (env[b.v('URL')] || b.defaultIssuer);
    if (!issuer) throw new TesseraConfigError(`no ${b.product} URL: pass issuer or set ${b.v('URL')}`);
    this.issuer = normaliseIssuer(issuer);
    this.apiToken = token;
    this.tokenVar = b.v('API_TOKEN');
    this.refreshWindowMs = options.refreshWindowMs ?? 30_000;
    this.t = transport(options);
  }

  /** `POST /api/users/loginWithToken`: a new session (the one `getToken()` uses when no token is passed). */
  async login(apiToken?: string): Promise<Session> {
    const token = apiToken ?? this.apiToken;
    if (!token) throw new TesseraConfigError(`no API token: pass one, set ${this.tokenVar}, or save an account with one`);
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
