import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

// Compiled to dist/test/lint/, three levels below the project root.
const root = fileURLToPath(new URL('../../../', import.meta.url));
const depcruise = join(root, 'node_modules/dependency-cruiser/bin/dependency-cruise.mjs');
const config = join(root, '.dependency-cruiser.cjs');

/**
 * A miniature project in which each file breaks one rule (and some imports are allowed ones,
 * to catch rules that fire too widely). Written to a temp dir so the project's own depcheck
 * and tsc never see it.
 */
const fixture: Record<string, string> = {
  'tsconfig.json': JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext' } }),
  'sensors/ble/driver.ts': "import { power } from '../../gateway/src/domain/power.js';\nexport const d = power;\n",
  'sensors/codec/heart-rate.ts': "import { FieldlinkError } from '../../common/errors.js';\nexport const h = FieldlinkError;\n",
  'cloud/src/app.ts':
    "import { wake } from '../../gateway/src/app/wake.js';\nimport { twin } from '../../gateway/src/contract/twin.js';\nexport const a = [wake, twin];\n",
  'gateway/src/domain/power.ts':
    "import { readFileSync } from 'node:fs';\nimport { FieldlinkError } from '../../../common/errors.js';\nexport const power = [readFileSync, FieldlinkError];\n",
  'gateway/src/ports/outbox.ts': "import type { Wake } from '../app/wake.js';\nexport type Outbox = Wake;\n",
  'gateway/src/app/wake.ts':
    "import { outbox } from '../adapters/sqlite-outbox.js';\nimport { power } from '../domain/power.js';\nexport type Wake = string;\nexport const wake = [outbox, power];\n",
  'gateway/src/adapters/sqlite-outbox.ts': "import { doctor } from '../../../scripts/doctor.js';\nexport const outbox = doctor;\n",
  'gateway/src/contract/twin.ts': "import { helper } from '../../../test/helpers/helper.js';\nexport const twin = helper;\n",
  'gateway/src/main.ts': "import { nothing } from './nowhere.js';\nexport const main = nothing;\n",
  'common/errors.ts': "import { twin } from '../gateway/src/contract/twin.js';\nexport const FieldlinkError = twin;\n",
  'common/a.ts': "import { b } from './b.js';\nexport const a = () => b;\n",
  'common/b.ts': "import { a } from './a.js';\nexport const b = () => a;\n",
  'scripts/doctor.ts': 'export const doctor = 1;\n',
  'test/helpers/helper.ts':
    "import { doctor } from '../../scripts/doctor.js';\nimport devpkg from 'devpkg';\nexport const helper = [doctor, devpkg];\n",
  // Packages: one dev dependency, one installed but never declared.
  'package.json': JSON.stringify({ name: 'fixture', type: 'module', devDependencies: { devpkg: '1.0.0' } }),
  'node_modules/devpkg/package.json': JSON.stringify({ name: 'devpkg', version: '1.0.0', main: 'index.js' }),
  'node_modules/devpkg/index.js': 'module.exports = 1;\n',
  'node_modules/ghostpkg/package.json': JSON.stringify({ name: 'ghostpkg', version: '1.0.0', main: 'index.js' }),
  'node_modules/ghostpkg/index.js': 'module.exports = 1;\n',
  'gateway/src/adapters/amqp-uplink.ts': "import devpkg from 'devpkg';\nexport const uplink = devpkg;\n",
  'cloud/src/server.ts': "import ghost from 'ghostpkg';\nexport const server = ghost;\n",
};

// `rule: from` as the `err` reporter prints them; a cycle is reported once, from either end.
const expected = [
  'sensors-not-to-gateway-or-cloud: sensors/ble/driver.ts',
  'cloud-only-to-gateway-contract: cloud/src/app.ts',
  'domain-is-pure: gateway/src/domain/power.ts',
  'ports-not-to-outer-layers: gateway/src/ports/outbox.ts',
  'app-not-to-adapters-or-main: gateway/src/app/wake.ts',
  'only-tests-import-scripts: gateway/src/adapters/sqlite-outbox.ts',
  'common-imports-no-package: common/errors.ts',
  'runtime-not-to-test-or-bench: gateway/src/contract/twin.ts',
  'no-circular: common/a.ts',
  'not-to-unresolvable: gateway/src/main.ts',
  'runtime-not-to-dev-dependencies: gateway/src/adapters/amqp-uplink.ts',
  'no-undeclared-packages: cloud/src/server.ts',
];

/** Runs depcruise exactly as `npm run depcheck` does: default `err` reporter, exit code = errors. */
function run(cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const env = { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' };
    execFile(process.execPath, [depcruise, '--config', config, '.'], { cwd, env }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, stdout, stderr });
    });
  });
}

t.test('every dependency rule reports its violation, and only those', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-deprule-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const [path, content] of Object.entries(fixture)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), content);
  }
  const { code, stdout, stderr } = await run(dir);
  t.equal(code, expected.length, 'exit code counts the errors, so CI fails');
  const found = [...stdout.matchAll(/^\s+error ([\w-]+): (\S+) →/gm)].map(([, rule, from]) =>
    rule === 'no-circular' && from === 'common/b.ts' ? 'no-circular: common/a.ts' : `${rule}: ${from}`,
  );
  t.same(found.sort(), [...expected].sort(), `depcruise output:\n${stdout}${stderr}`);
});

t.test('a clean tree passes', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-deprule-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // Only the allowed imports: tests use scripts and dev packages, sensors use common.
  const allowed = [
    'tsconfig.json',
    'package.json',
    'node_modules/devpkg/package.json',
    'node_modules/devpkg/index.js',
    'scripts/doctor.ts',
    'test/helpers/helper.ts',
    'sensors/codec/heart-rate.ts',
  ];
  for (const path of allowed) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), fixture[path] ?? '');
  }
  mkdirSync(join(dir, 'common'), { recursive: true });
  writeFileSync(join(dir, 'common/errors.ts'), 'export const FieldlinkError = 1;\n');
  const { code, stdout, stderr } = await run(dir);
  t.equal(code, 0, `depcruise output:\n${stdout}${stderr}`);
});
