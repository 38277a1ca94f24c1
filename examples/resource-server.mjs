// A resource server protecting its routes with Tessera tokens (run `npm run build` first).
//   TESSERA_URL=http://localhost:8080 PORT=3000 node examples/resource-server.mjs
import Fastify from 'fastify';
import { tesseraAuth } from 'tessera/client/fastify';

const issuer = process.env.TESSERA_URL ?? 'http://localhost:8080';
const app = Fastify();

// The three lines: register the plugin, then protect routes with the scopes they need.
await app.register(tesseraAuth, { issuer, audience: process.env.TESSERA_AUDIENCE ?? issuer });
app.get('/jobs', { preHandler: app.tesseraAuth(['api']) }, async (request) => ({
  caller: request.tessera.subject,
  scopes: request.tessera.scopes,
  organization: request.tessera.organizationId,
}));

const address = await app.listen({ port: Number(process.env.PORT ?? 3000), host: process.env.HOST ?? '127.0.0.1' });
console.log(`resource server listening on ${address}`);
for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, () => app.close());
