import { decodeJwt, type JWTPayload } from 'jose';
import type { ClientCredentials } from './client-credentials.js';
import type { Transport } from './http.js';
import { JWS_ALGORITHMS, verifyCompactJws, type JwsKeyLookup } from './jws.js';

/** Event types of Tessera's Security Event Tokens that the denylist follows. */
const EV = {
  tokenRevoked: 'urn:tessera:secevent:access-token-revoked',
  sdkKeyDisabled: 'urn:tessera:secevent:sdk-key-disabled',
  sdkKeyTokensCutOff: 'urn:tessera:secevent:sdk-key-tokens-cut-off',
  sdkKeyDeleted: 'urn:tessera:secevent:sdk-key-deleted',
  userSuspended: 'urn:tessera:secevent:user-suspended',
  signingKeyRevoked: 'urn:tessera:secevent:signing-key-revoked',
  sessionRevoked: 'https://schemas.openid.net/secevent/caep/event-type/session-revoked',
  credentialChange: 'https://schemas.openid.net/secevent/caep/event-type/credential-change',
} as const;

/** One server-sent event as read, with its SET's verification when it was started early. */
interface StreamEvent {
  type: string;
  id: string | null;
  data: string;
  verified?: Promise<JWTPayload>;
}

export interface RevocationStreamOptions {
  /** The bearer that subscribes: an SDK key holding scope `events:read` (or an operator's token), or a function. */
  auth: ClientCredentials | (() => Promise<string>);
  /**
   * How long the stream may be down (or not yet caught up) before tokens stop being accepted on
   * local checks alone, in ms (default 5000). Never zero risk: within it a revocation may be late.
   */
  graceMs?: number;
  /**
   * What happens past the grace time: `fail-closed` (default) refuses JWTs as `unavailable`;
   * `remote` checks each one with Tessera (`remote.method`, `/gateway/verify` by default).
   */
  whenDown?: 'fail-closed' | 'remote';
  /** The longest lifetime of a Tessera access token, in seconds (default 86400): bounds what the denylist keeps. */
  maxTokenLifetimeSeconds?: number;
  /**
   * The `aud` every SET must carry: Tessera addresses each receiver's SETs to it, by the SDK key's
   * client_id or, for an API or operator token, its user's id. Default: the client_id of `auth`
   * when it is a ClientCredentials or returns an SDK key's JWT; otherwise the audience the stream
   * announces when it opens (set it to pin the receiver).
   */
  audience?: string;
  /** The stream URL (default `<issuer>/events/stream`). */
  url?: string;
  /** No bytes for this long (heartbeats included) means the connection is dead, in ms (default 45000). */
  idleTimeoutMs?: number;
}

/** What the denylist says about one verified access token. */
export type StreamVerdict = 'ok' | 'revoked' | 'down';

/** How often the denylist is pruned, and the width of the time slots its jtis are filed by, in ms. */
const PRUNE_SLOT_MS = 10_000;

/** How long a revoked jti is kept past its `exp` (clock skew between Tessera and the verifier), in ms. */
const EXP_GRACE_MS = 60_000;

/** Skew tolerated on a SET's `nbf` and `exp`, in seconds. */
const SET_CLOCK_TOLERANCE = 60;

/**
 * Follows Tessera's security events stream (`GET /events/stream`) and keeps the denylist a
 * locally-verifying gateway needs, in memory and bounded by token expiry: revoked jtis (until their
 * `exp`), SDK keys' `tokens_valid_after` and deleted keys, revoked signing keys (until every token
 * they signed has expired). Every SET is verified before it counts: Tessera's keys, `typ`
 * `secevent+jwt`, `iss` the configured issuer, `aud` this receiver, `iat` and `jti` present; a SET
 * that fails drops the connection without moving past it (so the verifier is `down`, never open,
 * while a stream keeps sending one). Resumes
 * with `Last-Event-ID`; while it is down or catching up for longer than the grace time, it says
 * `down`, and the verifier then refuses or checks remotely: never silently open.
 */
export class RevocationStream {
  /** Revoked jtis and their `exp` (epoch s). */
  private readonly jtis = new Map<string, number>();
  /**
   * The same jtis by the slot of time (PRUNE_SLOT_MS wide) in which their record may go, so a
   * prune touches only the records due, never every revoked token still alive.
   */
  private readonly jtiSlots = new Map<number, string[]>();
  private readonly cutoffs = new Map<string, { after: number; until: number }>();
  private readonly kids = new Map<string, number>();
  private lastId: string | null = null;
  private live = false;
  /** Since when the stream has not been live (ms); null while live. */
  private downSince: number;
  private everLive = false;
  private stopped = false;
  private abort: AbortController | null = null;
  private retryMs = 250;
  private readonly graceMs: number;
  private readonly lifetime: number;
  private readonly url: string;
  private readonly idleMs: number;
  private lastPrune = 0;
  private readonly waiters = new Set<() => void>();
  /** The `aud` SETs on the current connection must carry (null until known). */
  private audience: string | null = null;

  constructor(
    private readonly t: Transport,
    private readonly issuer: string,
    private readonly o: RevocationStreamOptions,
    private readonly keys: JwsKeyLookup,
    /** Told of every user whose sessions, API tokens or status changed (remote answers about them are stale). */
    private readonly onUserChange: (userId: string) => void,
    /** Told when a SET needs a key the key set does not hold (fetch the JWKS again now). */
    private readonly refreshKeys: () => Promise<void>,
  ) {
    this.graceMs = o.graceMs ?? 5000;
    this.lifetime = (o.maxTokenLifetimeSeconds ?? 86_400) * 1000;
    this.url = o.url ?? `${issuer}/events/stream`;
    this.idleMs = o.idleTimeoutMs ?? 45_000;
    this.downSince = t.now();
  }

  start(): void {
    void this.run();
  }

  stop(): void {
    this.stopped = true;
    this.abort?.abort();
    for (const w of this.waiters) w();
  }

  /** True once the stream has caught up (the server said `live`) and is still connected. */
  get isLive(): boolean {
    return this.live;
  }

  /** The id of the last event applied (what a reconnect resumes after). */
  get lastEventId(): string | null {
    return this.lastId;
  }

  /**
   * Resolves once the stream is live (or stopped). While it is awaited the process stays up
   * through reconnects (a catch-up longer than the server buffers for a slow receiver is read
   * over several connections), so `await ready()` before listening never ends the process early.
   */
  ready(): Promise<void> {
    if (this.live || this.stopped) return Promise.resolve();
    return new Promise((r) => this.waiters.add(r));
  }

  /** The verdict on a verified access token: its jti, its key's cut-off, its signing key. */
  check(claims: JWTPayload, kid: string | undefined): StreamVerdict {
    const now = this.t.now();
    this.prune(now);
    const jti = claims.jti;
    const client = typeof claims.client_id === 'string' ? claims.client_id : undefined;
    if (typeof jti === 'string' && this.jtis.has(jti)) return 'revoked';
    if (kid !== undefined && this.kids.has(kid)) return 'revoked';
    const cut = client === undefined ? undefined : this.cutoffs.get(client);
    if (cut && (typeof claims.iat !== 'number' || claims.iat < cut.after)) return 'revoked';
    if (!this.live && (!this.everLive || now - this.downSince > this.graceMs)) return 'down';
    return 'ok';
  }

  private prune(now: number): void {
    if (now - this.lastPrune < PRUNE_SLOT_MS) return;
    this.lastPrune = now;
    for (const [slot, jtis] of this.jtiSlots) {
      if ((slot + 1) * PRUNE_SLOT_MS > now) continue;
      this.jtiSlots.delete(slot);
      // A jti revoked again with a later exp stays: its later slot removes it.
      for (const jti of jtis) if ((this.jtis.get(jti) ?? Infinity) * 1000 + EXP_GRACE_MS < now) this.jtis.delete(jti);
    }
    for (const [k, c] of this.cutoffs) if (c.until < now) this.cutoffs.delete(k);
    for (const [k, until] of this.kids) if (until < now) this.kids.delete(k);
  }

  /**
   * Records the revocation of `jti` until its `exp` (epoch s), at most the longest token lifetime
   * from now; a later revocation of the same jti never shortens it.
   */
  private revokeJti(jti: string, exp: number, now: number): void {
    const kept = Math.max(this.jtis.get(jti) ?? 0, Math.min(exp, Math.ceil((now + this.lifetime) / 1000)));
    this.jtis.set(jti, kept);
    const slot = Math.floor((kept * 1000 + EXP_GRACE_MS) / PRUNE_SLOT_MS);
    const list = this.jtiSlots.get(slot);
    if (list) list.push(jti);
    else this.jtiSlots.set(slot, [jti]);
  }

  /** How many entries the denylist holds (revoked jtis, SDK keys cut off, signing keys revoked). */
  get denylistSize(): number {
    return this.jtis.size + this.cutoffs.size + this.kids.size;
  }

  /**
   * The Authorization headers of one connection (a DPoP-bound token with a fresh proof of it), and
   * the bearer token itself when a function gave it (its claims may name the receiver).
   */
  private async authorization(): Promise<{ headers: Record<string, string>; bearer: string | null }> {
    const a = this.o.auth;
    if (typeof a !== 'function') return { headers: await a.authorization('GET', this.url), bearer: null };
    const bearer = await a();
    return { headers: { authorization: `Bearer ${bearer}` }, bearer };
  }

  private setLive(live: boolean): void {
    if (live === this.live) return;
    this.live = live;
    if (live) {
      this.everLive = true;
      for (const w of this.waiters) w();
      this.waiters.clear();
    } else {
      this.downSince = this.t.now();
    }
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      try {
        await this.connectOnce();
        this.retryMs = 250;
      } catch (err) {
        if (this.stopped) break;
        this.t.logger.warn(`Tessera revocation stream: ${(err as Error).message}; reconnecting`);
      }
      this.setLive(false);
      if (this.stopped) break;
      // Someone awaiting ready() keeps the process alive through a reconnect (a connected stream
      // does anyway); otherwise the wait alone never holds the process open.
      await new Promise((r) => {
        const wait = setTimeout(r, this.retryMs);
        if (this.waiters.size === 0) wait.unref?.();
      });
      this.retryMs = Math.min(this.retryMs * 2, 5000);
    }
  }

  private async connectOnce(): Promise<void> {
    const abort = new AbortController();
    this.abort = abort;
    const request = async () => {
      const auth = await this.authorization();
      this.audience = this.pinnedAudience(auth.bearer);
      const headers: Record<string, string> = { accept: 'text/event-stream', ...auth.headers };
      if (this.lastId !== null) headers['last-event-id'] = this.lastId;
      return this.t.fetch(this.url, { method: 'GET', headers, signal: abort.signal });
    };
    let idle: NodeJS.Timeout | undefined;
    const touch = () => {
      if (idle) clearTimeout(idle);
      idle = setTimeout(() => abort.abort(), this.idleMs);
      idle.unref?.();
    };
    touch();
    try {
      let res = await request();
      // A server nonce asked for (RFC 9449 §8): the token is fine, the proof needs the nonce.
      const dpop = typeof this.o.auth === 'function' ? undefined : this.o.auth.dpop;
      if (dpop && (await dpop.nonceChallenge(this.url, res))) {
        await res.body?.cancel().catch(() => undefined);
        res = await request();
      }
      if (res.status === 401 && typeof this.o.auth !== 'function') this.o.auth.invalidate();
      if (res.status !== 200 || !res.body) {
        await res.body?.cancel().catch(() => undefined);
        throw new Error(`the events stream answered ${res.status}`);
      }
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      let event = { type: 'message', id: null as string | null, data: [] as string[] };
      // The events of one read: their SETs are verified together (the signature checks overlap on
      // the thread pool), then applied one by one in stream order, each before its id is taken.
      const batch: StreamEvent[] = [];
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        touch();
        buffer += value;
        let nl: number;
        while ((nl = buffer.search(/\r\n|\r|\n/)) >= 0) {
          const line = buffer.slice(0, nl);
          buffer = buffer.slice(nl + (buffer[nl] === '\r' && buffer[nl + 1] === '\n' ? 2 : 1));
          if (line === '') {
            if (event.data.length > 0 || event.type !== 'message') batch.push(this.received(event.type, event.id, event.data.join('\n')));
            event = { type: 'message', id: null, data: [] };
            continue;
          }
          if (line.startsWith(':')) continue;
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          const val = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
          if (field === 'event') event.type = val;
          else if (field === 'data') event.data.push(val);
          else if (field === 'id') event.id = val;
        }
        for (const e of batch) await this.dispatch(e);
        batch.length = 0;
      }
    } finally {
      if (idle) clearTimeout(idle);
      abort.abort();
    }
  }

  /** The receiver's `aud` known without the server: configured, or the client_id of its SDK key. */
  private pinnedAudience(bearer: string | null): string | null {
    if (this.o.audience !== undefined) return this.o.audience;
    if (typeof this.o.auth !== 'function') return this.o.auth.clientId;
    if (bearer === null || bearer.split('.').length !== 3) return null;
    try {
      const clientId = decodeJwt(bearer).client_id;
      return typeof clientId === 'string' ? clientId : null;
    } catch {
      return null;
    }
  }

  private async dispatch({ type, id, data, verified }: StreamEvent): Promise<void> {
    if (type === 'live') return this.setLive(true);
    if (type === 'receiver') {
      let aud: unknown;
      try {
        aud = (JSON.parse(data) as { aud?: unknown }).aud;
      } catch {
        aud = undefined;
      }
      if (typeof aud !== 'string') throw new Error('the events stream announced no receiver');
      if (this.audience === null) this.audience = aud;
      else if (aud !== this.audience)
        throw new Error(`the events stream is addressed to ${JSON.stringify(aud)}, not this receiver (${JSON.stringify(this.audience)})`);
      return;
    }
    if (type === 'resync') {
      this.t.logger.warn('Tessera revocation stream: events were missed (away longer than their retention); replaying every event kept');
      return;
    }
    if (type !== 'message') return;
    const payload = await (verified ?? this.verifySet(data));
    this.apply(payload);
    if (id !== null) this.lastId = id;
  }

  /** An event as read; a SET's verification starts at once when the receiver is already known. */
  private received(type: string, id: string | null, data: string): StreamEvent {
    if (type !== 'message' || this.audience === null) return { type, id, data };
    const verified = this.verifySet(data);
    // Awaited in order by dispatch; until then a refusal must not count as unhandled.
    verified.catch(() => undefined);
    return { type, id, data, verified };
  }

  /**
   * Verifies a SET with Tessera's keys (fetching the JWKS again once when its kid is unknown) and
   * every claim it must carry; throws a message naming what failed otherwise.
   */
  private async verifySet(set: string): Promise<JWTPayload> {
    if (this.audience === null) throw new Error('a SET arrived before the stream named its receiver (set events.audience)');
    let checked: Awaited<ReturnType<typeof verifyCompactJws>>;
    try {
      checked = await verifyCompactJws(set, this.keys, JWS_ALGORITHMS);
    } catch (err) {
      if ((err as { code?: string }).code !== 'ERR_JWKS_NO_MATCHING_KEY') throw new Error(`a SET was refused: ${(err as Error).message}`);
      await this.refreshKeys();
      checked = await verifyCompactJws(set, this.keys, JWS_ALGORITHMS).catch((e: Error) => Promise.reject(new Error(`a SET was refused: ${e.message}`)));
    }
    const refuse = (what: string) => new Error(`a SET was refused: ${what}`);
    const { header, payload } = checked;
    // RFC 8417 §2.3: `secevent+jwt`, with or without the `application/` prefix, in any case.
    if (typeof header.typ !== 'string' || header.typ.toLowerCase().replace(/^application\//, '') !== 'secevent+jwt') {
      throw refuse('its typ is not secevent+jwt');
    }
    if (payload.iss !== this.issuer) throw refuse('its iss is not the issuer');
    const aud = payload.aud;
    if (!(aud === this.audience || (Array.isArray(aud) && aud.every((a) => typeof a === 'string') && aud.includes(this.audience)))) {
      throw refuse('its aud is not this receiver');
    }
    const now = this.t.now() / 1000;
    if (typeof payload.iat !== 'number' || !Number.isFinite(payload.iat)) throw refuse('it has no numeric iat');
    if (payload.nbf !== undefined && (typeof payload.nbf !== 'number' || payload.nbf > now + SET_CLOCK_TOLERANCE)) throw refuse('its nbf is not acceptable');
    if (payload.exp !== undefined && (typeof payload.exp !== 'number' || payload.exp <= now - SET_CLOCK_TOLERANCE)) throw refuse('it has expired');
    if (typeof payload.jti !== 'string' || payload.jti === '') throw refuse('its jti is not a string');
    if (typeof payload.events !== 'object' || payload.events === null || Array.isArray(payload.events)) throw refuse('it has no events claim');
    return payload;
  }

  private apply(p: JWTPayload): void {
    const events = (p.events ?? {}) as Record<string, Record<string, unknown>>;
    const now = this.t.now();
    const str = (v: unknown) => (typeof v === 'string' ? v : null);
    const num = (v: unknown) => (typeof v === 'number' ? v : null);
    // Tokens of `client` issued before `after` (epoch s; Infinity: all) are refused until every one has expired.
    const cut = (client: string | null, after: number) => {
      if (client === null) return;
      const prev = this.cutoffs.get(client);
      const until = Math.max(prev?.until ?? 0, (Number.isFinite(after) ? Math.max(after * 1000, now) : now) + this.lifetime);
      this.cutoffs.set(client, { after: Math.max(prev?.after ?? 0, after), until });
    };
    for (const [type, e] of Object.entries(events)) {
      switch (type) {
        case EV.tokenRevoked: {
          const jti = str(e.jti);
          if (jti !== null) this.revokeJti(jti, num(e.exp) ?? Infinity, now);
          break;
        }
        case EV.sdkKeyDisabled:
        case EV.sdkKeyTokensCutOff:
          cut(str(e.client_id), num(e.tokens_valid_after) ?? Infinity);
          if (str(e.user_id)) this.onUserChange(str(e.user_id)!);
          break;
        case EV.sdkKeyDeleted:
          cut(str(e.client_id), Infinity);
          break;
        case EV.signingKeyRevoked: {
          const kid = str(e.kid);
          if (kid !== null) this.kids.set(kid, now + this.lifetime);
          // Another key signs from now on: fetch the key set now rather than at the next unknown kid.
          this.refreshKeys().catch((err: Error) => this.t.logger.warn(`Tessera revocation stream: JWKS refresh failed: ${err.message}`));
          break;
        }
        case EV.userSuspended:
        case EV.sessionRevoked:
        case EV.credentialChange:
          if (str(e.user_id)) this.onUserChange(str(e.user_id)!);
          break;
      }
    }
  }
}
