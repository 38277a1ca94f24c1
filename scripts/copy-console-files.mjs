#!/usr/bin/env node
// Copies the console's templates and static files beside its compiled code (dist/src/console/),
// so a build runs without the source tree (the container image ships dist/ only).
import { cpSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
for (const dir of ['views', 'assets']) {
  cpSync(path.join(root, 'src', 'console', dir), path.join(root, 'dist', 'src', 'console', dir), { recursive: true });
}
