import t from 'tap';
import { fileURLToPath } from 'node:url';
import { lint, loadConfig } from '@redocly/openapi-core';

const root = (p: string) => fileURLToPath(new URL(`../${p}`, import.meta.url));

t.test('openapi.yaml passes Redocly lint (recommended ruleset, redocly.yaml)', async (t) => {
  const config = await loadConfig({ configPath: root('redocly.yaml') });
  const problems = await lint({ ref: root('openapi.yaml'), config });
  const lines = problems.map((p) => `${p.severity} ${p.ruleId}: ${p.message} at ${p.location[0]?.pointer ?? '?'}`);
  t.same(
    lines.filter((l) => l.startsWith('error')),
    [],
    'no lint errors',
  );
  t.same(
    lines.filter((l) => !l.startsWith('error')),
    [],
    'no lint warnings',
  );
});
