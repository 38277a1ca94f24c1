// The contributor guide and the README name only files and folders that exist: every repository
// path they quote in backticks (src/, test/, migrations/, bench/, scripts/, clients/, docs/) is there.
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const QUOTED = /`((?:src|test|migrations|bench|scripts|clients|docs)\/[^`\s*<>{}]*)`/g;

for (const doc of ['CONTRIBUTING.md', 'README.md']) {
  t.test(`${doc} names only paths that exist`, async (t) => {
    const text = readFileSync(path.join(root, doc), 'utf8');
    const named = [...new Set([...text.matchAll(QUOTED)].map((m) => m[1]!.replace(/[.,:;)]+$/, '')))];
    t.ok(named.length > 0, `${doc} quotes repository paths`);
    const missing = named.filter((p) => !existsSync(path.join(root, p)));
    t.same(missing, [], `paths ${doc} names that do not exist`);
  });
}

t.test('CONTRIBUTING.md: the path of POST /oauth/token is at most six files in src/oauth/, each importing only later ones', async (t) => {
  const text = readFileSync(path.join(root, 'CONTRIBUTING.md'), 'utf8');
  const section = text.slice(text.indexOf('### The path of one request'), text.indexOf('## Rules of the house'));
  const steps = [...section.matchAll(/^\d+\. `(src\/[^`]+)`/gm)].map((m) => m[1]!);
  t.ok(steps.length > 0 && steps.length <= 6, `six files at most (${steps.length})`);
  t.ok(
    steps.every((s) => s.startsWith('src/oauth/')),
    'all in src/oauth/',
  );
  // Never going back: no file on the path imports (at run time) a file listed before it.
  for (const [i, file] of steps.entries()) {
    const src = readFileSync(path.join(root, file), 'utf8');
    const runtimeImports = [...src.matchAll(/^import (?!type )[^;]*? from '(\.[^']+)'/gm)].map((m) =>
      path.join(path.dirname(file), m[1]!.replace(/\.js$/, '.ts')),
    );
    const back = runtimeImports.filter((p) => steps.slice(0, i).includes(p));
    t.same(back, [], `${file} imports no earlier file on the path`);
  }
});
