/**
 * Gateway RSS with 1,000,000 readings buffered, steady state (issue 4: target <= 100 MB; the
 * libraries alone are ~78 MB).
 *
 * In one run, three child processes on the same machine, each sampled from /proc/<pid>/status
 * (VmRSS) every 250 ms for `--seconds` after a settle time:
 *   1. libraries: a node process that imports what the gateway imports and idles (the floor);
 *   2. empty: the real `fieldlink gateway` in standby with two emulated thermostats, empty outbox;
 *   3. full: the same gateway, its outbox pre-filled with `--readings` readings (seeded set).
 * Reported: median and max RSS of each, and the full gateway's ratio to the libraries floor.
 *
 *   npm run build && node dist/bench/gateway-rss/run.js [--readings 1000000] [--seconds 20]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { SqliteOutbox } from '../../gateway/src/adapters/sqlite-outbox.js';
import { ThermostatEmulator } from '../../sensors/serial-thermostat/emulator.js';
import { readingSet } from '../outbox/readings.js';

const { values: args } = parseArgs({
  options: {
    readings: { type: 'string', default: '1000000' },
    seconds: { type: 'string', default: '20' },
    settle: { type: 'string', default: '5' },
  },
});
const READINGS = Number(args.readings);
const SECONDS = Number(args.seconds);
const SETTLE_S = Number(args.settle);
const CLI = fileURLToPath(new URL('../../cli/fieldlink.js', import.meta.url));
const LIBRARIES = fileURLToPath(new URL('./libraries.js', import.meta.url));

const children = new Set<ChildProcess>();
const emulators: ThermostatEmulator[] = [];
const dir = mkdtempSync(join(tmpdir(), 'fieldlink-bench-rss-'));

async function cleanup(): Promise<void> {
  for (const c of children) c.kill('SIGKILL');
  for (const e of emulators) await e.stop().catch(() => undefined);
  rmSync(dir, { recursive: true, force: true });
}
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    void cleanup().then(() => process.exit(130));
  });
}

function rssKb(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m?.[1] === undefined ? undefined : Number(m[1]);
  } catch {
    return undefined;
  }
}

interface RssFigures {
  readonly medianMb: number;
  readonly maxMb: number;
  readonly samples: number;
}

async function measure(child: ChildProcess, what: string): Promise<RssFigures> {
  children.add(child);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let died = false;
  void exited.then(() => (died = true));
  await new Promise((r) => setTimeout(r, SETTLE_S * 1000));
  const kb: number[] = [];
  const until = Date.now() + SECONDS * 1000;
  while (Date.now() < until && !died) {
    const v = child.pid === undefined ? undefined : rssKb(child.pid);
    if (v !== undefined) kb.push(v);
    await new Promise((r) => setTimeout(r, 250));
  }
  if (died || kb.length === 0) throw new Error(`${what}: the process exited during the measurement`);
  child.kill('SIGTERM');
  await exited;
  children.delete(child);
  kb.sort((a, b) => a - b);
  return { medianMb: (kb[Math.floor(kb.length / 2)] ?? 0) / 1024, maxMb: (kb.at(-1) ?? 0) / 1024, samples: kb.length };
}

function gatewayConfig(name: string, sources: unknown[]): string {
  const dataDir = join(dir, name);
  mkdirSync(dataDir, { recursive: true });
  const path = join(dir, `${name}.json`);
  writeFileSync(
    path,
    JSON.stringify({
      gatewayId: 'bench-rss',
      // Never used: the gateway stays in standby (check-in in an hour, watermark at the bound).
      connectionString: 'HostName=127.0.0.1;DeviceId=bench-rss;SharedAccessKey=YmVuY2hiZW5jaGJlbmNoYmVuY2g=',
      clockTrust: { source: 'assume' },
      dataDir,
      sources,
      settings: {
        sampling: { serial: { sampleIntervalS: 1, reportIntervalS: 1 } },
        checkInIntervalS: 3600,
        outbox: { maxBytes: 1024 ** 3, highWatermarkBytes: 1024 ** 3, minFreeBytes: 0 },
      },
    }),
  );
  return path;
}

async function prefill(name: string, n: number): Promise<number> {
  const set = readingSet();
  const outbox = await SqliteOutbox.open({ path: join(dir, name, 'outbox.sqlite'), maxBytes: 1024 ** 3, minFreeBytes: 0, workerExecArgv: [] });
  const now = Date.now();
  for (let i = 0; i < n; i += 10_000) {
    const group = [];
    for (let j = i; j < Math.min(n, i + 10_000); j++) {
      const s = set[j % set.length]!;
      group.push({ ...s, source: `${s.source}#${Math.floor(j / set.length) % 4}`, ts: now - (n - j) * 100 });
    }
    await outbox.append(group);
  }
  const bytes = (await outbox.stats()).bytes;
  await outbox.close();
  return bytes;
}

function startGateway(configPath: string): ChildProcess {
  return spawn(process.execPath, [CLI, 'gateway', '--config', configPath, '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'inherit'] });
}

async function main(): Promise<void> {
  console.log(`gateway RSS: ${READINGS.toLocaleString('en')} readings buffered; settle ${SETTLE_S} s, sample ${SECONDS} s every 250 ms; node ${process.version}`);
  const sources = [];
  for (let i = 1; i <= 2; i++) {
    const emu = await ThermostatEmulator.start({ link: join(dir, `thermo-${i}`), rateHz: 1, seed: i, deviceId: `thermo-${i}` });
    emulators.push(emu);
    sources.push({ id: `thermo-${i}`, family: 'serial', path: emu.link, baudRate: 9600 });
  }
  const emptyConfig = gatewayConfig('empty', sources);
  const fullConfig = gatewayConfig('full', sources);
  const t0 = Date.now();
  const storedBytes = await prefill('full', READINGS);
  console.log(`  prefilled ${READINGS.toLocaleString('en')} readings (${(storedBytes / 1024 ** 2).toFixed(1)} MB stored) in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

  const libraries = await measure(spawn(process.execPath, [LIBRARIES], { stdio: 'inherit' }), 'libraries');
  const empty = await measure(startGateway(emptyConfig), 'gateway, empty outbox');
  const full = await measure(startGateway(fullConfig), 'gateway, full outbox');

  const row = (name: string, f: RssFigures): string => `  ${name.padEnd(34)} median ${f.medianMb.toFixed(1).padStart(6)} MB   max ${f.maxMb.toFixed(1).padStart(6)} MB   (${f.samples} samples)`;
  console.log(row('libraries only (floor)', libraries));
  console.log(row('gateway, empty outbox', empty));
  console.log(row(`gateway, ${READINGS.toLocaleString('en')} buffered`, full));
  console.log(`  full / libraries: ${(full.medianMb / libraries.medianMb).toFixed(2)}; full - empty: ${(full.medianMb - empty.medianMb).toFixed(1)} MB`);
  console.log(`  target <= 100 MB: ${full.maxMb <= 100 ? 'met' : 'NOT met'} (max ${full.maxMb.toFixed(1)} MB)`);
}

main()
  .then(cleanup)
  .catch(async (e: unknown) => {
    console.error(e);
    await cleanup();
    process.exitCode = 1;
  });
