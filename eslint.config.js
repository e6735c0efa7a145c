import js from '@eslint/js';
import { defineConfig, globalIgnores } from 'eslint/config';
import globals from 'globals';
import tseslint from 'typescript-eslint';

const sourceFolders = ['cli', 'common', 'cloud', 'gateway', 'sensors', 'scripts', 'test', 'bench'];
const tsFiles = sourceFolders.map((folder) => `${folder}/**/*.ts`);

const onlyMessage = 'Focused tests (.only) skip the rest of the suite; remove before committing.';

export default defineConfig([
  globalIgnores(['dist/', 'node_modules/', 'coverage/', '.tap/', '.fieldlink/']),
  {
    files: ['**/*.js', '**/*.mjs', '**/*.cjs'],
    extends: [js.configs.recommended],
    languageOptions: { globals: globals.node },
  },
  {
    files: ['**/*.cjs'],
    languageOptions: { sourceType: 'commonjs' },
  },
  {
    files: tsFiles,
    extends: [js.configs.recommended, tseslint.configs.recommended],
    languageOptions: { globals: globals.node },
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_' },
      ],
      // Runtime code logs through the injected pino logger (structured, redacted).
      'no-console': 'warn',
      'no-restricted-syntax': [
        'error',
        // t.only(…), test.only(…), describe.only(…), it.only(…), tt.only(…): any call to `.only`.
        { selector: "CallExpression > MemberExpression.callee[property.name='only']", message: onlyMessage },
        // t.test('x', { only: true }, fn)
        { selector: "CallExpression > ObjectExpression > Property[key.name='only'][value.value=true]", message: onlyMessage },
      ],
    },
  },
  {
    // Command-line entry points, field tools and benchmarks talk to a terminal.
    files: ['cli/**/*.ts', 'scripts/**/*.ts', 'bench/**/*.ts', 'test/**/*.ts'],
    rules: { 'no-console': 'off' },
  },
]);
