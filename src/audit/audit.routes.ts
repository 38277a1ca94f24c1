import type { FastifyInstance } from 'fastify';
import { listAuditEvents } from '../platform/database/audit.repository.js';
import { dateTimeSchema, errorResponses, uuidSchema } from '../platform/http/schemas.js';

const eventSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'occurred_at', 'action'],
  properties: {
    id: { type: 'integer' },
    occurred_at: dateTimeSchema,
    actor_user_id: { type: ['string', 'null'] },
    actor_credential: { type: ['string', 'null'] },
    action: { type: 'string' },
    target_type: { type: ['string', 'null'] },
    target_id: { type: ['string', 'null'] },
    organization_id: { type: ['string', 'null'] },
    ip: { type: ['string', 'null'] },
    request_id: { type: ['string', 'null'] },
    details: { type: 'object', additionalProperties: true },
  },
} as const;

/** Operators read the audit trail, newest first, paged by `before`. */
export async function adminAuditRoutes(app: FastifyInstance): Promise<void> {
  app.get<{ Querystring: { limit?: number; before?: number; action?: string; actor_user_id?: string; target_id?: string } }>(
    '/audit-events',
    {
      schema: {
        tags: ['admin'],
        operationId: 'listAuditEvents',
        summary: 'Audit events, newest first (page with `before` = the last id seen)',
        security: [{ bearer: [] }],
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            limit: { type: 'integer', minimum: 1, maximum: 500, default: 100 },
            before: { type: 'integer', minimum: 1 },
            action: { type: 'string', maxLength: 100 },
            actor_user_id: uuidSchema,
            target_id: { type: 'string', maxLength: 200 },
          },
        },
        response: {
          200: {
            type: 'object',
            additionalProperties: false,
            required: ['events'],
            properties: { events: { type: 'array', items: eventSchema }, next_before: { type: ['integer', 'null'] } },
          },
          ...errorResponses(400, 401, 403),
        },
      },
    },
    async (request) => {
      const q = request.query;
      const limit = q.limit ?? 100;
      const events = await listAuditEvents(app.db, {
        limit,
        ...(q.before !== undefined && { before: q.before }),
        ...(q.action && { action: q.action }),
        ...(q.actor_user_id && { actorUserId: q.actor_user_id }),
        ...(q.target_id && { targetId: q.target_id }),
      });
      return { events, next_before: events.length === limit ? events[events.length - 1]!.id : null };
    },
  );
}
