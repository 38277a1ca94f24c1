import type { FastifyInstance, FastifyReply, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import { Counter, Gauge, Histogram } from 'prom-client';
import { authenticate } from '../platform/auth/authenticate.js';
import type { Principal } from '../platform/auth/principal.js';
import { badRequest } from '../platform/errors/api-error.js';
import { markBearerGuard } from '../platform/http/contract.js';
import { errorResponses } from '../platform/http/schemas.js';
import { eventBounds, eventsDb, pollEvents, pruneEvents, type StoredEvent } from './events.repository.js';
import { EventHub, type Subscriber } from './events.service.js';
import { resyncClaims, setClaims, signSet } from './set.js';

/** Scopes that may receive security events: the dedicated one, or an operator's. */
export const EVENT_SCOPES = ['events:read', 'admin'] as const;

/** Bytes a slow stream may have buffered before it is cut (the receiver resumes with Last-Event-ID). */
const MAX_BUFFERED = 4 * 1024 * 1024;
/** Longest wait of a long poll without events. */
const LONG_POLL_MS = 20_000;
const EVENT_ID = /^[0-9]{1,15}$/;
/** A SET's jti as poll delivery names it: an event id, or a resync notice's `resync-<position>`. */
const SET_JTI = '^([0-9]{1,15}|resync-[0-9]{1,15})$';

/** The receiver a credential speaks for (the SETs' `aud`): its SDK key, else its user. */
function receiverOf(p: Principal): { key: string; audience: string } {
  return p.kind === 'client' && p.clientId ? { key: `client:${p.clientId}`, audience: p.clientId } : { key: `user:${p.userId}`, audience: p.userId };
}

/** Does this event end the credential `p` itself? Then its stream closes after sending it. */
function endsCredential(p: Principal, e: StoredEvent): boolean {
  const s = e.subject;
  switch (e.kind) {
    case 'token_revoked':
      return p.kind === 'client' && s.jti === p.credentialId;
    case 'sdk_key_disabled':
    case 'sdk_key_deleted':
    case 'sdk_key_tokens_cut_off':
      return p.kind === 'client' && s.client_id === p.clientId;
    case 'user_suspended':
      return s.user_id === p.userId;
    case 'session_revoked':
      return p.kind === 'session' && s.session_id === p.credentialId;
    case 'api_token_revoked':
      return p.kind === 'api_token' && s.api_token_id === p.credentialId;
    case 'signing_key_revoked':
      return false;
  }
}

/**
 * Security events for verifiers: Security Event Tokens (RFC 8417) signed with the current signing
 * key, streamed (`GET /events/stream`, Server-Sent Events) and by RFC 8936 poll
 * (`POST /events/poll`). Registers the fan-out reader and the pruning job.
 */
export async function eventsRoutes(app: FastifyInstance): Promise<void> {
  const { config } = app;
  const emitted = new Counter({
    name: 'tessera_security_events_total',
    help: 'Security events this instance read from the events table, by kind',
    labelNames: ['kind'] as const,
    registers: [app.metrics],
  });
  const delivered = new Counter({
    name: 'tessera_security_event_sets_delivered_total',
    help: 'Security Event Tokens this instance handed to receivers, by delivery (stream, poll)',
    labelNames: ['delivery'] as const,
    registers: [app.metrics],
  });
  const receivers = new Gauge({
    name: 'tessera_security_event_receivers',
    help: 'Receivers connected to this instance, by delivery (stream, poll: long polls waiting)',
    labelNames: ['delivery'] as const,
    registers: [app.metrics],
  });
  const lag = new Histogram({
    name: 'tessera_security_event_delivery_lag_seconds',
    help: 'From the commit of the change to the SET written to a stream receiver',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60],
    registers: [app.metrics],
  });
  const hub = new EventHub({ db: app.db, log: app.log, hooks: { onEvent: (e) => emitted.inc({ kind: e.kind }) } });
  const streams = new Set<FastifyReply>();

  const sign = (audience: string, e: StoredEvent) => signSet(app.oauth.keys.signingKey(), setClaims(config.issuer, audience, e));

  app.jobs.register({
    name: 'security-events',
    async start() {
      await hub.start();
      app.changes.on('security_event', () => hub.pull());
      // After a reconnect notifications may have been missed: read up from the last id seen.
      app.changes.onReset(() => hub.pull());
    },
    stop() {
      hub.stop();
      for (const r of streams) r.raw.end();
    },
  });
  let pruneTimer: NodeJS.Timeout | null = null;
  app.jobs.register({
    name: 'security-events-prune',
    start() {
      const prune = () =>
        pruneEvents(eventsDb(app.jobDb), new Date(app.clock.now() - config.securityEvents.retentionSeconds * 1000)).catch((err: Error) =>
          app.log.warn({ err: { message: err.message } }, 'could not prune security events'),
        );
      pruneTimer = setInterval(() => void prune(), 60_000);
      pruneTimer.unref();
    },
    stop() {
      if (pruneTimer) clearInterval(pruneTimer);
    },
  });
  app.addHook('preClose', async () => {
    for (const r of streams) r.raw.end();
  });

  const guard: preHandlerAsyncHookHandler = markBearerGuard(
    async function eventsGuard(request: FastifyRequest) {
      request.principal = await authenticate(request, { anyOf: EVENT_SCOPES });
    } as preHandlerAsyncHookHandler,
    [...EVENT_SCOPES],
  );

  app.get<{ Headers: { 'last-event-id'?: string } }>(
    '/events/stream',
    {
      preHandler: guard,
      schema: {
        tags: ['events'],
        operationId: 'streamSecurityEvents',
        summary: 'Security events as a stream of Security Event Tokens (Server-Sent Events)',
        description:
          'Needs scope `events:read` (SDK keys may hold it) or `admin`. Each event: `id:` the event id, `data:` a SET (RFC 8417, ' +
          '`typ: secevent+jwt`, signed with the current signing key, `aud` the receiver: its client_id or user id). ' +
          'The stream opens with a `receiver` event (data: `{"aud": ...}`): the `aud` every SET on it carries. ' +
          '`Last-Event-ID` resumes after that id; without it the stream starts with every event still kept (the retention ' +
          'covers the longest token lifetime), so a new verifier learns every revocation that still matters. A `resync` event ' +
          '(data: JSON) says the requested id is older than the retention or unknown: events replay from the oldest kept. ' +
          'A `live` event (data: `{"id": n}`) follows the catch-up: the receiver is up to date from then on. ' +
          'Comment lines are heartbeats. The stream ends when the credential expires or is revoked.',
        headers: {
          type: 'object',
          properties: { 'last-event-id': { type: 'string', maxLength: 64, description: 'The id of the last event received' } },
        },
        response: {
          200: {
            description: 'An SSE stream (never ends by itself while the credential lasts)',
            content: { 'text/event-stream': { schema: { type: 'string' } } },
          },
          ...errorResponses(400, 401, 403, 429, 503),
        },
      },
    },
    async (request, reply) => {
      const principal = request.principal!;
      const raw = request.headers['last-event-id']?.trim();
      if (raw !== undefined && raw !== '' && !EVENT_ID.test(raw)) throw badRequest('Last-Event-ID must be an event id (digits)');
      const { horizon, latest } = await eventBounds(eventsDb(app.db));
      const requested = raw ? Number(raw) : null;
      const resync = requested !== null && (requested < horizon || requested > latest);
      const { audience } = receiverOf(principal);

      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-store',
        'x-content-type-options': 'nosniff',
        'x-request-id': request.id,
        'x-accel-buffering': 'no',
        // One stream per connection: when the stream ends (credential expired, shutdown) the socket goes with it.
        connection: 'close',
      });
      res.write(`: tessera security events\nretry: 1000\n\nevent: receiver\ndata: ${JSON.stringify({ aud: audience })}\n\n`);
      if (resync)
        res.write(`event: resync\ndata: ${JSON.stringify({ reason: 'events after the requested id are no longer kept or it is unknown', from: horizon })}\n\n`);
      streams.add(reply);
      receivers.inc({ delivery: 'stream' });

      let open = true;
      let queue: Promise<void> = Promise.resolve();
      let unsubscribe: (() => void) | null = null;
      const timers: NodeJS.Timeout[] = [];
      const close = () => {
        if (!open) return;
        open = false;
        unsubscribe?.();
        for (const t of timers) clearInterval(t);
        streams.delete(reply);
        receivers.dec({ delivery: 'stream' });
        res.end();
      };
      res.on('close', close);
      const subscriber: Subscriber = {
        cursor: resync || requested === null ? horizon : requested,
        push(events) {
          this.cursor = events[events.length - 1]!.id;
          // Signed off the loop, written in order.
          queue = queue.then(async () => {
            if (!open) return;
            try {
              const sets = await Promise.all(events.map((e) => sign(audience, e)));
              if (!open) return;
              let out = '';
              for (let i = 0; i < events.length; i++) out += `id: ${events[i]!.id}\ndata: ${sets[i]}\n\n`;
              res.write(out);
              delivered.inc({ delivery: 'stream' }, events.length);
              const now = Date.now();
              for (const e of events) lag.observe(Math.max(0, now - e.createdAt.getTime()) / 1000);
              if (res.writableLength > MAX_BUFFERED || events.some((e) => endsCredential(principal, e))) close();
            } catch (err) {
              request.log.warn({ err: { message: (err as Error).message } }, 'could not send security events; closing the stream');
              close();
            }
          });
        },
      };
      timers.push(setInterval(() => open && res.write(': heartbeat\n\n'), config.securityEvents.heartbeatSeconds * 1000));
      if (principal.expiresAt !== null) {
        const ms = principal.expiresAt * 1000 - app.clock.now();
        timers.push(setTimeout(close, Math.max(0, Math.min(ms, 2 ** 31 - 1))));
      }
      for (const t of timers) t.unref();
      try {
        const off = await hub.subscribe(subscriber, () => open);
        if (open) unsubscribe = off;
        else off();
        // Everything kept up to here is on its way: from now on the receiver is up to date.
        queue = queue.then(() => void (open && res.write(`event: live\ndata: ${JSON.stringify({ id: subscriber.cursor })}\n\n`)));
      } catch (err) {
        request.log.warn({ err: { message: (err as Error).message } }, 'could not read security events; closing the stream');
        close();
      }
    },
  );

  app.post<{ Body: { ack?: string[]; setErrs?: Record<string, { err: string; description?: string }>; maxEvents?: number; returnImmediately?: boolean } }>(
    '/events/poll',
    {
      preHandler: guard,
      schema: {
        tags: ['events'],
        operationId: 'pollSecurityEvents',
        summary: 'Security events by RFC 8936 poll delivery',
        description:
          'Needs scope `events:read` or `admin`. Acknowledges the SETs named in `ack` (and in `setErrs`, which are logged), then ' +
          'answers with up to `maxEvents` unacknowledged SETs, oldest first (`sets`: jti -> SET). Unacknowledged SETs are ' +
          'delivered again. Acknowledgements are kept per receiver (its SDK key, else its user). A new receiver starts with ' +
          'every event still kept. A receiver whose position (its oldest unacknowledged event) is older than the retention ' +
          'has missed events: its answer carries a SET of type `urn:tessera:secevent:resync` (jti `resync-<position>`, event ' +
          'member `from`: every event at or below it is gone), delivered again until acknowledged, next to the events still ' +
          'kept; the receiver rebuilds its state from them. Receivers idle for longer than the retention plus 30 days ' +
          'are forgotten and start again as new ones. Without `returnImmediately: true` an empty answer waits up to 20 s for an event.',
        body: {
          type: 'object',
          additionalProperties: false,
          properties: {
            ack: { type: 'array', maxItems: 1000, items: { type: 'string', pattern: SET_JTI }, description: 'jtis of SETs processed' },
            setErrs: {
              type: 'object',
              maxProperties: 1000,
              propertyNames: { pattern: SET_JTI },
              additionalProperties: {
                type: 'object',
                required: ['err'],
                properties: { err: { type: 'string', maxLength: 64 }, description: { type: 'string', maxLength: 1024 } },
              },
            },
            maxEvents: { type: 'integer', minimum: 0, maximum: 1000, description: 'Most SETs to return (default 100; 0: acknowledge only)' },
            returnImmediately: { type: 'boolean' },
          },
        },
        response: {
          200: {
            type: 'object',
            additionalProperties: false,
            required: ['sets', 'moreAvailable'],
            properties: {
              sets: {
                type: 'object',
                additionalProperties: { type: 'string' },
                description: 'jti -> SET (compact JWS); a `resync-<position>` jti is the resync notice',
              },
              moreAvailable: { type: 'boolean' },
            },
          },
          ...errorResponses(400, 401, 403, 413, 415, 429, 503),
        },
      },
    },
    async (request, reply) => {
      const principal = request.principal!;
      const body = request.body ?? {};
      const receiver = receiverOf(principal);
      const max = body.maxEvents ?? 100;
      const errs = Object.keys(body.setErrs ?? {});
      if (errs.length > 0) request.log.warn({ receiver: receiver.key, setErrs: body.setErrs }, 'receiver reported SET errors');
      const named = [...(body.ack ?? []), ...errs];
      const ackResync = named.filter((j) => j.startsWith('resync-'));
      const ack = named.filter((j) => !j.startsWith('resync-')).map(Number);
      let r = await pollEvents(app.db, receiver.key, ack, max, ackResync);
      if (r.events.length === 0 && r.resync === null && max > 0 && body.returnImmediately !== true) {
        receivers.inc({ delivery: 'poll' });
        try {
          await new Promise<void>((resolve) => {
            const sub: Subscriber = { cursor: hub.lastId, push: () => done() };
            const off = hub.follow(sub);
            const timer = setTimeout(() => done(), LONG_POLL_MS);
            const onClose = () => done();
            reply.raw.on('close', onClose);
            function done() {
              off();
              clearTimeout(timer);
              reply.raw.off('close', onClose);
              resolve();
            }
          });
        } finally {
          receivers.dec({ delivery: 'poll' });
        }
        if (!reply.raw.destroyed && !reply.raw.writableEnded) r = await pollEvents(app.db, receiver.key, [], max);
      }
      const sets: Record<string, string> = {};
      const signed = await Promise.all(r.events.map((e) => sign(receiver.audience, e)));
      r.events.forEach((e, i) => (sets[String(e.id)] = signed[i]!));
      if (r.resync) {
        const claims = resyncClaims(config.issuer, receiver.audience, r.resync.jti, r.resync.from, app.clock.now());
        sets[r.resync.jti] = await signSet(app.oauth.keys.signingKey(), claims);
        request.log.warn({ receiver: receiver.key, from: r.resync.from }, 'poll receiver missed pruned security events; told to resync');
      }
      delivered.inc({ delivery: 'poll' }, Object.keys(sets).length);
      return reply.header('cache-control', 'no-store').send({ sets, moreAvailable: r.more });
    },
  );
}
