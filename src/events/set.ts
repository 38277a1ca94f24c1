import type { KeyObject } from 'node:crypto';
import type { SigningAlg } from '../platform/config.js';
import { signCompact } from '../platform/crypto/jws.js';
import type { StoredEvent } from './events.repository.js';

/** OpenID Shared Signals / CAEP event types, where one fits. */
export const CAEP_SESSION_REVOKED = 'https://schemas.openid.net/secevent/caep/event-type/session-revoked';
export const CAEP_CREDENTIAL_CHANGE = 'https://schemas.openid.net/secevent/caep/event-type/credential-change';

/** Tessera's own event types (no SSF/CAEP type says these). */
export const TESSERA_EVENT = {
  tokenRevoked: 'urn:tessera:secevent:access-token-revoked',
  sdkKeyDisabled: 'urn:tessera:secevent:sdk-key-disabled',
  sdkKeyTokensCutOff: 'urn:tessera:secevent:sdk-key-tokens-cut-off',
  sdkKeyDeleted: 'urn:tessera:secevent:sdk-key-deleted',
  userSuspended: 'urn:tessera:secevent:user-suspended',
  signingKeyRevoked: 'urn:tessera:secevent:signing-key-revoked',
  /**
   * Delivered by poll to a receiver whose position fell below the horizon (events it never
   * acknowledged were pruned): rebuild state from what follows. The stream says the same with
   * its `resync` event.
   */
  resync: 'urn:tessera:secevent:resync',
} as const;

export interface SetClaims {
  iss: string;
  iat: number;
  jti: string;
  aud: string;
  /** SSF subject identifier of the principal the event is about. */
  sub_id: Record<string, unknown>;
  events: Record<string, Record<string, unknown>>;
}

const opaque = (id: unknown) => ({ format: 'opaque', id: String(id) });

/** The SET claims of one stored event for one receiver (RFC 8417; SSF `sub_id`). */
export function setClaims(issuer: string, audience: string, e: StoredEvent): SetClaims {
  const s = e.subject;
  const toe = Math.floor(e.createdAt.getTime() / 1000);
  const base = { iss: issuer, iat: toe, jti: String(e.id), aud: audience };
  switch (e.kind) {
    case 'token_revoked':
      return {
        ...base,
        sub_id: { format: 'jwt_id', iss: issuer, jti: s.jti },
        events: { [TESSERA_EVENT.tokenRevoked]: { jti: s.jti, client_id: s.client_id, exp: s.exp } },
      };
    case 'sdk_key_disabled':
      return {
        ...base,
        sub_id: opaque(s.client_id),
        events: { [TESSERA_EVENT.sdkKeyDisabled]: { client_id: s.client_id, user_id: s.user_id, tokens_valid_after: s.tokens_valid_after } },
      };
    case 'sdk_key_tokens_cut_off':
      return {
        ...base,
        sub_id: opaque(s.client_id),
        events: { [TESSERA_EVENT.sdkKeyTokensCutOff]: { client_id: s.client_id, user_id: s.user_id, tokens_valid_after: s.tokens_valid_after } },
      };
    case 'sdk_key_deleted':
      return { ...base, sub_id: opaque(s.client_id), events: { [TESSERA_EVENT.sdkKeyDeleted]: { client_id: s.client_id, user_id: s.user_id } } };
    case 'user_suspended':
      return { ...base, sub_id: opaque(s.user_id), events: { [TESSERA_EVENT.userSuspended]: { user_id: s.user_id } } };
    case 'signing_key_revoked':
      return { ...base, sub_id: { format: 'opaque', id: s.kid }, events: { [TESSERA_EVENT.signingKeyRevoked]: { kid: s.kid } } };
    case 'session_revoked':
      return {
        ...base,
        sub_id: { format: 'complex', user: opaque(s.user_id), session: opaque(s.session_id) },
        events: { [CAEP_SESSION_REVOKED]: { event_timestamp: toe, initiating_entity: 'policy', session_id: s.session_id, user_id: s.user_id, exp: s.exp } },
      };
    case 'api_token_revoked':
      return {
        ...base,
        sub_id: { format: 'complex', user: opaque(s.user_id), credential: opaque(s.api_token_id) },
        events: {
          [CAEP_CREDENTIAL_CHANGE]: {
            event_timestamp: toe,
            credential_type: 'api-token',
            change_type: 'revoke',
            api_token_id: s.api_token_id,
            user_id: s.user_id,
          },
        },
      };
  }
}

/**
 * The SET that tells a poll receiver to resync: `jti` as the poll names it, `from` the horizon
 * (every event at or below it is gone; what is delivered starts above it), `iat` now.
 */
export function resyncClaims(issuer: string, audience: string, jti: string, from: number, now: number): SetClaims {
  return {
    iss: issuer,
    iat: Math.floor(now / 1000),
    jti,
    aud: audience,
    sub_id: opaque(audience),
    events: {
      [TESSERA_EVENT.resync]: { reason: "events after this receiver's position were pruned before it acknowledged them", from },
    },
  };
}

/** The JWS header of a SET: `typ: secevent+jwt` (RFC 8417 §2.3), base64url. */
export function setHeader(alg: SigningAlg, kid: string): string {
  return Buffer.from(JSON.stringify({ alg, kid, typ: 'secevent+jwt' })).toString('base64url');
}

/** Signs SET claims with a signing key. */
export function signSet(key: { alg: SigningAlg; kid: string; privateKey: KeyObject }, claims: object): Promise<string> {
  return signCompact(key.alg, key.privateKey, setHeader(key.alg, key.kid), claims);
}
