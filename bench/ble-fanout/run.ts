/**
 * BLE fan-out (issue 5, Benchmark): N emulated wearables notifying heart rate at 50 Hz through
 * node-ble into the outbox. For each N (1, 4, 8, 16, 32 by default), a fresh child process
 * (child.ts) runs a private dbus-daemon and the fake BlueZ with N wearables; this process runs
 * BleWearableSource (all N paired, maxConnections = N) feeding a real SqliteOutbox (default
 * commit interval) one append per sample, as the gateway does. After all N are receiving and a
 * settle second, a window of `--seconds` is measured; then the wearables stop notifying (the
 * links stay up), the pipeline gets `--drain-ms` to deliver what is in flight, and the outbox's
 * own counter of committed readings is compared with what the emulator emitted.
 *
 *   npm run build && node dist/bench/ble-fanout/run.js [--n 1,4,8,16,32] [--seconds 10] [--rate 50]
 *     [--drain-ms 2000] [--seed 1] [--dir /mnt/sd] [--synthetic-seconds 3]
 *
 * README.md explains the accounting and gives the figures.
 */
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance, type EventLoopUtilization } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import nodeBle from 'node-ble';
import { systemClock } from '../../common/clock.js';
import { createLogger } from '../../common/log.js';
import { SqliteOutbox } from '../../gateway/src/adapters/sqlite-outbox.js';
import { serviceModel } from '../../sensors/ble/emulator/wearable-model.js';
import { DECODERS } from '../../sensors/ble/profiles.js';
import { BleWearableSource, type BlePairings } from '../../sensors/ble/source.js';
import type { Sample } from '../../sensors/contract/index.js';
import { machineBusy, sampleMachine, type MachineSample } from '../hub-d2c/cpu.js';
import { wearableAddress, type ChildMessage, type ParentMessage } from './protocol.js';

const { values: args } = parseArgs({
  options: {
    n: { type: 'string', default: '1,4,8,16,32' },
    seconds: { type: 'string', default: '10' },
    rate: { type: 'string', default: '50' },
    'drain-ms': { type: 'string', default: '2000' },
    'late-ms': { type: 'string', default: '15000' },
    seed: { type: 'string', default: '1' },
    dir: { type: 'string' },
    'synthetic-seconds': { type: 'string', default: '3' },
  },
});
const NS = args.n.split(',').map((s) => Number(s.trim()));
const SECONDS = Number(args.seconds);
const RATE_HZ = Number(args.rate);
const DRAIN_MS = Number(args['drain-ms']);
const LATE_MS = Number(args['late-ms']);
const SEED = Number(args.seed);
const SYNTHETIC_S = Number(args['synthetic-seconds']);
if (NS.some((n) => !(Number.isInteger(n) && n >= 1)) || !(SECONDS > 0) || !(RATE_HZ > 0) || !(DRAIN_MS >= 0) || !(LATE_MS >= 0)) {
  console.error('usage: run.js [--n 1,4,8] [--seconds 10] [--rate 50] [--drain-ms 2000] [--late-ms 15000] [--seed 1] [--dir D] [--synthetic-seconds 3]');
  process.exit(2);
}
/** Readings per notification: heart rate and one RR interval. */
const VALUES_PER_NOTIFICATION = 2;
const TARGET_N = 8;
const LOSS_THRESHOLD = 0.99;
const CHILD = fileURLToPath(new URL('./child.js', import.meta.url));
const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

const log = createLogger({ level: 'silent' });
const workDir = mkdtempSync(join(args.dir ?? tmpdir(), 'fieldlink-ble-fanout-'));
const children = new Set<ChildProcess>();

function cleanupSync(): void {
  for (const c of children) c.kill('SIGKILL');
  rmSync(workDir, { recursive: true, force: true });
}
process.on('exit', cleanupSync);
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => process.exit(130));

/** utime + stime of `pid` from /proc/<pid>/stat, ms; undefined when it is gone. */
function procCpuMs(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // After "pid (comm) ": state is field 3, utime 14 and stime 15 (1-based over the whole line).
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
  } catch {
    return undefined;
  }
}

/** The emulator child: dbus-daemon + fake BlueZ with N wearables. */
class Emulator {
  readonly proc: ChildProcess;
  readonly #waiting = new Map<number, (m: ChildMessage) => void>();
  #nextId = 1;
  readonly ready: Promise<{ busAddress: string; daemonPid: number | undefined }>;
  readonly exited: Promise<void>;

  constructor(n: number) {
    this.proc = fork(CHILD, [String(n), String(RATE_HZ), String(SEED)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: [] });
    children.add(this.proc);
    this.exited = new Promise((resolve) => this.proc.once('exit', () => {
      children.delete(this.proc);
      resolve();
    }));
    this.ready = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('emulator child not ready within 15 s')), 15_000);
      this.proc.once('exit', (code) => reject(new Error(`emulator child exited (code ${code}) before it was ready`)));
      this.proc.on('message', (raw: unknown) => {
        const m = raw as ChildMessage;
        if (m.type === 'ready') {
          clearTimeout(timer);
          resolve(m);
        } else if (m.type === 'failed') {
          clearTimeout(timer);
          reject(new Error(`emulator child failed: ${m.message}`));
        } else {
          this.#waiting.get(m.id)?.(m);
          this.#waiting.delete(m.id);
        }
      });
    });
    this.ready.catch(() => undefined);
  }

  request<T extends 'sample' | 'quiesce'>(type: T): Promise<Extract<ChildMessage, { type: T extends 'sample' ? 'sample' : 'quiesced' }>> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`emulator child did not answer ${type} within 10 s`)), 10_000);
      this.#waiting.set(id, (m) => {
        clearTimeout(timer);
        resolve(m as Extract<ChildMessage, { type: T extends 'sample' ? 'sample' : 'quiesced' }>);
      });
      const msg: ParentMessage = { type, id };
      this.proc.send(msg);
    });
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    if (this.proc.connected) this.proc.send({ type: 'stop' } satisfies ParentMessage);
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(timer);
  }
}

interface Snapshot {
  readonly ms: number;
  readonly gwCpuMs: number;
  readonly elu: EventLoopUtilization;
  readonly childCpuMs: number | undefined;
  readonly childEluActive: number;
  readonly childEluIdle: number;
  readonly daemonCpuMs: number | undefined;
  readonly emitted: number;
  readonly received: number;
  readonly machine: MachineSample;
}

interface Row {
  readonly n: number;
  readonly connectMs: number;
  /** Emitted in the window, readings/s, and its ratio to N × rate × 2. */
  readonly emittedPerS: number;
  readonly offered: number;
  /** Received by this process in the window ÷ emitted in the window. */
  readonly windowRatio: number;
  /** Emitted but not yet received at the end of the window, ms of emission. */
  readonly backlogMs: number;
  readonly emittedTotal: number;
  readonly receivedTotal: number;
  readonly committedTotal: number;
  readonly ratio: number;
  readonly drainMs: number;
  /** Committed after a further `--late-ms`, when the drain left some behind. */
  readonly lateRatio: number | undefined;
  readonly decodeErrors: number;
  readonly appendErrors: number;
  readonly reconnects: number;
  /** CPU ms per 1,000 readings committed in the window. */
  readonly gwPerK: number;
  readonly childPerK: number | undefined;
  readonly daemonPerK: number | undefined;
  /** Share of one core over the window. */
  readonly gwCore: number;
  readonly childCore: number | undefined;
  readonly daemonCore: number | undefined;
  readonly gwElu: number;
  readonly childElu: number;
  readonly delayP99Ms: number;
  readonly delayMaxMs: number;
  readonly machineBusy: number;
}

async function snapshot(emu: Emulator, daemonPid: number | undefined, received: () => number): Promise<Snapshot> {
  const c = await emu.request('sample');
  const cpu = process.cpuUsage();
  return {
    ms: performance.now(),
    gwCpuMs: (cpu.user + cpu.system) / 1000,
    elu: performance.eventLoopUtilization(),
    childCpuMs: procCpuMs(emu.proc.pid),
    childEluActive: c.eluActiveMs,
    childEluIdle: c.eluIdleMs,
    daemonCpuMs: procCpuMs(daemonPid),
    emitted: c.emitted,
    received: received(),
    machine: sampleMachine(),
  };
}

const diff = (a: number | undefined, b: number | undefined): number | undefined => (a === undefined || b === undefined ? undefined : b - a);

async function waitFor(ms: number, what: string, ok: () => boolean): Promise<void> {
  const deadline = performance.now() + ms;
  while (!ok()) {
    if (performance.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await delay(50);
  }
}

async function measure(n: number): Promise<Row> {
  const emu = new Emulator(n);
  const stopSource = new AbortController();
  let outbox: SqliteOutbox | undefined;
  let consume: Promise<void> | undefined;
  try {
    const { busAddress, daemonPid } = await emu.ready;
    if (daemonPid === undefined) console.error('  (dbus-daemon pid not found: its CPU is not reported)');
    outbox = await SqliteOutbox.open({ path: join(workDir, `outbox-${n}.db`), log });
    const pairings: BlePairings = Object.fromEntries(Array.from({ length: n }, (_, i) => [wearableAddress(i), { profile: 'heart_rate' as const }]));
    const source = new BleWearableSource({
      pairings,
      clock: systemClock,
      log,
      maxConnections: n,
      // node-ble connects with dbus-next's systemBus(), which reads this variable when called.
      bluetooth: () => {
        const previous = process.env.DBUS_SYSTEM_BUS_ADDRESS;
        process.env.DBUS_SYSTEM_BUS_ADDRESS = busAddress;
        try {
          return nodeBle.createBluetooth();
        } finally {
          if (previous === undefined) delete process.env.DBUS_SYSTEM_BUS_ADDRESS;
          else process.env.DBUS_SYSTEM_BUS_ADDRESS = previous;
        }
      },
    });
    let handed = 0;
    let committed = 0;
    let appendErrors = 0;
    const box = outbox;
    // As Gateway#ingest: one append per sample, not awaited.
    consume = (async () => {
      for await (const sample of source.samples(stopSource.signal)) {
        handed++;
        box.append([sample]).then(
          () => void committed++,
          () => void appendErrors++,
        );
      }
    })();
    const t0 = performance.now();
    await waitFor(20_000 + 1000 * n, `all ${n} wearables receiving`, () => Object.values(source.state()).every((s) => s.pairing === 'receiving'));
    const connectMs = performance.now() - t0;
    await delay(1000);

    const histogram = monitorEventLoopDelay({ resolution: 10 });
    const a = await snapshot(emu, daemonPid, () => handed);
    const committedA = committed;
    histogram.enable();
    await delay(SECONDS * 1000);
    histogram.disable();
    const b = await snapshot(emu, daemonPid, () => handed);
    const committedB = committed;

    // Accounting: the wearables stop notifying (links stay up); everything they emitted since
    // they were subscribed must reach the outbox within the drain budget.
    const { emitted: emittedTotal } = await emu.request('quiesce');
    const drainFrom = performance.now();
    const delivered = (): boolean => handed >= emittedTotal && committed + appendErrors >= handed;
    await waitFor(DRAIN_MS, 'drain', delivered).catch(() => undefined);
    const drainMs = performance.now() - drainFrom;
    const committedTotal = (await box.stats()).counters.appended;
    let lateRatio: number | undefined;
    if (committedTotal < emittedTotal) {
      await waitFor(LATE_MS, 'late drain', delivered).catch(() => undefined);
      lateRatio = (await box.stats()).counters.appended / emittedTotal;
    }
    const totals = source.totals();

    const windowMs = b.ms - a.ms;
    const emittedW = b.emitted - a.emitted;
    const committedW = Math.max(1, committedB - committedA);
    const eluActive = b.elu.active - a.elu.active;
    const eluIdle = b.elu.idle - a.elu.idle;
    const childActive = b.childEluActive - a.childEluActive;
    const childIdle = b.childEluIdle - a.childEluIdle;
    const gwCpu = b.gwCpuMs - a.gwCpuMs;
    const childCpu = diff(a.childCpuMs, b.childCpuMs);
    const daemonCpu = diff(a.daemonCpuMs, b.daemonCpuMs);
    const perK = (ms: number | undefined): number | undefined => (ms === undefined ? undefined : (ms * 1000) / committedW);
    const emittedPerS = (emittedW * 1000) / windowMs;
    return {
      n,
      connectMs,
      emittedPerS,
      offered: emittedPerS / (n * RATE_HZ * VALUES_PER_NOTIFICATION),
      windowRatio: emittedW > 0 ? (b.received - a.received) / emittedW : 0,
      backlogMs: emittedPerS > 0 ? (Math.max(0, b.emitted - b.received) * 1000) / emittedPerS : 0,
      emittedTotal,
      receivedTotal: totals.samples,
      committedTotal,
      ratio: emittedTotal > 0 ? committedTotal / emittedTotal : 0,
      drainMs,
      lateRatio,
      decodeErrors: totals.decodeErrors,
      appendErrors,
      reconnects: totals.reconnects,
      gwPerK: perK(gwCpu) ?? 0,
      childPerK: perK(childCpu),
      daemonPerK: perK(daemonCpu),
      gwCore: gwCpu / windowMs,
      childCore: childCpu === undefined ? undefined : childCpu / windowMs,
      daemonCore: daemonCpu === undefined ? undefined : daemonCpu / windowMs,
      gwElu: eluActive + eluIdle > 0 ? eluActive / (eluActive + eluIdle) : 0,
      childElu: childActive + childIdle > 0 ? childActive / (childActive + childIdle) : 0,
      delayP99Ms: histogram.percentile(99) / 1e6,
      delayMaxMs: histogram.max / 1e6,
      machineBusy: machineBusy(a.machine, b.machine),
    };
  } finally {
    stopSource.abort();
    await consume?.catch(() => undefined);
    await outbox?.close().catch(() => undefined);
    await emu.stop();
  }
}

/**
 * Our code alone at the highest N's rate, no D-Bus: the payloads the emulator would send are
 * decoded with the profile's decoder, queued as BleWearableSource does, and appended one per
 * sample to a fresh outbox. The gateway side's CPU minus this is node-ble + dbus-next.
 */
async function synthetic(n: number): Promise<{ perK: number; core: number; elu: number }> {
  const outbox = await SqliteOutbox.open({ path: join(workDir, 'synthetic.db'), log });
  try {
    const models = Array.from({ length: n }, (_, i) => serviceModel('heart_rate', SEED * 1000 + i).characteristics[0]);
    const queue: Sample[] = [];
    let wake: (() => void) | undefined;
    let ended = false;
    let produced = 0;
    const decode = DECODERS.heart_rate_measurement;
    const consumer = (async () => {
      for (;;) {
        const s = queue.shift();
        if (s !== undefined) {
          void outbox.append([s]);
          continue;
        }
        if (ended) return;
        await new Promise<void>((resolve) => (wake = resolve));
      }
    })();
    const cpu0 = process.cpuUsage();
    const elu0 = performance.eventLoopUtilization();
    const t0 = performance.now();
    const timers = models.map((m, i) =>
      setInterval(() => {
        const payload = m?.sample().payload;
        if (payload === undefined) return;
        const out = decode(payload);
        if (!out.ok) return;
        const ts = Date.now();
        produced += out.samples.length;
        for (const f of out.samples) queue.push({ source: `ble:${wearableAddress(i)}/${f.kind}`, kind: f.kind, value: f.value, unit: f.unit, ts, flags: {} });
        const w = wake;
        wake = undefined;
        w?.();
      }, 1000 / RATE_HZ),
    );
    await delay(SYNTHETIC_S * 1000);
    for (const t of timers) clearInterval(t);
    const cpu = process.cpuUsage(cpu0);
    const elu = performance.eventLoopUtilization(elu0);
    const ms = performance.now() - t0;
    ended = true;
    wake?.();
    await consumer;
    // Per reading produced in the window (the last group commits after it; its CPU is not counted either).
    return { perK: ((cpu.user + cpu.system) / 1000 / Math.max(1, produced)) * 1000, core: (cpu.user + cpu.system) / 1000 / ms, elu: elu.utilization };
  } finally {
    await outbox.close();
  }
}

const pct = (x: number | undefined): string => (x === undefined ? 'n/a' : `${(x * 100).toFixed(0)} %`);
const fix = (x: number | undefined, d = 1): string => (x === undefined ? 'n/a' : x.toFixed(d));

try {
  console.log(`ble-fanout: N = ${NS.join(', ')} heart-rate wearables at ${RATE_HZ} Hz (${VALUES_PER_NOTIFICATION} readings per notification), ${SECONDS} s window, drain budget ${DRAIN_MS} ms, outbox in ${workDir}`);
  const rows: Row[] = [];
  for (const n of NS) {
    const row = await measure(n);
    rows.push(row);
    console.log(
      `  N=${n}: connected in ${(row.connectMs / 1000).toFixed(1)} s, emitted ${row.emittedTotal}, received ${row.receivedTotal}, committed ${row.committedTotal} (ratio ${row.ratio.toFixed(4)}` +
        `${row.lateRatio === undefined ? '' : `, ${row.lateRatio.toFixed(4)} after a further ${LATE_MS / 1000} s`}), drained in ${row.drainMs.toFixed(0)} ms; ` +
        `decode errors ${row.decodeErrors}, append errors ${row.appendErrors}, reconnects ${row.reconnects}`,
    );
  }
  const top = Math.max(...NS);
  const syn = SYNTHETIC_S > 0 ? await synthetic(top) : undefined;

  console.log('');
  console.log('| N | emitted/s (of nominal) | window recv/emit | backlog at end | committed/emitted | CPU ms/1k: gateway | emulator | dbus-daemon | core share: gateway | emulator | dbus-daemon | ELU gateway | ELU emulator | loop delay p99/max ms | machine busy |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(
      `| ${r.n} | ${r.emittedPerS.toFixed(0)} (${pct(r.offered)}) | ${r.windowRatio.toFixed(3)} | ${r.backlogMs.toFixed(0)} ms | ${r.ratio.toFixed(4)}${r.lateRatio === undefined ? '' : ` (${r.lateRatio.toFixed(4)} late)`} | ` +
        `${fix(r.gwPerK)} | ${fix(r.childPerK)} | ${fix(r.daemonPerK)} | ${pct(r.gwCore)} | ${pct(r.childCore)} | ${pct(r.daemonCore)} | ${pct(r.gwElu)} | ${pct(r.childElu)} | ` +
        `${r.delayP99Ms.toFixed(1)}/${r.delayMaxMs.toFixed(1)} | ${pct(r.machineBusy)} |`,
    );
  }
  console.log('');

  const lossy = rows.filter((r) => r.ratio < LOSS_THRESHOLD);
  const target = rows.find((r) => r.n === TARGET_N);
  console.log(
    target === undefined
      ? `target (no loss at ${TARGET_N} × ${RATE_HZ} Hz): not measured (add ${TARGET_N} to --n)`
      : `target (no loss at ${TARGET_N} × ${RATE_HZ} Hz): ${target.ratio >= LOSS_THRESHOLD ? 'met' : 'NOT met'} (committed/emitted ${target.ratio.toFixed(4)})`,
  );
  const firstLoss = lossy.sort((x, y) => x.n - y.n)[0];
  console.log(firstLoss === undefined ? `loss starts at N = none up to ${top} (committed/emitted >= ${LOSS_THRESHOLD} everywhere)` : `loss starts at N = ${firstLoss.n}`);
  const slow = rows.filter((r) => r.windowRatio < LOSS_THRESHOLD).sort((x, y) => x.n - y.n)[0];
  console.log(slow === undefined ? 'falls behind in the window at N = none' : `falls behind in the window (received < ${LOSS_THRESHOLD} × emitted) at N = ${slow.n}`);
  const offeredShort = rows.filter((r) => r.offered < 0.95).sort((x, y) => x.n - y.n)[0];
  if (offeredShort !== undefined) console.log(`the emulator itself emits < 95 % of nominal from N = ${offeredShort.n} (its timers run late)`);

  const hi = rows.find((r) => r.n === top);
  if (hi !== undefined) {
    console.log('');
    console.log(`where the limit is, at N = ${top} (${hi.emittedPerS.toFixed(0)} readings/s):`);
    console.log(`  dbus-daemon ${pct(hi.daemonCore)} of a core (single-threaded), emulator ${pct(hi.childCore)} (event loop ${pct(hi.childElu)} busy), gateway side ${pct(hi.gwCore)} (event loop ${pct(hi.gwElu)} busy; the outbox worker thread is included in its CPU)`);
    if (syn !== undefined) {
      const ours = Math.min(syn.perK, hi.gwPerK);
      console.log(
        `  gateway side per 1,000 readings: ${hi.gwPerK.toFixed(1)} ms, of which our code (decode, queue, outbox append + SQLite worker; synthetic run without D-Bus, ${SYNTHETIC_S} s) ~${syn.perK.toFixed(1)} ms ` +
          `and node-ble + dbus-next ~${(hi.gwPerK - ours).toFixed(1)} ms (${pct((hi.gwPerK - ours) / hi.gwPerK)})`,
      );
    }
    const single: [string, number][] = [
      ['dbus-daemon', hi.daemonCore ?? 0],
      ['the emulator (fake BlueZ on dbus-next)', hi.childElu],
      ['the gateway event loop (node-ble / dbus-next + our code)', hi.gwElu],
    ];
    const busiest = single.sort((x, y) => y[1] - x[1])[0];
    if (busiest !== undefined) console.log(`  busiest single thread: ${busiest[0]} at ${pct(busiest[1])}${busiest[1] >= 0.9 ? ' (saturated)' : ''}; machine ${pct(hi.machineBusy)} busy over ${availableParallelism()} cores`);
  }
} catch (e) {
  console.error(e instanceof Error ? (e.stack ?? e.message) : e);
  process.exitCode = 1;
} finally {
  for (const c of children) c.kill('SIGKILL');
  rmSync(workDir, { recursive: true, force: true });
}

