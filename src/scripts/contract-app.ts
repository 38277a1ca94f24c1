import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../app.js';
import { loadConfig } from '../platform/config.js';
import { createDb } from '../platform/database/database.js';

/**
 * An app built only to read its routes and contract: nothing connects (the pool is lazy, and its
 * background jobs, the only parts that touch the database at start, are never started). The issuer is fixed so the generated document does not depend on the machine.
 */
export async function contractApp(): Promise<{ app: FastifyInstance; close(): Promise<void> }> {
  const connectionString = 'postgres://contract@127.0.0.1:1/contract';
  const { config } = loadConfig({
    DATABASE_URL: connectionString,
    TESSERA_MASTER_KEY: randomBytes(32).toString('base64'),
    TESSERA_PEPPER: randomBytes(32).toString('base64'),
    TESSERA_ISSUER: 'https://tessera.example.com',
    TESSERA_LOG_LEVEL: 'silent',
  });
  const handle = createDb({ connectionString, max: 1 });
  const app = await buildApp({ config, db: handle.db, connectionString, logger: false });
  await app.ready();
  return {
    app,
    async close() {
      await app.close();
      await handle.close();
    },
  };
}
