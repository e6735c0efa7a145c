/*
 * Outbox ingest benchmark (docs/outbox.md, "Measured cost"). In one run:
 *  1. Throughput: the fixed reading set through SqliteOutbox (worker thread, group commits of
 *     --batch rows) against bare better-sqlite3 inserting the same rows, same schema, same
 *     pragmas and commit size on the main thread. Wall-clock ratio printed, and the CPU time of
 *     the whole process (all threads) per reading for both.
 *  2. Event-loop delay (perf_hooks.monitorEventLoopDelay) while ingesting --rate readings/s
 *     and draining (peek + ack every 100 ms), through the outbox and through the same work done
 *     inline on the event loop with better-sqlite3: this is the case for the worker thread.
 *
 *   npm run build && node dist/bench/outbox/run.js [--dir /mnt/sd] [--seconds 5] [--rate 2000]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { SqliteOutbox } from '../../gateway/src/adapters/sqlite-outbox.js';
import type { Reading, Sample } from '../../sensors/contract/reading.js';
import { digest, READING_SET_SHA256, readingSet } from './readings.js';

const { values: args } = parseArgs({
  options: {
    dir: { type: 'string' },
    batch: { type: 'string', default: '500' },
    seconds: { type: 'string', default: '5' },
    rate: { type: 'string', default: '2000' },
    interval: { type: 'string', default: '500' },
    synchronous: { type: 'string', default: 'FULL' },
  },
});
const batch = Number(args.batch);
const seconds = Number(args.seconds);
const rate = Number(args.rate);
const commitIntervalMs = Number(args.interval);
const synchronous = args.synchronous === 'NORMAL' ? 'NORMAL' : 'FULL';
const baseDir = args.dir ?? tmpdir();

const samples = readingSet();
const sha = digest(samples);
if (sha !== READING_SET_SHA256) {
  console.error(`reading set digest ${sha} differs from the pinned ${READING_SET_SHA256}: the generator changed`);
  process.exitCode = 1;
}

/** The adapter's schema and pragmas, reproduced for the bare baseline. */
function bareDb(path: string): Database.Database {
  const db = new Database(path);
  db.pragma('auto_vacuum = INCREMENTAL');
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${synchronous}`);
  db.exec(`
    CREATE TABLE readings (id INTEGER PRIMARY KEY AUTOINCREMENT, alarm INTEGER NOT NULL, size INTEGER NOT NULL, enq_ms INTEGER NOT NULL, body TEXT NOT NULL);
    CREATE INDEX readings_alarm_id ON readings (alarm, id);
  `);
  return db;
}

function bareInserter(db: Database.Database): (group: readonly Sample[]) => void {
  const insert = db.prepare('INSERT INTO readings (alarm, size, enq_ms, body) VALUES (?, ?, ?, ?)');
  const seqs = new Map<string, number>();
  return db.transaction((group: readonly Sample[]) => {
    const now = Math.floor(performance.now());
    for (const s of group) {
      const seq = (seqs.get(s.source) ?? 0) + 1;
      seqs.set(s.source, seq);
      const body = JSON.stringify({ ...s, seq } satisfies Reading);
      insert.run(s.flags.alarm === true ? 1 : 0, Buffer.byteLength(body), now, body);
    }
  });
}

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

async function withDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(baseDir, 'fieldlink-outbox-bench-'));
  try {
    return await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Readings/s (wall clock) and CPU time of the whole process (every thread) per reading, in µs. */
interface Throughput {
  rate: number;
  cpuUs: number;
}

function measured(ms: number, cpu: NodeJS.CpuUsage): Throughput {
  return { rate: (samples.length / ms) * 1000, cpuUs: (cpu.user + cpu.system) / samples.length };
}

async function throughputOutbox(): Promise<Throughput> {
  return withDir(async (dir) => {
    // A long interval: commits happen only when `batch` rows are waiting, as in the baseline.
    const outbox = await SqliteOutbox.open({ path: join(dir, 'o.db'), commitIntervalMs: 60_000, maxBatchRows: batch, synchronous, minFreeBytes: 0 });
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    await Promise.all(chunks(samples, batch).map((c) => outbox.append(c)));
    const ms = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    const stats = await outbox.stats();
    await outbox.close();
    if (stats.depth !== samples.length || stats.commits !== Math.ceil(samples.length / batch)) throw new Error(`unexpected outbox state ${JSON.stringify(stats)}`);
    return measured(ms, cpu);
  });
}

async function throughputBare(): Promise<Throughput> {
  return withDir(async (dir) => {
    const db = bareDb(join(dir, 'b.db'));
    const insert = bareInserter(db);
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    for (const c of chunks(samples, batch)) insert(c);
    const ms = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    db.close();
    return measured(ms, cpu);
  });
}

interface LoopDelay {
  p50: number;
  p99: number;
  max: number;
  ingested: number;
  drained: number;
}

/** Feeds `rate` readings/s in 10 ms ticks for `seconds`, draining every 100 ms; measures the loop. */
async function loopDelay(sink: {
  append: (s: readonly Sample[]) => Promise<unknown> | void;
  drain: () => Promise<number> | number;
  finish: () => Promise<void> | void;
}): Promise<LoopDelay> {
  const h = monitorEventLoopDelay({ resolution: 1 });
  const perTick = rate / 100;
  let at = 0;
  let drained = 0;
  let ingested = 0;
  const writes: Promise<unknown>[] = [];
  h.enable();
  const t0 = performance.now();
  await new Promise<void>((resolve) => {
    const feed = setInterval(() => {
      const due = Math.floor(((performance.now() - t0) / 1000) * rate) - ingested;
      const n = Math.max(0, Math.min(due, perTick * 5));
      const group: Sample[] = [];
      for (let i = 0; i < n; i++) group.push(samples[at++ % samples.length] as Sample);
      ingested += n;
      const p = sink.append(group);
      if (p !== undefined) writes.push(p);
    }, 10);
    const drain = setInterval(() => {
      void Promise.resolve(sink.drain()).then((n) => (drained += n));
    }, 100);
    setTimeout(() => {
      clearInterval(feed);
      clearInterval(drain);
      resolve();
    }, seconds * 1000);
  });
  h.disable();
  await Promise.all(writes);
  await sink.finish();
  const ms = (ns: number) => Math.round((ns / 1e6) * 100) / 100;
  return { p50: ms(h.percentile(50)), p99: ms(h.percentile(99)), max: ms(h.max), ingested, drained };
}

async function loopOutbox(): Promise<LoopDelay> {
  return withDir(async (dir) => {
    const outbox = await SqliteOutbox.open({ path: join(dir, 'o.db'), commitIntervalMs, synchronous, minFreeBytes: 0 });
    return loopDelay({
      append: (s) => (s.length === 0 ? undefined : outbox.append(s)),
      drain: async () => outbox.ack((await outbox.peek(1000)).rows.map((r) => r.id)),
      finish: () => outbox.close(),
    });
  });
}

/** How long each inline group commit held the event loop, in ms. */
const commitMs: number[] = [];

async function loopInline(): Promise<LoopDelay> {
  return withDir(async (dir) => {
    const db = bareDb(join(dir, 'b.db'));
    const insert = bareInserter(db);
    const peek = db.prepare('SELECT id, body FROM readings ORDER BY id LIMIT 1000');
    const del = db.prepare('DELETE FROM readings WHERE id = ?');
    const ack = db.transaction((ids: number[]) => ids.forEach((id) => del.run(id)));
    let pending: Sample[] = [];
    const commit = setInterval(() => {
      const t0 = performance.now();
      insert(pending);
      commitMs.push(performance.now() - t0);
      pending = [];
    }, commitIntervalMs);
    return loopDelay({
      append: (s) => void pending.push(...s),
      drain: () => {
        const rows = peek.all() as { id: number; body: string }[];
        rows.forEach((r) => JSON.parse(r.body));
        ack(rows.map((r) => r.id));
        return rows.length;
      },
      finish: () => {
        clearInterval(commit);
        db.close();
      },
    });
  });
}

// Interleaved repeats (the first pair also warms up the JIT); medians printed, and the ratio of
// each pair, since this shared machine's noise moves single runs by tens of percent.
const REPEATS = 5;
const outboxRuns: Throughput[] = [];
const bareRuns: Throughput[] = [];
for (let r = 0; r < REPEATS; r++) {
  outboxRuns.push(await throughputOutbox());
  bareRuns.push(await throughputBare());
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const outboxRate = median(outboxRuns.map((r) => r.rate));
const bareRate = median(bareRuns.map((r) => r.rate));
const outboxCpu = median(outboxRuns.map((r) => r.cpuUs));
const bareCpu = median(bareRuns.map((r) => r.cpuUs));
const pairs = (f: (o: Throughput, b: Throughput) => number) => outboxRuns.map((o, i) => f(o, bareRuns[i] as Throughput).toFixed(2)).join(' ');
console.log(`reading set: ${samples.length} readings, sha256 ${sha.slice(0, 16)}…, dir ${baseDir}, synchronous=${synchronous}`);
console.log(`throughput (commit every ${batch} rows, median of ${REPEATS} interleaved runs; each pair's ratio in parentheses):`);
console.log(`  SqliteOutbox (worker)      ${Math.round(outboxRate).toLocaleString('en')} readings/s`);
console.log(`  bare better-sqlite3        ${Math.round(bareRate).toLocaleString('en')} readings/s`);
console.log(`  outbox / bare              ${(outboxRate / bareRate).toFixed(2)}  (${pairs((o, b) => o.rate / b.rate)})`);
// Wall-clock throughput flatters the outbox once its two threads overlap work that the bare
// loop does one after the other; CPU time over all threads is the cost of the layer itself.
console.log(`CPU time of the process, all threads, per reading:`);
console.log(`  SqliteOutbox (worker)      ${outboxCpu.toFixed(2)} µs`);
console.log(`  bare better-sqlite3        ${bareCpu.toFixed(2)} µs`);
console.log(`  outbox / bare              ${(outboxCpu / bareCpu).toFixed(2)}  (${pairs((o, b) => o.cpuUs / b.cpuUs)})`);
const viaWorker = await loopOutbox();
const inline = await loopInline();
console.log(`event-loop delay, ${rate} readings/s for ${seconds} s, commit every ${commitIntervalMs} ms, drain every 100 ms:`);
for (const [name, r] of [['SqliteOutbox (worker)', viaWorker], ['inline better-sqlite3', inline]] as const) {
  console.log(`  ${name.padEnd(24)} p50 ${r.p50} ms  p99 ${r.p99} ms  max ${r.max} ms  (ingested ${r.ingested}, drained ${r.drained})`);
}
const sorted = [...commitMs].sort((a, b) => a - b);
const at = (q: number) => (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN).toFixed(2);
console.log(`  inline group commit (~${(rate * commitIntervalMs) / 1000} rows + fsync) held the loop: p50 ${at(0.5)} ms, max ${at(1)} ms over ${sorted.length} commits`);
