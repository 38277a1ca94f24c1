// Copies the console's templates and static files beside its compiled code (dist/src/console/),
// so a build runs without the source tree (the container image ships dist/ only). Run by
// `npm run build` after tsc, from dist/.
import { cpSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
for (const dir of ['views', 'assets']) {
  cpSync(path.join(root, 'src', 'console', dir), path.join(root, 'dist', 'src', 'console', dir), { recursive: true });
}
