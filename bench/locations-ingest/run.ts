/*
 * Connection-log ingest (issue 9): records/s of the full ingest of a fleet's Connections log
 * (streaming parse, checks, de-duplication, SQLite aggregates, geolocation of changed addresses,
 * twin-tag writes) and its peak memory, against the geolocation lookups alone (one locate() per
 * record), measured in the same run. Target: ingest records/s >= 0.5 x lookups/s.
 *
 * Two more baselines in the same run put that ratio in context: the parse floor (the streamed
 * scan and both JSON.parse of every record, the least any ingest of this format must do) and
 * uncached lookups (one database lookup per record, no cache of any kind).
 *
 * The history is generated once into a temp file (`{"records":[...]}`, not timed; ~600 MB for
 * the default 1,000,000 records) with the record addresses and device ids beside it; then
 * rounds of the four kinds interleave (the order rotates each round), each in a fresh child
 * process (round.ts).
 *
 *   npm run bench:locations-ingest                          # build, then the default run (1M records)
 *   node dist/bench/locations-ingest/run.js --devices 1650  # ~100,000 records
 *   node dist/bench/locations-ingest/run.js --profile /tmp/locprof --rounds 1
 *   node dist/bench/hub-d2c/profile-summary.js /tmp/locprof/ingest-r1.cpuprofile
 *   node dist/bench/locations-ingest/run.js --help
 */
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream, mkdirSync, mkdtempSync, rmSync, statfsSync, statSync, writeFileSync, type WriteStream } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { generateFleetHistory, planFleet, type FleetHistoryOptions } from '../../cloud/src/locations/fleet-history.js';
import { openIpGeolocator } from '../../cloud/src/locations/ip-geolocation.js';
import { positiveInt } from '../args.js';
import { cleanupOnExit } from '../cleanup.js';
import { fmt, median } from '../stats.js';
import { ROUND_KINDS, type RoundFailed, type RoundJob, type RoundKind, type RoundResult } from './protocol.js';

const USAGE = `usage: node dist/bench/locations-ingest/run.js [options]
  --devices N      gateways in the emulated fleet (default 16500: ~1,000,000 records over 18 months)
  --months M       months of history (default 18)
  --rounds R       rounds of lookups, uncached lookups, parse floor and ingest, interleaved (the order rotates),
                   each run in a fresh child process; medians printed (default 3)
  --sample-ms MS   RSS sampling period during an ingest round (default 50)
  --profile DIR    write a V8 CPU profile of each ingest round's timed part to DIR (summarise with
                   dist/bench/hub-d2c/profile-summary.js); profiling slows it: take numbers from an unprofiled run
  --keep           keep the generated history file (its path is printed)`;

const TARGET_RATIO = 0.5;
const ROUND_JS = fileURLToPath(new URL('./round.js', import.meta.url));
/** A generous upper bound of the disk one run needs per record: the history (~600 B), the addresses, one store. */
const DISK_BYTES_PER_RECORD = 1_200;

interface Config {
  devices: number;
  months: number;
  rounds: number;
  sampleMs: number;
  profile: string | undefined;
  keep: boolean;
}

function parseConfig(argv: string[]): Config | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      devices: { type: 'string' },
      months: { type: 'string' },
      rounds: { type: 'string' },
      'sample-ms': { type: 'string' },
      profile: { type: 'string' },
      keep: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) return undefined;
  return {
    devices: positiveInt('devices', values.devices, 16_500),
    months: positiveInt('months', values.months, 18),
    rounds: positiveInt('rounds', values.rounds, 3),
    sampleMs: positiveInt('sample-ms', values['sample-ms'], 50),
    profile: values.profile === undefined ? undefined : resolve(values.profile),
    keep: values.keep,
  };
}

const progress = (line: string): void => void process.stderr.write(`${line}\n`);
const mb = (bytes: number): string => fmt(bytes / 1024 / 1024, 0);

async function write(out: WriteStream, text: string): Promise<void> {
  if (!out.write(text)) await once(out, 'drain');
}

async function close(out: WriteStream): Promise<void> {
  out.end();
  await once(out, 'finish');
}

interface History {
  file: string;
  addressesFile: string;
  devicesFile: string;
  records: number;
  devices: number;
  bytes: number;
  seconds: number;
}

/**
 * The fleet's log as Azure Monitor exports it (written as generated, never whole in memory),
 * every record's masked address one a line (the lookups' input), and the device ids (the
 * stand-in hub's registry). As `fieldlink emulate fleet` writes it.
 */
async function generate(cfg: Config, dir: string): Promise<History> {
  const t0 = performance.now();
  const geolocator = await openIpGeolocator();
  const options: FleetHistoryOptions = { devices: cfg.devices, months: cfg.months, now: Date.now(), geolocator };
  const plan = planFleet(options);
  const devicesFile = join(dir, 'devices.txt');
  writeFileSync(devicesFile, plan.devices.map((d) => `${d.deviceId}\n`).join(''));
  const file = join(dir, 'history.json');
  const addressesFile = join(dir, 'addresses.txt');
  const out = createWriteStream(file);
  const addr = createWriteStream(addressesFile);
  let records = 0;
  let chunk = '{"records":[';
  let ips = '';
  for (const record of generateFleetHistory(options, plan)) {
    chunk += `${records++ === 0 ? '\n' : ',\n'}${JSON.stringify(record)}`;
    ips += `${(JSON.parse(record.properties) as { maskedIpAddress: string }).maskedIpAddress}\n`;
    if (chunk.length >= 65_536) {
      await write(out, chunk);
      chunk = '';
    }
    if (ips.length >= 65_536) {
      await write(addr, ips);
      ips = '';
    }
    if (records % 200_000 === 0) progress(`  ${fmt(records)} records…`);
  }
  await write(out, `${chunk}\n]}\n`);
  await write(addr, ips);
  await Promise.all([close(out), close(addr)]);
  return { file, addressesFile, devicesFile, records, devices: plan.devices.length, bytes: statSync(file).size, seconds: (performance.now() - t0) / 1000 };
}

const children = new Set<ChildProcess>();

/** One round in a fresh process (--expose-gc: it collects before taking its starting RSS). */
async function round(job: RoundJob): Promise<RoundResult> {
  const child = fork(ROUND_JS, [JSON.stringify(job)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: ['--expose-gc'] });
  children.add(child);
  try {
    let answer: RoundResult | RoundFailed | undefined;
    child.on('message', (m) => (answer = m as RoundResult | RoundFailed));
    const [code] = (await once(child, 'exit')) as [number | null];
    const got = answer as RoundResult | RoundFailed | undefined;
    if (got?.type === 'failed') throw new Error(`${job.kind} round failed: ${got.message}`);
    if (got === undefined) throw new Error(`${job.kind} round exited with code ${code} without a result`);
    return got;
  } finally {
    children.delete(child);
  }
}

function describe(label: string, r: RoundResult): string {
  const rate = `${fmt(r.items / r.seconds).padStart(10)} /s  ${fmt(r.seconds, 2).padStart(7)} s`;
  if (r.kind === 'lookups') return `  ${label.padEnd(12)} ${rate}  (${fmt(r.items)} locate(), ${fmt(r.located)} located; RSS before ${mb(r.rssBefore)} MB, max ${mb(r.maxRss)} MB)`;
  if (r.kind === 'uncached') return `  ${label.padEnd(12)} ${rate}  (${fmt(r.items)} database lookups, ${fmt(r.located)} found; RSS before ${mb(r.rssBefore)} MB, max ${mb(r.maxRss)} MB)`;
  if (r.kind === 'parse') return `  ${label.padEnd(12)} ${rate}  (${fmt(r.items)} records parsed, ${fmt(r.located)} with an address; RSS before ${mb(r.rssBefore)} MB, peak ${mb(r.rssPeakSampled)} MB sampled, max ${mb(r.maxRss)} MB)`;
  const i = r.ingest;
  return (
    `  ${label.padEnd(12)} ${rate}  (ingest ${fmt(r.ingestSeconds, 2)} s + tag flush ${fmt(r.flushSeconds, 2)} s; ${fmt(i?.eventsStored ?? 0)} events, ` +
    `${fmt(i?.devicesStored ?? 0)} devices, ${fmt(i?.tagsWritten ?? 0)} tags; RSS before ${mb(r.rssBefore)} MB, peak ${mb(r.rssPeakSampled)} MB sampled, max ${mb(r.maxRss)} MB)`
  );
}

const dirs = new Set<string>();
function cleanup(): void {
  for (const c of children) c.kill('SIGKILL');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs.clear();
}

async function main(): Promise<void> {
  const cfg = parseConfig(process.argv.slice(2));
  if (!cfg) {
    console.log(USAGE);
    return;
  }
  cleanupOnExit(cleanup);

  const work = mkdtempSync(join(tmpdir(), 'fieldlink-locations-ingest-'));
  if (!cfg.keep) dirs.add(work);
  // Upper bound: every device checking in for every month (they onboard over time, so fewer).
  const maxRecords = cfg.devices * cfg.months * 4 * 2;
  const fs = statfsSync(work);
  const free = fs.bavail * fs.bsize;
  if (free < maxRecords * DISK_BYTES_PER_RECORD) throw new Error(`${mb(free)} MB free in ${work}; up to ${mb(maxRecords * DISK_BYTES_PER_RECORD)} MB may be needed`);
  if (cfg.profile !== undefined) mkdirSync(cfg.profile, { recursive: true });

  progress(`generating ${fmt(cfg.devices)} devices × ${cfg.months} months into ${work} (not timed)`);
  const history = await generate(cfg, work);
  progress(`  ${fmt(history.records)} records, ${fmt(history.devices)} devices, ${mb(history.bytes)} MB in ${fmt(history.seconds, 1)} s`);

  const runs: Record<RoundKind, RoundResult[]> = { lookups: [], uncached: [], parse: [], ingest: [] };
  for (let r = 0; r < cfg.rounds; r++) {
    // Rotate the order so that no kind always runs first, or always right after another.
    const order = ROUND_KINDS.map((_, k) => ROUND_KINDS[(k + r) % ROUND_KINDS.length] as RoundKind);
    for (const kind of order) {
      const storeDir = join(work, `store-${kind}-r${r + 1}`);
      const job: RoundJob = {
        kind,
        input: kind === 'lookups' || kind === 'uncached' ? history.addressesFile : history.file,
        devicesFile: history.devicesFile,
        storeDir,
        sampleMs: cfg.sampleMs,
        ...(cfg.profile !== undefined && kind === 'ingest' ? { profileFile: join(cfg.profile, `ingest-r${r + 1}.cpuprofile`) } : {}),
      };
      const res = await round(job);
      rmSync(storeDir, { recursive: true, force: true });
      runs[kind].push(res);
      progress(describe(`${kind} r${r + 1}`, res));
      if (res.items !== history.records) throw new Error(`the ${kind} round did ${res.items} records, the file has ${history.records}`);
    }
  }

  const rate = (rs: RoundResult[]): number => median(rs.map((x) => x.items / x.seconds));
  const ingestRate = rate(runs.ingest);
  const lookupRate = rate(runs.lookups);
  const uncachedRate = rate(runs.uncached);
  const parseRate = rate(runs.parse);
  const ratio = ingestRate / lookupRate;
  const ratioUncached = ingestRate / uncachedRate;
  const ratioParse = ingestRate / parseRate;
  // The same ratios within each round (its four runs back to back), robust to the machine's load drifting between rounds.
  const perRound = (of: RoundKind): number[] => runs.ingest.map((x, r) => x.items / x.seconds / ((runs[of][r]?.items ?? NaN) / (runs[of][r]?.seconds ?? NaN)));
  const roundRatios = { lookups: perRound('lookups'), uncached: perRound('uncached'), parse: perRound('parse') };
  const ingestOnlyRate = median(runs.ingest.map((x) => x.items / x.ingestSeconds));
  const peakSampled = median(runs.ingest.map((x) => x.rssPeakSampled - x.rssBefore));
  const peakMax = median(runs.ingest.map((x) => x.maxRss - x.rssBefore));
  const peakAbs = median(runs.ingest.map((x) => x.maxRss));
  const before = median(runs.ingest.map((x) => x.rssBefore));
  const last = runs.ingest.at(-1);
  const i = last?.ingest;

  console.log(`\nlocations-ingest: connection-log ingest vs geolocation lookups alone, uncached lookups and the parse floor (${availableParallelism()} cores, node ${process.version})`);
  console.log('Machine note: 2 shared cores, noisy; each round runs alone in a fresh child process; look at the ratio, measured in the same run.');
  console.log(`${fmt(history.records)} records (${mb(history.bytes)} MB), ${fmt(history.devices)} devices, ${cfg.months} months; medians of ${cfg.rounds} interleaved rounds.\n`);
  const rows: [string, string][] = [
    ['ingest records/s (parse, store, aggregate, locate, tag flush)', fmt(ingestRate)],
    ['  ingest alone, without the tag flush', fmt(ingestOnlyRate)],
    ['lookups/s (locate() of every record’s address, per-/24 answer cache)', fmt(lookupRate)],
    ['uncached lookups/s (one database lookup per record, no cache)', fmt(uncachedRate)],
    ['parse floor records/s (stream scan + JSON.parse of record and properties)', fmt(parseRate)],
    [`ratio ingest ÷ lookups (the issue's, target >= ${TARGET_RATIO})`, `${fmt(ratio, 3)} ${ratio >= TARGET_RATIO ? 'met' : 'NOT met'}`],
    ['ratio ingest ÷ uncached lookups', fmt(ratioUncached, 3)],
    ['ratio ingest ÷ parse floor (1 = the ingest costs no more than its parse)', fmt(ratioParse, 3)],
    ['  parse floor ÷ lookups (the parse alone against the target)', fmt(parseRate / lookupRate, 3)],
    ['ingest duration, s (ingest + flush)', `${fmt(median(runs.ingest.map((x) => x.seconds)), 1)} (${fmt(median(runs.ingest.map((x) => x.ingestSeconds)), 1)} + ${fmt(median(runs.ingest.map((x) => x.flushSeconds)), 2)})`],
    ['lookups duration, s (cached / uncached)', `${fmt(median(runs.lookups.map((x) => x.seconds)), 2)} / ${fmt(median(runs.uncached.map((x) => x.seconds)), 2)}`],
    ['parse floor duration, s', fmt(median(runs.parse.map((x) => x.seconds)), 2)],
    ['RSS before the ingest, MB (geolocator loaded)', mb(before)],
    [`peak RSS over that, MB (sampled every ${cfg.sampleMs} ms)`, mb(peakSampled)],
    ['peak RSS over that, MB (maxRSS, the process high-water mark)', mb(peakMax)],
    ['peak RSS of the ingest process, MB (absolute)', mb(peakAbs)],
    ['events stored', fmt(i?.eventsStored ?? 0)],
    ['devices stored', fmt(i?.devicesStored ?? 0)],
    ['tags written (no such device)', `${fmt(i?.tagsWritten ?? 0)} (${fmt(i?.tagsNoDevice ?? 0)})`],
    ['duplicates / skipped / rejected / failed connects', `${fmt(i?.duplicates ?? 0)} / ${fmt(i?.skipped ?? 0)} / ${fmt(i?.rejected ?? 0)} / ${fmt(i?.failedConnects ?? 0)}`],
    ['locations.db + WAL after the ingest, MB', mb(i?.storeBytes ?? 0)],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  for (const [k, v] of rows) console.log(`${k.padEnd(w)}  ${v.padStart(14)}`);
  const list = (xs: number[]): string => `${xs.map((x) => fmt(x, 3)).join(', ')} (median ${fmt(median(xs), 3)})`;
  console.log(`\nthe ratios within each round: ingest ÷ lookups ${list(roundRatios.lookups)}; ÷ uncached ${list(roundRatios.uncached)}; ÷ parse floor ${list(roundRatios.parse)}`);
  const ok = ratio >= TARGET_RATIO;
  console.log(`\nratio ${fmt(ratio, 3)} (target >= ${TARGET_RATIO}): ${ok ? 'met' : 'NOT met'}`);
  console.log(
    `  per record: ingest ${fmt(1e6 / ingestRate, 2)} µs, parse floor ${fmt(1e6 / parseRate, 2)} µs, uncached lookup ${fmt(1e6 / uncachedRate, 2)} µs, cached locate() ${fmt(1e6 / lookupRate, 2)} µs` +
      (parseRate / lookupRate < TARGET_RATIO ? ` (the parse floor alone is a ratio of ${fmt(parseRate / lookupRate, 3)}: the target cannot be met by any ingest that parses this format)` : ''),
  );
  if (cfg.keep) console.log(`history kept: ${history.file}`);
  console.log(
    JSON.stringify({
      bench: 'locations-ingest',
      node: process.version,
      cores: availableParallelism(),
      config: cfg,
      records: history.records,
      devices: history.devices,
      historyBytes: history.bytes,
      ingestRate,
      ingestOnlyRate,
      lookupRate,
      uncachedRate,
      parseRate,
      ratio,
      ratioUncached,
      ratioParse,
      roundRatios,
      target: TARGET_RATIO,
      targetMet: ok,
      peakRssOverBaselineSampled: peakSampled,
      peakRssOverBaselineMax: peakMax,
      rounds: runs,
    }),
  );
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
  process.exitCode = 1;
});
