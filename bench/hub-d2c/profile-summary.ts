/*
 * Where a V8 CPU profile (.cpuprofile, as written by run.ts --profile) spends its time: the
 * functions with the most self time, and inclusive time for the hub's own functions, so the cost
 * of one D2C message can be split into AMQP decoding, SQLite, JSON and the rest.
 *
 *   node dist/bench/hub-d2c/profile-summary.js FILE.cpuprofile [--top N] [--callers run,writeBuffer]
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Where a function lives, short enough to read: package name, or our dist path. */
function place(url: string): string {
  if (!url) return '(native)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)\/(.*)$/.exec(url);
  if (pkg) return `${pkg[1]}/${pkg[2]}`;
  const own = /\/dist\/(.*)$/.exec(url);
  if (own) return own[1] ?? url;
  return url.replace(/^node:/, 'node:');
}

function key(frame: CallFrame): string {
  return `${frame.functionName || '(anonymous)'}  ${place(frame.url)}${frame.url ? `:${frame.lineNumber + 1}` : ''}`;
}

interface Totals {
  totalMs: number;
  self: Map<string, number>;
  inclusive: Map<string, number>;
  /** Self time of functions named in --callers, by their caller: "run" from a commit vs an insert. */
  byCaller: Map<string, number>;
}

function analyse(profile: CpuProfile, callersOf: ReadonlySet<string>): Totals {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const byCaller = new Map<string, number>();
  let totalMs = 0;
  profile.samples.forEach((id, i) => {
    const ms = (profile.timeDeltas[i] ?? 0) / 1000;
    totalMs += ms;
    const leaf = byId.get(id);
    if (!leaf) return;
    self.set(key(leaf.callFrame), (self.get(key(leaf.callFrame)) ?? 0) + ms);
    if (callersOf.has(leaf.callFrame.functionName)) {
      const caller = byId.get(parent.get(leaf.id) ?? -1);
      const k = `${key(leaf.callFrame)}  <-  ${caller ? key(caller.callFrame) : '(root)'}`;
      byCaller.set(k, (byCaller.get(k) ?? 0) + ms);
    }
    // A recursive function must count once per sample, hence the set.
    const seen = new Set<string>();
    for (let node: ProfileNode | undefined = leaf; node; node = byId.get(parent.get(node.id) ?? -1)) {
      const k = key(node.callFrame);
      if (seen.has(k)) continue;
      seen.add(k);
      inclusive.set(k, (inclusive.get(k) ?? 0) + ms);
    }
  });
  return { totalMs, self, inclusive, byCaller };
}

function top(map: Map<string, number>, n: number, filter: (k: string) => boolean, totalMs: number): string[] {
  return [...map]
    .filter(([k]) => filter(k))
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([k, ms]) => `${ms.toFixed(0).padStart(7)} ms ${((ms / totalMs) * 100).toFixed(1).padStart(5)}%  ${k}`);
}

function main(): void {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { top: { type: 'string', default: '25' }, callers: { type: 'string', default: 'run,writeBuffer,Statement,get' } },
  });
  const n = Number(values.top);
  const callersOf = new Set(values.callers.split(',').map((c) => c.trim()));
  for (const file of positionals) {
    const t = analyse(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile, callersOf);
    const busy = t.totalMs - (t.self.get('(idle)  (native)') ?? 0);
    console.log(`${file}: ${t.totalMs.toFixed(0)} ms sampled, ${busy.toFixed(0)} ms not idle\n`);
    console.log('self time (top functions):');
    console.log(top(t.self, n, () => true, t.totalMs).join('\n'));
    console.log('\ninclusive time, hub code (cloud/, common/):');
    console.log(top(t.inclusive, n, (k) => /\s(cloud|common)\//.test(k), t.totalMs).join('\n'));
    console.log('\ninclusive time, libraries:');
    console.log(top(t.inclusive, n, (k) => /\s(rhea|better-sqlite3|pino)\//.test(k) || /^(stringify|parse|prepare|run|get|all|transaction)\s/.test(k), t.totalMs).join('\n'));
    console.log(`\nself time of ${[...callersOf].join(', ')} by caller:`);
    console.log(top(t.byCaller, n, () => true, t.totalMs).join('\n'));
    console.log('');
  }
}

main();
