import { sql, type Kysely, type RawBuilder, type Selectable, type Transaction } from 'kysely';
import type { Database } from './database.js';
import type { AuditEventsTable } from '../../identity/identity.table.js';

export type AuditEvent = Selectable<AuditEventsTable>;
type Q = Kysely<Database> | Transaction<Database>;

/** Who acted, through which credential, from where. */
export interface Actor {
  userId: string | null;
  /** `api_token:<id>`, `session:<id>`, `client:<client_id>`, `cli`, `system` */
  credential: string;
  ip?: string | null;
  requestId?: string | null;
}

export interface AuditEntry {
  action: string;
  targetType?: string;
  targetId?: string;
  organizationId?: string | null;
  /** Never a secret: names, scopes, states. */
  details?: Record<string, unknown>;
}

/** The audit row of one event. */
function auditRow(actor: Actor, entry: AuditEntry) {
  return {
    actor_user_id: actor.userId,
    actor_credential: actor.credential,
    action: entry.action,
    target_type: entry.targetType ?? null,
    target_id: entry.targetId ?? null,
    organization_id: entry.organizationId ?? null,
    ip: actor.ip ?? null,
    request_id: actor.requestId ?? null,
    details: JSON.stringify(entry.details ?? {}),
  };
}

/** Records an audit event; call it in the transaction of the change it describes. */
export async function recordAudit(db: Q, actor: Actor, entry: AuditEntry): Promise<void> {
  await db.insertInto('audit_events').values(auditRow(actor, entry)).execute();
}

/** Records several audit events in one statement (one row each); call it in the transaction of the changes. */
export async function recordAudits(db: Q, events: Array<{ actor: Actor; entry: AuditEntry }>): Promise<void> {
  if (events.length === 0) return;
  await db
    .insertInto('audit_events')
    .values(events.map(({ actor, entry }) => auditRow(actor, entry)))
    .execute();
}

/**
 * The same audit row as {@link recordAudit}, as the body of a data-modifying CTE: one row per row
 * of the CTE `source` (`insert into audit_events ... select ... from source`). For hot paths that
 * make a change and its audit row in a single statement (one round trip, one implicit
 * transaction); the expressions (and `ip`/`requestId` when given as SQL) may refer to the
 * columns of `source`.
 */
export function auditInsertFrom(
  source: string,
  actor: {
    userId: RawBuilder<string | null>;
    credential: RawBuilder<string>;
    ip: string | null | RawBuilder<string | null>;
    requestId: string | null | RawBuilder<string | null>;
  },
  entry: { action: string; targetType: string; targetId: RawBuilder<string>; details?: RawBuilder<unknown> },
): RawBuilder<unknown> {
  return sql`insert into audit_events
      (actor_user_id, actor_credential, action, target_type, target_id, organization_id, ip, request_id, details)
    select ${actor.userId}, ${actor.credential}, ${entry.action}, ${entry.targetType}, ${entry.targetId}, null,
      ${actor.ip}, ${actor.requestId}, ${entry.details ?? sql`'{}'::jsonb`}
    from ${sql.table(source)}`;
}

export interface AuditQuery {
  limit: number;
  /** Only events with an id below this (newest first paging). */
  before?: number;
  action?: string;
  actorUserId?: string;
  targetId?: string;
}

export async function listAuditEvents(db: Q, q: AuditQuery): Promise<AuditEvent[]> {
  let query = db.selectFrom('audit_events').selectAll().orderBy('id', 'desc').limit(q.limit);
  if (q.before !== undefined) query = query.where('id', '<', q.before);
  if (q.action) query = query.where('action', '=', q.action);
  if (q.actorUserId) query = query.where('actor_user_id', '=', q.actorUserId);
  if (q.targetId) query = query.where('target_id', '=', q.targetId);
  return query.execute();
}
