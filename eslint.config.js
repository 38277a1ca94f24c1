// House lint. TypeScript files get the recommended rules plus the type-aware promise rules; JavaScript files
// (bench, examples, scripts, bin) get the recommended rules without type information.
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/', 'bench/results/', '.tap/', '.tessera/'] },
  js.configs.recommended,
  {
    languageOptions: { ecmaVersion: 2023, sourceType: 'module', globals: globals.node },
    rules: {
      'no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
    },
  },
  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.recommended],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // tap queues subtests started with t.test() and reports their failures itself; their promises need no await.
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          allowForKnownSafeCalls: [
            { from: 'package', name: 'test', package: '@tapjs/test' },
            { from: 'package', name: 'test', package: 'tap' },
          ],
        },
      ],
      '@typescript-eslint/no-misused-promises': 'error',
      // ClientCache.get answers from memory without a promise; Promise.all over such mixed values is intended.
      '@typescript-eslint/await-thenable': ['error', { allowMixedPromiseArrays: true }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
    },
  },
  {
    files: ['migrations/**/*.ts'],
    rules: {
      // Migrations are frozen in time and take Kysely<any> by design: they never import the app's table types.
      '@typescript-eslint/no-explicit-any': 'off',
    },
  },
);
