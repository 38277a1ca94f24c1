import type { FastifyRequest } from 'fastify';
import type { Actor } from '../database/audit.repository.js';
import { credentialLabel } from './principal.js';

/** The audit actor of an authenticated request: its user, credential, address and request id. */
export function requestActor(request: FastifyRequest): Actor {
  const p = request.principal;
  if (!p) throw new TypeError('requestActor() needs an authenticated request (requireAuth first)');
  return { userId: p.userId, credential: credentialLabel(p), ip: request.ip, requestId: request.id };
}
