import { fileURLToPath } from 'node:url';
import { ESLint } from 'eslint';
import t from 'tap';

// Compiled to dist/test/lint/, three levels below the project root where eslint.config.js is.
const root = fileURLToPath(new URL('../../../', import.meta.url));
const eslint = new ESLint({ cwd: root });

async function ruleHits(code: string, filePath = 'test/x.test.ts'): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath });
  return (result?.messages ?? []).map((m) => `${m.ruleId ?? 'fatal'}: ${m.message}`);
}

const onlyHit = 'no-restricted-syntax: Focused tests (.only) skip the rest of the suite; remove before committing.';

t.test('focused tests are rejected', async (t) => {
  for (const code of [
    "import t from 'tap'; t.only('x', () => {});",
    "import t from 'tap'; t.test('outer', (tt) => { tt.only('inner', () => {}); });",
    "import { test } from 'node:test'; test.only('x', () => {});",
    "import t from 'tap'; t.test('x', { only: true }, () => {});",
  ]) {
    t.same(await ruleHits(code), [onlyHit], code);
  }
});

t.test('ordinary tests and any pass lint; explicit any does not', async (t) => {
  t.same(await ruleHits("import t from 'tap'; t.test('x', { only: false }, () => {});"), []);
  t.same(await ruleHits('export const x: number = 1;\n', 'common/x.ts'), []);
  t.same(await ruleHits('export const x: any = 1;\n', 'common/x.ts'), [
    '@typescript-eslint/no-explicit-any: Unexpected any. Specify a different type.',
  ]);
});
