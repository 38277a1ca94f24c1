import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';

declare module 'fastify' {
  interface FastifyInstance {
    /** The OpenAPI document generated from the route schemas, as YAML. */
    openapiYaml(): string;
  }
}

export const OPENAPI_INFO = {
  title: 'Tessera',
  version: '0.1.0',
  license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
  description:
    'OAuth 2.0 token server for quantum-cloud platforms: SDK keys and the client_credentials grant, ' +
    'API tokens and token login, provider access tokens, signing keys and gateway verification.',
};

/**
 * The contract is generated from the route schemas (one source of truth). `openapi.yaml` at the
 * repository root is this output, written by `npm run openapi`; a test fails when they differ.
 */
export const openapiPlugin = fp(
  async function openapiPlugin(app: FastifyInstance, opts: { issuer: string }) {
    await app.register(swagger, {
      openapi: {
        openapi: '3.1.0',
        info: OPENAPI_INFO,
        servers: [{ url: opts.issuer }],
        tags: [
          { name: 'oauth', description: 'OAuth 2.0 endpoints (RFC 6749, 7009, 7662)' },
          { name: 'discovery', description: 'Metadata and keys (RFC 8414, RFC 7517)' },
          { name: 'login', description: 'API-token login (IBM Quantum compatible)' },
          { name: 'self-service', description: 'A user managing their own credentials' },
          { name: 'provider-tokens', description: 'Provider access tokens ("bring your own token"), user and organization level' },
          { name: 'organizations', description: 'Organization membership, managed by owners and maintainers' },
          { name: 'admin', description: 'Operators (scope admin)' },
          { name: 'gateway', description: 'Forward-auth for gateways' },
          { name: 'events', description: 'Security events for verifiers: Security Event Tokens streamed (SSE) and by RFC 8936 poll' },
          { name: 'operations', description: 'Health, readiness, metrics, contract' },
        ],
        components: {
          securitySchemes: {
            bearer: {
              type: 'http',
              scheme: 'bearer',
              description: 'API token, session token or JWT access token (JWTs from SDK keys never manage credentials: 403 insufficient_scope)',
            },
            accessToken: { type: 'apiKey', in: 'header', name: 'x-access-token', description: 'Session token from loginWithToken' },
            clientBasic: { type: 'http', scheme: 'basic', description: 'client_secret_basic (RFC 6749 §2.3.1)' },
            metricsToken: { type: 'http', scheme: 'bearer', description: 'TESSERA_METRICS_TOKEN, when the operator sets one' },
          },
        },
      },
    });
    await app.register(swaggerUi, {
      routePrefix: '/docs/ui',
      uiConfig: { docExpansion: 'list', deepLinking: true, validatorUrl: null } as Record<string, unknown>,
      staticCSP: true,
    });
    app.decorate('openapiYaml', function openapiYaml() {
      return app.swagger({ yaml: true });
    });
  },
  { name: 'tessera-openapi' },
);
