// The layout of src/ as a checked rule: one folder per feature plus platform/, read from the import
// specifiers of every source file. Files directly under src/ (app.ts, server.ts, cli.ts) compose the
// folders and may import any of them.
import t from 'tap';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const src = path.join(root, 'src');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) return sourceFiles(p);
    return p.endsWith('.ts') ? [p] : [];
  });
}

// `import ... from '.'`, `export ... from '.'`, `import '.'` and `import('.')` with a literal specifier.
const SPECIFIER = /(?:\bfrom\s*|\bimport\s*\(?\s*)(['"])([^'"]+)\1/g;

interface Edge {
  from: string; // path under src/, e.g. oauth/token.routes.ts
  to: string; // the imported file under src/ (.ts), or the specifier when it leaves src/
  spec: string;
}

function edges(): Edge[] {
  const out: Edge[] = [];
  for (const file of sourceFiles(src)) {
    const from = path.relative(src, file);
    for (const m of readFileSync(file, 'utf8').matchAll(SPECIFIER)) {
      const spec = m[2]!;
      if (!spec.startsWith('.')) continue;
      const target = path.relative(src, path.resolve(path.dirname(file), spec)).replace(/\.js$/, '.ts');
      out.push({ from: from.split(path.sep).join('/'), to: target.split(path.sep).join('/'), spec });
    }
  }
  return out;
}

/** The top-level folder under src/ a path belongs to; null for files directly under src/ and paths outside it. */
function folder(p: string): string | null {
  if (p.startsWith('..')) return null;
  const parts = p.split('/');
  return parts.length > 1 ? parts[0]! : null;
}

const isTable = (p: string) => p.endsWith('.table.ts');

const pairKey = (a: string, b: string) => [a, b].sort().join(' <-> ');

t.test('the import graph is read from every source file', async (t) => {
  const all = edges();
  t.ok(all.length > 100, `found ${all.length} relative imports`);
  t.ok(
    all.some((e) => e.from === 'app.ts' && e.to === 'platform/config.ts'),
    'app.ts -> platform/config.ts is among them',
  );
});

t.test('no two top-level folders under src/ import each other', async (t) => {
  const pairs = new Map<string, string[]>();
  for (const e of edges()) {
    const a = folder(e.from);
    const b = folder(e.to);
    if (!a || !b || a === b) continue;
    // platform/ composes the Database type from the feature tables (checked below); that direction is allowed.
    if (a === 'platform' && isTable(e.to)) continue;
    const k = `${a} -> ${b}`;
    pairs.set(k, [...(pairs.get(k) ?? []), `${e.from} imports ${e.spec}`]);
  }
  const mutual = new Map<string, string[]>();
  for (const [k, why] of pairs) {
    const [a, b] = k.split(' -> ') as [string, string];
    const back = pairs.get(`${b} -> ${a}`);
    if (back && a < b) mutual.set(pairKey(a, b), [...why, ...back]);
  }
  // A dependent credential follows its parent through the cascade registry (platform/cascades.ts),
  // so even credential cascades need no import against the dependency direction.
  t.same([...mutual], [], 'folders importing each other');
});

t.test('src/client/ imports nothing outside itself', async (t) => {
  const leaving = edges().filter((e) => folder(e.from) === 'client' && folder(e.to) !== 'client');
  t.same(
    leaving.map((e) => `${e.from} imports ${e.spec}`),
    [],
    'client imports leaving src/client/',
  );
});

t.test('platform/ imports no feature folder except its *.table.ts files', async (t) => {
  const leaving = edges().filter((e) => {
    if (folder(e.from) !== 'platform') return false;
    const b = folder(e.to);
    return b !== 'platform' && !(b !== null && isTable(e.to));
  });
  t.same(
    leaving.map((e) => `${e.from} imports ${e.spec}`),
    [],
    'platform imports of feature code',
  );
});
