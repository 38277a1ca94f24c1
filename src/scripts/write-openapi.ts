// Writes openapi.yaml at the repository root from the route schemas (npm run openapi).
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { contractApp } from './contract-app.js';

const { app, close } = await contractApp();
try {
  const out = fileURLToPath(new URL('../../../openapi.yaml', import.meta.url));
  writeFileSync(out, app.openapiYaml());
  process.stdout.write(`wrote ${out}\n`);
} finally {
  await close();
}
