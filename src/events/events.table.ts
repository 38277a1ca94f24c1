import type { ColumnType } from 'kysely';

/** What a security event is about, by kind (never a secret). Epoch seconds for times. */
export interface SecurityEventSubjects {
  token_revoked: { jti: string; client_id: string | null; exp: number };
  sdk_key_disabled: { client_id: string; user_id: string; tokens_valid_after: number };
  sdk_key_tokens_cut_off: { client_id: string; user_id: string; tokens_valid_after: number };
  sdk_key_deleted: { client_id: string; user_id: string };
  user_suspended: { user_id: string };
  session_revoked: { session_id: string; user_id: string; exp: number };
  signing_key_revoked: { kid: string };
  api_token_revoked: { api_token_id: string; user_id: string };
}

export type SecurityEventKind = keyof SecurityEventSubjects;

export interface SecurityEventsTable {
  /** Drawn in commit order (see migrations/0012_security_events.ts): the SSE event id and the SET's jti. */
  id: number;
  kind: SecurityEventKind;
  subject: ColumnType<Record<string, unknown>, string, string>;
  created_at: ColumnType<Date, never, never>;
}

export interface SecurityEventsHorizonTable {
  one: boolean;
  /** Every id at or below this has been pruned. */
  pruned_through: number;
}

export interface SecurityEventReceiversTable {
  /** `client:<client_id>` or `user:<user id>`. */
  receiver: string;
  /** Every event at or below this id is acknowledged. */
  cursor: number;
  updated_at: ColumnType<Date, never, Date>;
}

export interface SecurityEventAcksTable {
  receiver: string;
  event_id: number;
}

export type SecurityEventTables = {
  security_events: SecurityEventsTable;
  security_events_horizon: SecurityEventsHorizonTable;
  security_event_receivers: SecurityEventReceiversTable;
  security_event_acks: SecurityEventAcksTable;
};
