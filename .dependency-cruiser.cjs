/**
 * The dependency rule of design.md §3, checked in CI by `npm run depcheck`.
 * Paths are relative to the directory depcruise runs in (the project root).
 * test/lint/dependency-rule.test.ts proves each rule reports a violation.
 * @type {import('dependency-cruiser').IConfiguration}
 */
module.exports = {
  forbidden: [
    {
      name: 'sensors-not-to-gateway-or-cloud',
      comment: 'sensors/ is reusable on its own: it imports nothing from gateway/ or cloud/.',
      severity: 'error',
      from: { path: '^sensors/' },
      to: { path: '^(gateway|cloud)/' },
    },
    {
      name: 'cloud-only-to-gateway-contract',
      comment: 'cloud/ shares only the wire contract with the gateway (gateway/src/contract/).',
      severity: 'error',
      from: { path: '^cloud/' },
      to: { path: '^gateway/', pathNot: '^gateway/src/contract/' },
    },
    {
      name: 'domain-is-pure',
      comment: 'gateway/src/domain/ imports only domain/ and common/: no ports, adapters, SDKs or node: modules.',
      severity: 'error',
      from: { path: '^gateway/src/domain/' },
      to: { pathNot: '^(gateway/src/domain|common)/' },
    },
    {
      name: 'ports-not-to-outer-layers',
      comment: 'Ports are interfaces; they may not depend on use cases, adapters or the composition root.',
      severity: 'error',
      from: { path: '^gateway/src/ports/' },
      to: { path: '^gateway/src/(app/|adapters/|main\\.ts$)' },
    },
    {
      name: 'app-not-to-adapters-or-main',
      comment: 'Use cases see adapters only through ports; main.ts wires them.',
      severity: 'error',
      from: { path: '^gateway/src/app/' },
      to: { path: '^gateway/src/(adapters/|main\\.ts$)' },
    },
    {
      name: 'only-tests-import-scripts',
      comment: 'scripts/ are field tools, never imported by runtime code (design §3); the fieldlink command (cli/) dispatches to them and test/ may import them.',
      severity: 'error',
      from: { pathNot: '^(scripts|test|cli)/' },
      to: { path: '^scripts/' },
    },
    {
      name: 'common-imports-no-package',
      comment: 'common/ is shared by every package, so it depends on none of them.',
      severity: 'error',
      from: { path: '^common/' },
      to: { path: '^(cli|cloud|gateway|sensors|scripts)/' },
    },
    {
      name: 'runtime-not-to-test-or-bench',
      comment: 'Shipped code never depends on tests or benchmarks.',
      severity: 'error',
      from: { path: '^(cli|common|cloud|gateway|sensors|scripts)/' },
      to: { path: '^(test|bench)/' },
    },
    {
      name: 'runtime-not-to-dev-dependencies',
      comment: 'A production install omits devDependencies; type-only imports vanish when compiled.',
      severity: 'error',
      from: { path: '^(cli|common|cloud|gateway|sensors|scripts)/' },
      to: { dependencyTypes: ['npm-dev'], dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'no-circular',
      comment: 'Cycles make load order fragile and layers meaningless.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'not-to-unresolvable',
      comment: 'An import that does not resolve fails at runtime (or is a missing .js suffix).',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
    {
      name: 'no-undeclared-packages',
      comment: 'Every imported package must be listed in package.json, not just present in node_modules.',
      severity: 'error',
      from: {},
      to: { dependencyTypes: ['npm-no-pkg', 'npm-unknown'] },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // Cruising `.` rather than a folder list keeps working when a folder (bench/, scripts/) is
    // empty or not yet created; these are the things under `.` that are not our source.
    // (node_modules is not excluded: that would drop package imports from the graph; it is
    // only not followed.)
    exclude: { path: '^(dist|coverage|\\.tap|\\.fieldlink|\\.git)/' },
    // Type-only imports count: a type from gateway/ inside sensors/ couples them just the same.
    tsPreCompilationDeps: true,
    // Resolves `./x.js` to `./x.ts` as tsc does under NodeNext.
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      mainFields: ['module', 'main', 'types', 'typings'],
    },
    moduleSystems: ['es6', 'cjs'],
    reporterOptions: {
      text: { highlightFocused: true },
    },
  },
};
