/**
 * Credentials a write just ended or changed, for this instance to forget at once. Every instance
 * also forgets them when the change notification arrives (after commit); this call closes the
 * window on the instance that made the change, so its next request already sees the change.
 */
export interface EndedCredentials {
  userIds?: readonly string[];
  apiTokenIds?: readonly string[];
  sessionIds?: readonly string[];
  sdkKeyClientIds?: readonly string[];
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Drops this instance's cached verifications of the credentials named (see {@link EndedCredentials}). */
    forgetCredentials(ended: EndedCredentials): void;
  }
}
