/*
 * Drain benchmark: N buffered readings through the gateway's real path (SqliteOutbox →
 * Forwarder + packer → AmqpUplink) to the local IoT Hub, against a bare SDK loop sending the
 * same pre-packed messages with the same number in flight; and the hub meter's billed 4 KB units.
 * The hub runs in a child process (hub-child.ts) so its CPU does not share our event loop.
 *
 *   npm run bench:gateway-drain                          # build, then the default run (~2-3 min)
 *   node dist/bench/gateway-drain/run.js --readings 200000 --repeats 3
 *   node dist/bench/gateway-drain/run.js --help
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import common from 'azure-iot-common';
import deviceSdk from 'azure-iot-device';
import deviceAmqp from 'azure-iot-device-amqp';
import { systemClock } from '../../common/clock.js';
import { createLogger } from '../../common/log.js';
import { deviceConnectionString, readHubFile } from '../../cloud/hub/data-dir.js';
import { openHubAccess } from '../../cloud/hub/hub-access.js';
import { BILLING_UNIT_BYTES, type MeterCounts } from '../../cloud/hub/meter.js';
import { createRegistry, hubTargetFromFile } from '../../cloud/hub/service-clients.js';
import { AmqpUplink } from '../../gateway/src/adapters/amqp-uplink.js';
import { SqliteOutbox } from '../../gateway/src/adapters/sqlite-outbox.js';
import { Forwarder, forwarderDefaults } from '../../gateway/src/app/forwarder.js';
import { packMessage, planBatch, type PackerSettings, type TelemetryMessage } from '../../gateway/src/app/packer.js';
import type { Outbox, OutboxRow } from '../../gateway/src/ports/outbox.js';
import type { TelemetryEncoding } from '../../gateway/src/contract/telemetry.js';
import type { Sample } from '../../sensors/contract/reading.js';
import { cpuDelta, sampleCpu } from '../hub-d2c/cpu.js';
import { digest, READING_SET_SHA256, READING_SET_SIZE, readingSet } from '../outbox/readings.js';
import { fileSystemOf } from '../outbox-disk/fs-kind.js';
import { killHubs, startHub, type HubProcess } from './hub-process.js';
import { positiveInt } from '../args.js';

const USAGE = `usage: node dist/bench/gateway-drain/run.js [options]
  --readings N        readings buffered and drained per run (default 1000000)
  --repeats R         A/B pairs, interleaved (A B, B A, ...); medians printed (default 2)
  --budget-units U    packer budget in 4 KB units for the timed runs (default 16)
  --encoding E        json | json+gzip for the timed runs (default json+gzip)
  --in-flight K       messages in flight, forwarder and bare loop alike (default ${forwarderDefaults.maxInFlight})
  --peek-rows P       forwarder peekRows: rows read for one message at most (default ${forwarderDefaults.peekRows}, the forwarder's)
  --encodings LIST    encodings of the extra 1-unit meter runs, comma-separated; '' for none (default json,json+gzip)
  --meter-readings M  readings per extra meter run (default 50000)
  --dir DIR           where the outbox files go; must not be tmpfs (default the OS temp dir)`;

const GATEWAY_ID = 'bench-gw';
/** Readings handed to the outbox at once while filling it (not timed). */
const FILL_WINDOW = 50_000;
/** Bound on stored payload for the fill: the default 64 MiB would evict most of 1,000,000 readings. */
const FILL_MAX_BYTES = 16 * 1024 ** 3;
const TARGET_RATIO = 0.8;
const TARGET_PER_UNIT_GZIP = 300;

interface Config {
  readings: number;
  repeats: number;
  budgetUnits: number;
  encoding: TelemetryEncoding;
  inFlight: number;
  peekRows: number;
  meterEncodings: TelemetryEncoding[];
  meterReadings: number;
  dir: string;
}

function encodingOf(raw: string): TelemetryEncoding {
  if (raw === 'json' || raw === 'json+gzip') return raw;
  throw new Error(`unknown encoding "${raw}" (json or json+gzip)`);
}

function parseConfig(argv: string[]): Config | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      readings: { type: 'string' },
      repeats: { type: 'string' },
      'budget-units': { type: 'string' },
      encoding: { type: 'string' },
      'in-flight': { type: 'string' },
      'peek-rows': { type: 'string' },
      encodings: { type: 'string' },
      'meter-readings': { type: 'string' },
      dir: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) return undefined;
  const encodings = values.encodings ?? 'json,json+gzip';
  return {
    readings: positiveInt('readings', values.readings, 1_000_000),
    repeats: positiveInt('repeats', values.repeats, 2),
    budgetUnits: positiveInt('budget-units', values['budget-units'], 16),
    encoding: encodingOf(values.encoding ?? 'json+gzip'),
    inFlight: positiveInt('in-flight', values['in-flight'], forwarderDefaults.maxInFlight),
    peekRows: positiveInt('peek-rows', values['peek-rows'], forwarderDefaults.peekRows),
    meterEncodings: encodings.trim() === '' ? [] : encodings.split(',').map((e) => encodingOf(e.trim())),
    meterReadings: positiveInt('meter-readings', values['meter-readings'], 50_000),
    dir: resolve(values.dir ?? tmpdir()),
  };
}

const progress = (line: string): void => void process.stderr.write(`${line}\n`);
const fmt = (n: number, digits = 0): string => n.toLocaleString('en', { minimumFractionDigits: digits, maximumFractionDigits: digits });
const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] ?? NaN) : ((s[mid - 1] ?? NaN) + (s[mid] ?? NaN)) / 2;
};

/** The rows a fresh outbox holds after appending `samples`: ids from 1, `seq` per source from 1. */
function outboxRows(samples: readonly Sample[]): OutboxRow[] {
  const seqs = new Map<string, number>();
  return samples.map((s, i) => {
    const seq = (seqs.get(s.source) ?? 0) + 1;
    seqs.set(s.source, seq);
    return { id: i + 1, reading: { ...s, seq } };
  });
}

/**
 * The messages the forwarder sends for these rows: each planned from at most `peekRows` fresh
 * rows (the forwarder reads fewer, ~10 % more than fill the budget; the packer's answer, the
 * edge where one more row would not fit, does not depend on how many rows lie beyond it).
 */
function prepack(rows: readonly OutboxRow[], packer: PackerSettings, peekRows: number): TelemetryMessage[] {
  const out: TelemetryMessage[] = [];
  const budget = (packer.budgetUnits ?? 1) * BILLING_UNIT_BYTES;
  // The forwarder's first guess for the next message: the rows that filled the last full one.
  let guessRows: number | undefined;
  for (let at = 0; at < rows.length; ) {
    const candidates = rows.slice(at, at + peekRows);
    const { message } = planBatch(candidates, packer, guessRows === undefined ? {} : { guessRows });
    if (message.readingCount < candidates.length) guessRows = (message.readingCount * budget) / message.size;
    out.push(message);
    at += message.readingCount;
  }
  return out;
}

/** Everything to remove and stop, whatever ends the run. */
const dirs = new Set<string>();

function tempDir(base: string, prefix: string): string {
  const dir = mkdtempSync(join(base, prefix));
  dirs.add(dir);
  return dir;
}

function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  dirs.delete(dir);
}

function cleanupSync(): void {
  killHubs();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  dirs.clear();
}

interface Bench {
  cfg: Config;
  hub: HubProcess;
  hubDataDir: string;
  connectionString: string;
  samples: Sample[];
}

async function meterOf(b: Bench): Promise<MeterCounts> {
  const access = await openHubAccess(b.hubDataDir);
  try {
    if (access.mode !== 'running') throw new Error('the hub is not answering on HTTPS');
    return (await access.meter()).devices[GATEWAY_ID] ?? {};
  } finally {
    access.close();
  }
}

interface Billed {
  messages: number;
  bytes: number;
  units: number;
}

function billedBetween(before: MeterCounts, after: MeterCounts): Billed {
  const d = (k: string): number => (after[k] ?? 0) - (before[k] ?? 0);
  return { messages: d('d2c.messages'), bytes: d('d2c.bytes'), units: d('d2c.units') };
}

/**
 * Wall time of each outbox call, from the call to its result, and rows peeked. The forwarder
 * awaits `peek`; `recordBatch` and `ack` run in the outbox worker while it packs (overlapped).
 */
interface OutboxTimes {
  peekMs: number;
  peekedRows: number;
  recordMs: number;
  ackMs: number;
  otherMs: number;
}

/**
 * The outbox with peek, recordBatch and ack timed (anything else, e.g. pendingBatches, counts as
 * other); a Proxy, so methods the port gains later pass through untouched.
 */
function timed(outbox: SqliteOutbox, t: OutboxTimes): Outbox {
  const keyOf: Record<string, 'peekMs' | 'recordMs' | 'ackMs'> = { peek: 'peekMs', recordBatch: 'recordMs', ack: 'ackMs' };
  return new Proxy(outbox, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== 'function' || typeof prop !== 'string') return value;
      const key = keyOf[prop] ?? 'otherMs';
      return async (...args: unknown[]): Promise<unknown> => {
        const t0 = performance.now();
        try {
          const result: unknown = await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
          if (prop === 'peek') t.peekedRows += (result as { rows: readonly OutboxRow[] }).rows.length;
          return result;
        } finally {
          t[key] += performance.now() - t0;
        }
      };
    },
  });
}

interface RunResult {
  outbox?: OutboxTimes;
  /** Forwarder time in planBatch / buildMessage (DrainStats.packMs). */
  packMs?: number;
  readings: number;
  messages: number;
  wallMs: number;
  gatewayCpuMs: number;
  hubCpuMs: number;
  billed: Billed;
}

/** A fresh outbox in its own temp dir, filled with `samples` (not timed). */
async function filledOutbox(b: Bench, samples: readonly Sample[]): Promise<{ outbox: SqliteOutbox; dir: string }> {
  const dir = tempDir(b.cfg.dir, 'fieldlink-drain-outbox-');
  // A long interval: commits happen when maxBatchRows (default 1,000) are waiting, or on flush.
  const outbox = await SqliteOutbox.open({ path: join(dir, 'outbox.db'), commitIntervalMs: 60_000, maxBytes: FILL_MAX_BYTES });
  try {
    for (let at = 0; at < samples.length; at += FILL_WINDOW) await outbox.append(samples.slice(at, at + FILL_WINDOW));
    await outbox.flush();
    const stats = await outbox.stats();
    if (stats.depth !== samples.length || stats.counters.evicted !== 0) throw new Error(`outbox fill: depth ${stats.depth}, evicted ${stats.counters.evicted}, want ${samples.length} and 0`);
    return { outbox, dir };
  } catch (e) {
    await outbox.close().catch(() => undefined);
    removeDir(dir);
    throw e;
  }
}

/** A: the forwarder with the AMQP uplink draining a filled outbox. The uplink opens before the clock starts. */
async function runForwarder(b: Bench, samples: readonly Sample[], packer: PackerSettings): Promise<RunResult> {
  const { outbox, dir } = await filledOutbox(b, samples);
  const uplink = new AmqpUplink({ connectionString: b.connectionString, ca: b.hub.ca, log: createLogger({ name: 'bench-uplink', level: 'warn' }) });
  try {
    await uplink.open();
    const times: OutboxTimes = { peekMs: 0, peekedRows: 0, recordMs: 0, ackMs: 0, otherMs: 0 };
    const forwarder = new Forwarder({ outbox: timed(outbox, times), uplink, clock: systemClock, packer, maxInFlight: b.cfg.inFlight, peekRows: b.cfg.peekRows });
    const meterBefore = await meterOf(b);
    const hubBefore = await b.hub.cpu();
    const gwBefore = sampleCpu();
    const t0 = performance.now();
    const stats = await forwarder.drain();
    const wallMs = performance.now() - t0;
    const gwAfter = sampleCpu();
    const hubAfter = await b.hub.cpu();
    const billed = billedBetween(meterBefore, await meterOf(b));
    if (!stats.completed || stats.readingsSent !== samples.length || stats.sendAttempts !== stats.messagesSent || stats.lastError !== undefined) {
      throw new Error(`forwarder drain incomplete: ${JSON.stringify({ ...stats, lastError: stats.lastError?.message })}`);
    }
    if (billed.messages !== stats.messagesSent) throw new Error(`hub metered ${billed.messages} messages, forwarder sent ${stats.messagesSent}`);
    return { outbox: times, packMs: stats.packMs, readings: stats.readingsSent, messages: stats.messagesSent, wallMs, gatewayCpuMs: cpuDelta(gwBefore, gwAfter).cpuMs, hubCpuMs: cpuDelta(hubBefore, hubAfter).cpuMs, billed };
  } finally {
    await uplink.close().catch(() => undefined);
    await outbox.close().catch(() => undefined);
    removeDir(dir);
  }
}

type DeviceClient = InstanceType<typeof deviceSdk.Client>;

async function openBareClient(b: Bench): Promise<DeviceClient> {
  const client = deviceSdk.Client.fromConnectionString(b.connectionString, deviceAmqp.Amqp);
  try {
    // Awaited: the SDK first tries `ca` as a file name, asynchronously; an open() meanwhile skips the CA.
    await client.setOptions({ ca: b.hub.ca });
    client.setRetryPolicy(new common.NoRetry());
    await client.open();
    return client;
  } catch (e) {
    await client.close().catch(() => undefined);
    throw e;
  }
}

/** B: the bare SDK loop, `inFlight` lanes each sending the next pre-packed message and awaiting its ack. */
async function runBare(b: Bench, messages: readonly TelemetryMessage[]): Promise<RunResult> {
  const client = await openBareClient(b);
  try {
    const meterBefore = await meterOf(b);
    const hubBefore = await b.hub.cpu();
    const gwBefore = sampleCpu();
    let next = 0;
    let readings = 0;
    const lane = async (): Promise<void> => {
      for (let m = messages[next++]; m !== undefined; m = messages[next++]) {
        const msg = new common.Message(m.body);
        msg.messageId = m.messageId;
        msg.contentType = m.contentType as never;
        msg.contentEncoding = m.contentEncoding as never;
        for (const [k, v] of Object.entries(m.properties)) msg.properties.add(k, v);
        await client.sendEvent(msg);
        readings += m.readingCount;
      }
    };
    const t0 = performance.now();
    await Promise.all(Array.from({ length: b.cfg.inFlight }, lane));
    const wallMs = performance.now() - t0;
    const gwAfter = sampleCpu();
    const hubAfter = await b.hub.cpu();
    const billed = billedBetween(meterBefore, await meterOf(b));
    if (billed.messages !== messages.length) throw new Error(`hub metered ${billed.messages} messages, bare loop sent ${messages.length}`);
    return { readings, messages: messages.length, wallMs, gatewayCpuMs: cpuDelta(gwBefore, gwAfter).cpuMs, hubCpuMs: cpuDelta(hubBefore, hubAfter).cpuMs, billed };
  } finally {
    await client.close().catch(() => undefined);
  }
}

const rate = (r: RunResult): number => (r.readings * 1000) / r.wallMs;
const perUnit = (r: RunResult): number => r.readings / r.billed.units;

function describe(kind: string, r: RunResult): string {
  return `  ${kind}: ${fmt(rate(r))} readings/s, ${fmt(r.messages)} messages in ${fmt(r.wallMs / 1000, 2)} s, ${fmt(r.billed.units)} billed units (${fmt(perUnit(r), 1)} readings/unit)`;
}

/** Readings per 4 KB unit if each message were a plain JSON array of Reading objects, 1 unit each (computed, not sent). */
function naiveJsonPerUnit(rows: readonly OutboxRow[], packer: PackerSettings): number {
  let units = 0;
  let at = 0;
  while (at < rows.length) {
    // The same properties as a real message of this many rows would carry (to, message_id, routing keys).
    let n = 0;
    let body = 2; // []
    for (;;) {
      const row = rows[at + n];
      if (row === undefined) break;
      const add = Buffer.byteLength(JSON.stringify(row.reading)) + (n === 0 ? 0 : 1);
      const props = planOverhead(rows.slice(at, at + n + 1), packer);
      if (n > 0 && body + add + props > BILLING_UNIT_BYTES) break;
      body += add;
      n++;
    }
    units++;
    at += n;
  }
  return rows.length / units;
}

function planOverhead(rows: readonly OutboxRow[], packer: PackerSettings): number {
  const message = packMessage(packer.gatewayId, 'json', rows);
  return message.size - message.body.length;
}

async function main(): Promise<number> {
  const cfg = parseConfig(process.argv.slice(2));
  if (!cfg) {
    console.log(USAGE);
    return 0;
  }
  const fs = fileSystemOf(cfg.dir);
  if (fs.ramBacked) throw new Error(`${cfg.dir} is on ${fs.type}: the outbox must be on a real file system (--dir)`);
  const started = performance.now();
  const samples = readingSet(Math.max(cfg.readings, cfg.meterReadings));
  // The generator is sequential, so the first READING_SET_SIZE readings are the pinned set.
  const sha = digest(samples.length >= READING_SET_SIZE ? samples.slice(0, READING_SET_SIZE) : readingSet());
  if (sha !== READING_SET_SHA256) throw new Error(`reading set digest ${sha} differs from the pinned ${READING_SET_SHA256}: the generator changed`);
  const drainSet = samples.slice(0, cfg.readings);

  const work = tempDir(cfg.dir, 'fieldlink-drain-');
  const hubDataDir = join(work, 'hub');
  progress(`starting the hub (child process) in ${hubDataDir}`);
  const hub = await startHub(hubDataDir);
  const registry = createRegistry(hubTargetFromFile(hub.hubJson));
  const { responseBody: device } = await registry.create({ deviceId: GATEWAY_ID });
  const key = device.authentication?.symmetricKey?.primaryKey;
  if (!key) throw new Error('the registry returned no device key');
  const b: Bench = { cfg, hub, hubDataDir, connectionString: deviceConnectionString(readHubFile(hub.hubJson), GATEWAY_ID, key), samples };

  const packer: PackerSettings = { gatewayId: GATEWAY_ID, encoding: cfg.encoding, budgetUnits: cfg.budgetUnits };
  const rows = outboxRows(drainSet);
  const p0 = performance.now();
  const messages = prepack(rows, packer, cfg.peekRows);
  const prepackMs = performance.now() - p0;
  const meteredBytes = messages.reduce((s, m) => s + m.size, 0);
  progress(`pre-packed ${fmt(messages.length)} messages in ${fmt(prepackMs / 1000, 1)} s (${fmt(meteredBytes / messages.length)} metered bytes each)`);

  const forwarderRuns: RunResult[] = [];
  const bareRuns: RunResult[] = [];
  for (let r = 0; r < cfg.repeats; r++) {
    // A B, then B A: drift in the machine's load hits both sides.
    for (const kind of r % 2 === 0 ? ['A', 'B'] : ['B', 'A']) {
      if (kind === 'A') {
        progress(`run ${r + 1}: filling the outbox with ${fmt(cfg.readings)} readings (not timed)…`);
        const res = await runForwarder(b, drainSet, packer);
        forwarderRuns.push(res);
        progress(describe('A forwarder', res));
      } else {
        const res = await runBare(b, messages);
        bareRuns.push(res);
        progress(describe('B bare SDK ', res));
      }
    }
  }
  for (const a of forwarderRuns) {
    if (a.billed.bytes !== meteredBytes || a.messages !== messages.length) {
      throw new Error(`forwarder sent ${a.messages} messages, ${a.billed.bytes} metered bytes; the pre-packed set has ${messages.length} and ${meteredBytes}: not the same messages`);
    }
  }

  // Extra meter runs: the same path at a 1-unit budget, on a smaller set.
  const meterSet = samples.slice(0, cfg.meterReadings);
  const meterRuns: { encoding: TelemetryEncoding; run: RunResult }[] = [];
  for (const encoding of cfg.meterEncodings) {
    progress(`meter run: ${encoding}, 1 unit, ${fmt(meterSet.length)} readings…`);
    const run = await runForwarder(b, meterSet, { gatewayId: GATEWAY_ID, encoding, budgetUnits: 1 });
    meterRuns.push({ encoding, run });
    progress(describe(`A ${encoding} 1u`, run));
  }
  const naive = naiveJsonPerUnit(outboxRows(meterSet.slice(0, 20_000)), { gatewayId: GATEWAY_ID, encoding: 'json', budgetUnits: 1 });

  const aRate = median(forwarderRuns.map(rate));
  const bRate = median(bareRuns.map(rate));
  const ratio = aRate / bRate;
  const pairRatios = forwarderRuns.map((a, i) => rate(a) / rate(bareRuns[i] ?? a));
  const a0 = forwarderRuns[0];
  if (a0 === undefined) throw new Error('no forwarder run');
  const cores = availableParallelism();
  const cpuPerK = (rs: RunResult[], side: 'gatewayCpuMs' | 'hubCpuMs'): string => fmt(median(rs.map((r) => (r[side] * 1000) / r.readings)), 2);

  console.log(`\ngateway-drain: ${fmt(cfg.readings)} readings, ${cfg.encoding}, budget ${cfg.budgetUnits} units, ${cfg.inFlight} in flight, peek ${fmt(cfg.peekRows)} rows`);
  console.log(`${cores} cores, node ${process.version}, outbox dir ${cfg.dir} (${fs.type} on ${fs.source}), hub in a child process; ${new Date().toISOString()}\n`);
  console.log('run   A forwarder (readings/s)   B bare SDK (readings/s)   A/B');
  forwarderRuns.forEach((a, i) => {
    const bare = bareRuns[i];
    console.log(`${String(i + 1).padEnd(5)} ${fmt(rate(a)).padStart(24)}   ${(bare ? fmt(rate(bare)) : '-').padStart(23)}   ${(pairRatios[i] ?? NaN).toFixed(2)}`);
  });
  console.log(`${'median'.padEnd(5)} ${fmt(aRate).padStart(24)}   ${fmt(bRate).padStart(23)}   ${ratio.toFixed(2)}  (target >= ${TARGET_RATIO}: ${ratio >= TARGET_RATIO ? 'target met' : 'target NOT met'})`);
  console.log(`\nmessages per run ${fmt(messages.length)}, ${fmt(cfg.readings / messages.length, 1)} readings and ${fmt(meteredBytes / messages.length)} metered bytes each; pre-packing them took ${fmt(prepackMs / 1000, 2)} s (in A's time, not in B's)`);
  const t = a0.outbox;
  if (t !== undefined) {
    const share = (ms: number): string => `${fmt(ms / 1000, 1)} s (${fmt((100 * ms) / a0.wallMs)} %)`;
    const pack = a0.packMs ?? 0;
    console.log(
      `A run 1, ${fmt(a0.wallMs / 1000, 1)} s: awaiting outbox peek ${share(t.peekMs)} (${fmt(t.peekedRows)} rows peeked for ${fmt(a0.readings)} sent), packing (planBatch) ${share(pack)}, other outbox calls ${share(t.otherMs)};`,
    );
    console.log(`  the rest, ${share(a0.wallMs - t.peekMs - pack - t.otherMs)}, is the uplink (SDK, AMQP) and waiting for the hub's accept and for records`);
    console.log(`  overlapped with the above, in the outbox worker: recordBatch ${share(t.recordMs)}, ack ${share(t.ackMs)} (call to result, queueing included)`);
  }
  console.log(`CPU ms per 1,000 readings (median): gateway process A ${cpuPerK(forwarderRuns, 'gatewayCpuMs')}, B ${cpuPerK(bareRuns, 'gatewayCpuMs')}; hub child A ${cpuPerK(forwarderRuns, 'hubCpuMs')}, B ${cpuPerK(bareRuns, 'hubCpuMs')}`);

  console.log(`\nbilled 4 KB units (hub meter, d2c.units per device; one message per reading would be 1 reading/unit)`);
  console.log('encoding    budget  readings   messages   units      readings/unit  metered bytes/reading');
  const line = (enc: string, units: string, r: RunResult): string =>
    `${enc.padEnd(11)} ${units.padStart(6)}  ${fmt(r.readings).padStart(9)}  ${fmt(r.messages).padStart(9)}  ${fmt(r.billed.units).padStart(9)}  ${fmt(perUnit(r), 1).padStart(13)}  ${fmt(r.billed.bytes / r.readings, 2).padStart(21)}`;
  console.log(line(cfg.encoding, `${cfg.budgetUnits} u`, a0));
  for (const { encoding, run } of meterRuns) console.log(line(encoding, '1 u', run));
  console.log(`${'naive JSON'.padEnd(11)} ${'1 u'.padStart(6)}  array of Reading objects, computed (not sent): ${fmt(naive, 1)} readings/unit`);
  if (cfg.encoding === 'json+gzip') {
    const met = perUnit(a0) >= TARGET_PER_UNIT_GZIP;
    console.log(`json+gzip at ${cfg.budgetUnits} units: ${fmt(perUnit(a0), 1)} readings/unit (target >= ${TARGET_PER_UNIT_GZIP}: ${met ? 'target met' : 'target NOT met'})`);
  }
  progress(`(${fmt((performance.now() - started) / 1000, 1)} s in all)`);

  await hub.stop();
  removeDir(work);
  return 0;
}

// Hub children and temp dirs must not outlive us, whatever ends this process.
process.on('exit', cleanupSync);
process.on('SIGINT', () => {
  cleanupSync();
  process.exit(130);
});
process.on('SIGTERM', () => {
  cleanupSync();
  process.exit(143);
});

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(err);
    cleanupSync();
    process.exitCode = 1;
  },
);
