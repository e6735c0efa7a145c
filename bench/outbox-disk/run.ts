/*
 * Disk bytes written per reading by the SQLite outbox over a full cycle (open, insert in group
 * commits, send = peek + recordBatch + ack in packer-sized batches, close with its checkpoint),
 * against a raw append of the same readings' JSON with fdatasync after each batch of the same
 * size. Bytes come from /proc/self/io: `write_bytes` is what this process caused to be sent to
 * the block layer (counted when a page cache page is dirtied, so it needs no sync to show up);
 * the outbox's SQLite runs in a worker thread of this process, so it is included. `wchar` is the
 * bytes handed to write(2) and friends, for context.
 *
 *   npm run bench:outbox-disk                       # build, then the default run (~20 s)
 *   node dist/bench/outbox-disk/run.js --readings 1000000 --batch 1000 --dir /mnt/sdcard
 *   node dist/bench/outbox-disk/run.js --help
 */
import { closeSync, existsSync, fdatasyncSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { outboxDefaults, SqliteOutbox } from '../../gateway/src/adapters/sqlite-outbox.js';
import { forwarderDefaults } from '../../gateway/src/app/forwarder.js';
import { planBatch, type PackerSettings } from '../../gateway/src/app/packer.js';
import type { TelemetryEncoding } from '../../gateway/src/contract/telemetry.js';
import type { Reading, Sample } from '../../sensors/contract/reading.js';
import { digest, READING_SET_SHA256, READING_SET_SIZE, readingSet } from '../outbox/readings.js';
import { fileSystemOf } from './fs-kind.js';
import { positiveInt } from '../args.js';

const USAGE = `usage: node dist/bench/outbox-disk/run.js [options]
  --readings N       readings through the cycle (default 200000)
  --batch B          readings per insert commit, and per fdatasync in the baseline (default 500)
  --budget-units U   packer budget of the send phase's batches, 4 KB units (default 16)
  --encoding E       json | json+gzip, for the send phase's batches (default json+gzip)
  --peek-rows P      rows peeked per batch, as the forwarder does (default ${forwarderDefaults.peekRows})
  --synchronous S    FULL | NORMAL (default FULL, the outbox's default)
  --vacuum-threshold-pages V   the outbox's vacuumThresholdPages (default ${outboxDefaults.vacuumThresholdPages}); diagnosis only
  --wal-autocheckpoint-pages W the outbox's walAutocheckpointPages (default ${outboxDefaults.walAutocheckpointPages}); diagnosis only
  --dir DIR          where the files go; must not be tmpfs (default the OS temp dir)`;

const GATEWAY_ID = 'bench-gw';
/** The default 64 MiB bound would evict at larger --readings; the cycle must not evict. */
const MAX_BYTES = 16 * 1024 ** 3;

interface Config {
  readings: number;
  batch: number;
  packer: PackerSettings;
  peekRows: number;
  synchronous: 'FULL' | 'NORMAL';
  vacuumThresholdPages: number;
  walAutocheckpointPages: number;
  dir: string;
}

function parseConfig(argv: string[]): Config | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      readings: { type: 'string' },
      batch: { type: 'string' },
      'budget-units': { type: 'string' },
      encoding: { type: 'string' },
      'peek-rows': { type: 'string' },
      synchronous: { type: 'string' },
      'vacuum-threshold-pages': { type: 'string' },
      'wal-autocheckpoint-pages': { type: 'string' },
      dir: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) return undefined;
  const encoding = values.encoding ?? 'json+gzip';
  if (encoding !== 'json' && encoding !== 'json+gzip') throw new Error(`unknown encoding "${encoding}" (json or json+gzip)`);
  const synchronous = values.synchronous ?? 'FULL';
  if (synchronous !== 'FULL' && synchronous !== 'NORMAL') throw new Error(`--synchronous must be FULL or NORMAL, got "${synchronous}"`);
  return {
    readings: positiveInt('readings', values.readings, 200_000),
    batch: positiveInt('batch', values.batch, 500),
    packer: { gatewayId: GATEWAY_ID, encoding: encoding satisfies TelemetryEncoding, budgetUnits: positiveInt('budget-units', values['budget-units'], 16) },
    peekRows: positiveInt('peek-rows', values['peek-rows'], forwarderDefaults.peekRows),
    synchronous,
    vacuumThresholdPages: positiveInt('vacuum-threshold-pages', values['vacuum-threshold-pages'], outboxDefaults.vacuumThresholdPages),
    walAutocheckpointPages: positiveInt('wal-autocheckpoint-pages', values['wal-autocheckpoint-pages'], outboxDefaults.walAutocheckpointPages),
    dir: resolve(values.dir ?? tmpdir()),
  };
}

/** This process's I/O counters (all threads, the outbox worker included). */
interface Io {
  wchar: number;
  syscw: number;
  writeBytes: number;
  cancelledWriteBytes: number;
}

function readIo(): Io {
  const fields = new Map<string, number>();
  for (const line of readFileSync('/proc/self/io', 'utf8').split('\n')) {
    const [k, v] = line.split(':');
    if (k !== undefined && v !== undefined) fields.set(k.trim(), Number(v));
  }
  const get = (k: string): number => {
    const v = fields.get(k);
    if (v === undefined || !Number.isFinite(v)) throw new Error(`/proc/self/io has no ${k}`);
    return v;
  };
  return { wchar: get('wchar'), syscw: get('syscw'), writeBytes: get('write_bytes'), cancelledWriteBytes: get('cancelled_write_bytes') };
}

interface Phase {
  name: string;
  io: Io;
  ms: number;
  note: string;
}

async function measure(name: string, fn: () => Promise<string | void> | string | void): Promise<Phase> {
  const before = readIo();
  const t0 = performance.now();
  const note = (await fn()) ?? '';
  const ms = performance.now() - t0;
  const after = readIo();
  return {
    name,
    ms,
    note,
    io: {
      wchar: after.wchar - before.wchar,
      syscw: after.syscw - before.syscw,
      writeBytes: after.writeBytes - before.writeBytes,
      cancelledWriteBytes: after.cancelledWriteBytes - before.cancelledWriteBytes,
    },
  };
}

const sumIo = (phases: readonly Phase[]): Io =>
  phases.reduce<Io>(
    (s, p) => ({
      wchar: s.wchar + p.io.wchar,
      syscw: s.syscw + p.io.syscw,
      writeBytes: s.writeBytes + p.io.writeBytes,
      cancelledWriteBytes: s.cancelledWriteBytes + p.io.cancelledWriteBytes,
    }),
    { wchar: 0, syscw: 0, writeBytes: 0, cancelledWriteBytes: 0 },
  );

function fileSizes(path: string): { db: number; wal: number; shm: number } {
  const size = (p: string): number => (existsSync(p) ? statSync(p).size : 0);
  return { db: size(path), wal: size(`${path}-wal`), shm: size(`${path}-shm`) };
}

const fmt = (n: number, digits = 0): string => n.toLocaleString('en', { minimumFractionDigits: digits, maximumFractionDigits: digits });
const mb = (n: number): string => `${fmt(n / 1e6, 2)} MB`;

/** The outbox through one full cycle in `dir`; every phase measured apart. */
async function outboxCycle(cfg: Config, samples: readonly Sample[], dir: string): Promise<{ phases: Phase[]; payload: number; sizes: string[] }> {
  const path = join(dir, 'outbox.db');
  const sizes: string[] = [];
  const showSizes = (when: string): void => {
    const s = fileSizes(path);
    sizes.push(`${when.padEnd(24)} db ${mb(s.db)}, wal ${mb(s.wal)}, shm ${mb(s.shm)}`);
  };
  let outbox: SqliteOutbox | undefined;
  let payload = 0;
  const phases: Phase[] = [];
  try {
    phases.push(
      await measure('open (create file, schema)', async () => {
        // Commits come from maxBatchRows only: each awaited append of `batch` rows is one group commit.
        outbox = await SqliteOutbox.open({ path, commitIntervalMs: 3_600_000, maxBatchRows: cfg.batch, maxBytes: MAX_BYTES,
          synchronous: cfg.synchronous,
          vacuumThresholdPages: cfg.vacuumThresholdPages,
          walAutocheckpointPages: cfg.walAutocheckpointPages,
        });
      }),
    );
    const ob = outbox;
    if (ob === undefined) throw new Error('outbox did not open');
    phases.push(
      await measure(`insert (commits of ${fmt(cfg.batch)})`, async () => {
        for (let at = 0; at < samples.length; at += cfg.batch) await ob.append(samples.slice(at, at + cfg.batch));
        const s = await ob.stats();
        if (s.depth !== samples.length || s.counters.evicted !== 0) throw new Error(`after insert: depth ${s.depth}, evicted ${s.counters.evicted}`);
        payload = s.bytes;
        return `${fmt(s.commits)} commits, incl. passive autocheckpoints`;
      }),
    );
    showSizes('after insert');
    let batches = 0;
    phases.push(
      await measure('send (peek, record, ack)', async () => {
        // write_bytes of each kind of call, summed: which transactions the bytes come from.
        const by = { peek: 0, record: 0, ack: 0 };
        const counted = async <T>(what: keyof typeof by, call: () => Promise<T>): Promise<T> => {
          const before = readIo().writeBytes;
          const result = await call();
          by[what] += readIo().writeBytes - before;
          return result;
        };
        for (;;) {
          const { rows } = await counted('peek', () => ob.peek(cfg.peekRows));
          if (rows.length === 0) break;
          const { plan } = planBatch(rows, cfg.packer);
          const first = plan.rowIds[0] ?? 0;
          await counted('record', () => ob.recordBatch({ messageId: plan.messageId, firstId: first, lastId: plan.rowIds.at(-1) ?? first, rowCount: plan.rowIds.length, plan }));
          const acked = await counted('ack', () => ob.ack(plan.rowIds));
          if (acked !== plan.rowIds.length) throw new Error(`ack deleted ${acked} of ${plan.rowIds.length} rows`);
          batches++;
        }
        const s = await ob.stats();
        if (s.depth !== 0 || s.counters.sent !== samples.length) throw new Error(`after send: depth ${s.depth}, sent ${s.counters.sent}`);
        const per = (b: number): string => fmt(b / samples.length, 1);
        return `${fmt(batches)} batches of ~${fmt(samples.length / batches)} rows; B/reading from peek ${per(by.peek)}, recordBatch ${per(by.record)}, ack ${per(by.ack)} (ack includes the vacuum + TRUNCATE checkpoint on drain)`;
      }),
    );
    showSizes('after send (empty)');
    phases.push(
      await measure('close (final checkpoint)', async () => {
        await ob.close();
        outbox = undefined;
      }),
    );
    showSizes('after close');
    return { phases, payload, sizes };
  } finally {
    await outbox?.close().catch(() => undefined);
  }
}

/** The same readings' JSON appended to a plain file, fdatasync after every `batch`. */
async function rawAppend(cfg: Config, readings: readonly Reading[], dir: string): Promise<{ phase: Phase; payload: number; size: number }> {
  const path = join(dir, 'raw.log');
  let payload = 0;
  const phase = await measure(`append + fdatasync per ${fmt(cfg.batch)}`, () => {
    const fd = openSync(path, 'a');
    try {
      for (let at = 0; at < readings.length; at += cfg.batch) {
        const lines = readings.slice(at, at + cfg.batch).map((r) => JSON.stringify(r));
        payload += lines.reduce((s, l) => s + Buffer.byteLength(l), 0);
        writeSync(fd, `${lines.join('\n')}\n`);
        fdatasyncSync(fd);
      }
    } finally {
      closeSync(fd);
    }
    return `${fmt(Math.ceil(readings.length / cfg.batch))} fdatasyncs`;
  });
  return { phase, payload, size: statSync(path).size };
}

/** What a fresh outbox stores for these samples: `seq` per source from 1. */
function withSeqs(samples: readonly Sample[]): Reading[] {
  const seqs = new Map<string, number>();
  return samples.map((s) => {
    const seq = (seqs.get(s.source) ?? 0) + 1;
    seqs.set(s.source, seq);
    return { ...s, seq };
  });
}

function row(name: string, io: Io, n: number, ms: number | undefined, note = ''): string {
  return [
    name.padEnd(30),
    fmt(io.writeBytes).padStart(13),
    fmt(io.writeBytes / n, 1).padStart(9),
    fmt(io.cancelledWriteBytes).padStart(11),
    fmt(io.wchar).padStart(13),
    fmt(io.wchar / n, 1).padStart(9),
    fmt(io.syscw).padStart(8),
    (ms === undefined ? '' : fmt(ms / 1000, 2)).padStart(7),
    note ? `  ${note}` : '',
  ].join(' ');
}

const HEADER = `${'phase'.padEnd(30)} ${'write_bytes'.padStart(13)} ${'B/reading'.padStart(9)} ${'cancelled'.padStart(11)} ${'wchar'.padStart(13)} ${'B/reading'.padStart(9)} ${'syscw'.padStart(8)} ${'s'.padStart(7)}`;

async function main(): Promise<number> {
  const cfg = parseConfig(process.argv.slice(2));
  if (!cfg) {
    console.log(USAGE);
    return 0;
  }
  readIo(); // fail early where there is no /proc/self/io
  const fs = fileSystemOf(cfg.dir);
  if (fs.ramBacked) throw new Error(`${cfg.dir} is on ${fs.type}, which never writes to a block device: pass --dir on a real file system`);
  const samples = readingSet(cfg.readings);
  // The generator is sequential, so the first READING_SET_SIZE readings are the pinned set.
  const sha = digest(samples.length >= READING_SET_SIZE ? samples.slice(0, READING_SET_SIZE) : readingSet());
  if (sha !== READING_SET_SHA256) throw new Error(`reading set digest ${sha} differs from the pinned ${READING_SET_SHA256}: the generator changed`);
  const readings = withSeqs(samples);

  const dir = mkdtempSync(join(cfg.dir, 'fieldlink-outbox-disk-'));
  const cleanup = (): void => rmSync(dir, { recursive: true, force: true });
  process.once('exit', cleanup);
  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    process.once(signal, () => {
      cleanup();
      process.exit(code);
    });
  }
  try {
    const cycle = await outboxCycle(cfg, samples, dir);
    const raw = await rawAppend(cfg, readings, dir);
    const n = cfg.readings;
    const total = sumIo(cycle.phases);
    const totalMs = cycle.phases.reduce((s, p) => s + p.ms, 0);

    const tuned = cfg.vacuumThresholdPages !== outboxDefaults.vacuumThresholdPages || cfg.walAutocheckpointPages !== outboxDefaults.walAutocheckpointPages;
    console.log(`\noutbox-disk: ${fmt(n)} readings, commits of ${fmt(cfg.batch)}, synchronous=${cfg.synchronous}${tuned ? ` (NOT the defaults: vacuumThresholdPages ${cfg.vacuumThresholdPages}, walAutocheckpointPages ${cfg.walAutocheckpointPages})` : ''}, send batches: ${cfg.packer.encoding} ${cfg.packer.budgetUnits} units from ${fmt(cfg.peekRows)} peeked rows`);
    console.log(`dir ${cfg.dir} (${fs.type} on ${fs.source}, mounted at ${fs.mountPoint}), node ${process.version}, ${new Date().toISOString()}`);
    console.log(`payload: ${fmt(cycle.payload / n, 1)} B/reading stored by the outbox (sum of row sizes), ${fmt(raw.payload / n, 1)} B/reading of JSON in the raw file (+1 newline)\n`);
    console.log(HEADER);
    for (const p of cycle.phases) console.log(row(`outbox ${p.name}`, p.io, n, p.ms, p.note));
    console.log(row('outbox total', total, n, totalMs));
    console.log(row(`raw ${raw.phase.name}`, raw.phase.io, n, raw.phase.ms, raw.phase.note));
    const ratio = total.writeBytes / raw.phase.io.writeBytes;
    console.log(`\noutbox total / raw append (write_bytes): ${fmt(ratio, 2)}; outbox write_bytes per payload byte ${fmt(total.writeBytes / cycle.payload, 2)}, raw ${fmt(raw.phase.io.writeBytes / raw.payload, 2)}`);
    console.log('\nfiles:');
    for (const s of cycle.sizes) console.log(`  ${s}`);
    console.log(`  raw file                 ${mb(raw.size)}`);
    console.log('\nwrite_bytes: page-cache pages this process dirtied (4 KiB each time a clean page becomes dirty), i.e. bytes bound for the block device;');
    console.log('ext4 journal and metadata writes by kernel threads are not included. cancelled = dirty bytes dropped by truncate/unlink before writeback.');
    return 0;
  } finally {
    cleanup();
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  },
);
