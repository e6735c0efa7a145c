import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import t, { type Test } from 'tap';
import { FakeClock } from '../../../common/clock.js';
import { isFieldlinkError } from '../../../common/errors.js';
import { SqliteOutbox, type SqliteOutboxOptions } from '../../../gateway/src/adapters/sqlite-outbox.js';
import type { Sample } from '../../../sensors/contract/reading.js';
import { within } from '../../helpers/deadline.js';
import { appendNow, outboxContract, sample } from '../ports/outbox-contract.js';

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-outbox-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Opens an outbox in `dir` on a FakeClock; closed in teardown (closing twice is harmless). The
 * worker skips tap's preloads, which would add over a second to every open.
 */
async function openOutbox(t: Test, opts: Partial<SqliteOutboxOptions> & { dir?: string } = {}): Promise<SqliteOutbox> {
  const { dir = tempDir(t), ...rest } = opts;
  const outbox = await within(5000, 'open', SqliteOutbox.open({ path: join(dir, 'outbox.db'), clock: new FakeClock(), minFreeBytes: 0, workerExecArgv: ['--enable-source-maps'], ...rest }));
  t.teardown(() => outbox.close());
  return outbox;
}

function fileBytes(path: string): number {
  let total = 0;
  for (const f of [path, `${path}-wal`, `${path}-shm`]) {
    try {
      total += statSync(f).size;
    } catch {
      // absent after a clean close
    }
  }
  return total;
}

outboxContract(t, 'SqliteOutbox', (t) => openOutbox(t), async (t) => {
  const dir = tempDir(t);
  let current = await openOutbox(t, { dir });
  const reopen = async () => {
    await current.close();
    current = await openOutbox(t, { dir });
    return current;
  };
  return { outbox: current, reopen };
});

t.test('the file is WAL, incremental auto-vacuum, AUTOINCREMENT, versioned', async (t) => {
  const dir = tempDir(t);
  const outbox = await openOutbox(t, { dir });
  await appendNow(outbox, [sample('a', 1)]);
  await outbox.close();
  const db = new Database(join(dir, 'outbox.db'), { readonly: true });
  t.teardown(() => db.close());
  t.equal(db.pragma('journal_mode', { simple: true }), 'wal');
  t.equal(db.pragma('auto_vacuum', { simple: true }), 2, 'incremental');
  t.equal(db.pragma('user_version', { simple: true }), 2);
  t.match(db.prepare("SELECT sql FROM sqlite_schema WHERE name = 'readings'").pluck().get(), /AUTOINCREMENT/);
});

t.test('a version 1 file is migrated to version 2 (batch records), keeping its rows', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'outbox.db');
  const v1 = new Database(path);
  v1.pragma('auto_vacuum = INCREMENTAL');
  v1.pragma('journal_mode = WAL');
  v1.exec(`
    CREATE TABLE readings (id INTEGER PRIMARY KEY AUTOINCREMENT, alarm INTEGER NOT NULL, size INTEGER NOT NULL, enq_ms INTEGER NOT NULL, body TEXT NOT NULL);
    CREATE INDEX readings_alarm_id ON readings (alarm, id);
    CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE source_seq (source TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
  `);
  const body = JSON.stringify({ ...sample('a', 1), seq: 1 });
  v1.prepare('INSERT INTO readings (alarm, size, enq_ms, body) VALUES (0, ?, 0, ?)').run(Buffer.byteLength(body), body);
  v1.exec("INSERT INTO source_seq VALUES ('a', 1)");
  v1.pragma('user_version = 1');
  v1.close();
  const outbox = await openOutbox(t, { dir });
  const { rows } = await outbox.peek(10);
  t.same(rows.map((r) => [r.id, r.reading.seq]), [[1, 1]], 'the row is kept');
  await outbox.recordBatch({ messageId: 'm', firstId: 1, lastId: 1, rowCount: 1, plan: { x: 1 } });
  t.same(await outbox.pendingBatches(), [{ messageId: 'm', firstId: 1, lastId: 1, rowCount: 1, plan: { x: 1 } }]);
  t.same((await appendNow(outbox, [sample('a', 2)])).map((r) => r.seq), [2]);
  await outbox.close();
  const db = new Database(path, { readonly: true });
  t.teardown(() => db.close());
  t.equal(db.pragma('user_version', { simple: true }), 2);
});

t.test('a file from a newer version is refused', async (t) => {
  const dir = tempDir(t);
  const db = new Database(join(dir, 'outbox.db'));
  db.pragma('user_version = 3');
  db.close();
  const e = await SqliteOutbox.open({ path: join(dir, 'outbox.db'), workerExecArgv: ['--enable-source-maps'], minFreeBytes: 0 }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(isFieldlinkError(e, 'OUTBOX_STORE_FAILED'), String(e));
});

t.test('a file that cannot be opened fails with OUTBOX_STORE_FAILED and leaves no worker behind', async (t) => {
  const dir = tempDir(t);
  const e = await SqliteOutbox.open({ path: join(dir, 'missing', 'outbox.db'), workerExecArgv: [] }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(isFieldlinkError(e, 'OUTBOX_STORE_FAILED'), String(e));
});

t.test('row ids never repeat, even after acking the newest row and reopening', async (t) => {
  const dir = tempDir(t);
  const first = await openOutbox(t, { dir });
  await appendNow(first, [sample('a', 1), sample('a', 2), sample('a', 3)]);
  const ids = (await first.peek(10)).rows.map((r) => r.id);
  await first.ack(ids);
  await first.close();
  const second = await openOutbox(t, { dir });
  await appendNow(second, [sample('a', 4)]);
  const [row] = (await second.peek(10)).rows;
  t.equal(row?.id, Math.max(...ids) + 1);
});

t.test('seq per source keeps increasing across close and reopen, also when drained', async (t) => {
  const dir = tempDir(t);
  const first = await openOutbox(t, { dir });
  await appendNow(first, [sample('a', 1), sample('a', 2), sample('b', 3)]);
  await first.ack((await first.peek(10)).rows.map((r) => r.id));
  await first.close();
  const second = await openOutbox(t, { dir });
  const readings = await appendNow(second, [sample('a', 4), sample('b', 5), sample('c', 6)]);
  t.same(readings.map((r) => `${r.source}:${r.seq}`), ['a:3', 'b:2', 'c:1']);
  const stats = await second.stats();
  t.same(stats.counters, { appended: 6, sent: 3, evicted: 0, evictedAlarms: 0, expired: 0 }, 'counters persisted');
});

t.test('a row stores the reading as JSON with seq last and its UTF-8 size; a sample that cannot be serialised fails only its own append', async (t) => {
  const dir = tempDir(t);
  const outbox = await openOutbox(t, { dir });
  const samples: Sample[] = [
    { source: 'ble:AA:01/température', kind: 'skin_temperature', value: 33.25, unit: '°C\n"x"', ts: 1_700_000_000_123, deviceSeq: 7, flags: { alarm: true } },
    { source: 'ble:AA:01/température', kind: 'skin_temperature', value: -0.5, unit: 'Cel', ts: 12, flags: { clockUnsynced: true }, bootId: 'b-1' },
    { ...sample('a', 1), seq: 99 } as Sample,
  ];
  const bad = outbox.append([sample('a', 2), { ...sample('a', 3), value: 1n as unknown as number }]).then(() => undefined, (e: unknown) => e);
  const good = outbox.append(samples);
  await outbox.flush();
  t.type(await bad, TypeError, 'the unserialisable append rejects');
  const readings = await good;
  t.same(readings.map((r) => r.seq), [1, 2, 1], 'its neighbours commit; the bad append took no seq');
  await outbox.close();
  const db = new Database(join(dir, 'outbox.db'), { readonly: true });
  t.teardown(() => db.close());
  const rows = db.prepare('SELECT alarm, size, body FROM readings ORDER BY id').all() as { alarm: number; size: number; body: string }[];
  const { seq: _, ...third } = samples[2] as Sample & { seq: number };
  const expected = [{ ...samples[0], seq: 1 }, { ...samples[1], seq: 2 }, { ...third, seq: 1 }].map((r) => JSON.stringify(r));
  t.same(rows.map((r) => r.body), expected, 'JSON.stringify({ ...sample, seq }); a seq passed in is replaced');
  t.same(rows.map((r) => r.size), expected.map((b) => Buffer.byteLength(b)), 'size in UTF-8 bytes');
  t.same(rows.map((r) => r.alarm), [1, 0, 0]);
});

t.test('group commit: appends resolve only when their group commits, many appends share one commit', async (t) => {
  const clock = new FakeClock();
  const outbox = await openOutbox(t, { clock, commitIntervalMs: 500, maxBatchRows: 1000 });
  let resolved = 0;
  const appends = Array.from({ length: 50 }, (_, i) => outbox.append([sample(`s${i % 3}`, i)]).then((r) => ((resolved += 1), r)));
  await new Promise((r) => setTimeout(r, 50));
  t.equal(resolved, 0, 'nothing resolves before the interval');
  t.equal((await outbox.peek(100)).rows.length, 0, 'nothing committed yet');
  t.equal((await outbox.stats()).pending, 50);
  await clock.advance(499);
  await new Promise((r) => setTimeout(r, 50));
  t.equal(resolved, 0, 'still nothing at 499 ms');
  await clock.advance(1);
  const readings = (await within(5000, 'group commit', Promise.all(appends))).flat();
  t.equal(readings.length, 50);
  const stats = await outbox.stats();
  t.equal(stats.commits, 1, 'one transaction for 50 appends');
  t.equal(stats.depth, 50);
  t.equal(stats.pending, 0);
  t.same(readings.filter((r) => r.source === 's0').map((r) => r.seq), Array.from({ length: 17 }, (_, i) => i + 1), 'seq in append order');
});

t.test('group commit: a full batch commits without waiting for the interval', async (t) => {
  const clock = new FakeClock();
  const outbox = await openOutbox(t, { clock, commitIntervalMs: 500, maxBatchRows: 10 });
  const first = outbox.append(Array.from({ length: 6 }, (_, i) => sample('a', i)));
  const second = outbox.append(Array.from({ length: 4 }, (_, i) => sample('a', i)));
  await within(5000, 'early commit', Promise.all([first, second]));
  t.equal((await outbox.stats()).commits, 1);
  const third = outbox.append([sample('a', 9)]);
  await clock.advance(500);
  t.same((await within(5000, 'timed commit', third)).map((r) => r.seq), [11]);
  t.equal((await outbox.stats()).commits, 2);
});

/** Samples whose stored JSON differs by at most one byte (`true` vs `false`). */
function uniform(source: string, value: number, alarm: boolean): Sample {
  return { source, kind: 'temperature', value, unit: 'Cel', ts: 1_700_000_000_000, flags: { alarm } };
}

t.test('when full, the oldest non-alarm readings go first, then the oldest alarms; all counted', async (t) => {
  const probe = await openOutbox(t);
  await appendNow(probe, [uniform('n', 1, false)]);
  const rowBytes = (await probe.stats()).bytes;
  const outbox = await openOutbox(t, { maxBytes: Math.floor(rowBytes * 4.5) });
  const steps: [string, boolean][] = [
    ['a1', true], ['n1', false], ['n2', false], ['a2', true], ['n3', false], ['n4', false], ['n5', false],
  ];
  for (const [name, alarm] of steps) await appendNow(outbox, [uniform(name[0] ?? '?', Number(name[1]), alarm)]);
  const names = async () => (await outbox.peek(100)).rows.map((r) => `${r.reading.source}${r.reading.value}`);
  t.same(await names(), ['a1', 'a2', 'n4', 'n5']);
  for (const v of [3, 4, 5]) await appendNow(outbox, [uniform('a', v, true)]);
  t.same(await names(), ['a2', 'a3', 'a4', 'a5'], 'non-alarms went first, then the oldest alarm');
  const stats = await outbox.stats();
  t.same(stats.counters, { appended: 10, sent: 0, evicted: 6, evictedAlarms: 1, expired: 0 });
  t.equal(stats.depth, 4);
  t.ok(stats.bytes <= rowBytes * 4.5);

  await outbox.ack((await outbox.peek(100)).rows.map((r) => r.id));
  await appendNow(outbox, Array.from({ length: 9 }, (_, i) => uniform('m', i + 1, false)));
  t.same(await names(), ['m6', 'm7', 'm8', 'm9'], 'one oversized group keeps its newest rows');
  t.equal((await outbox.stats()).counters.evicted, 11);
});

t.test('setLimits: a smaller byte bound applies from the next commit, in the usual eviction order', async (t) => {
  const probe = await openOutbox(t);
  await appendNow(probe, [uniform('n', 1, false)]);
  const rowBytes = (await probe.stats()).bytes;
  const outbox = await openOutbox(t, { maxBytes: rowBytes * 100 });
  for (const [name, alarm] of [['a', true], ['n', false], ['n', false], ['n', false]] as const) await appendNow(outbox, [uniform(name, 1, alarm)]);
  t.equal((await outbox.stats()).depth, 4, 'all fit under the first bound');
  await outbox.setLimits({ maxBytes: Math.floor(rowBytes * 2.5), minFreeBytes: 0, ttlMs: 3600_000, commitIntervalMs: 10 });
  t.equal((await outbox.stats()).depth, 4, 'nothing evicted until the next commit');
  await appendNow(outbox, [uniform('n', 2, false)]);
  const rows = (await outbox.peek(100)).rows.map((r) => `${r.reading.source}${r.reading.value}`);
  t.same(rows, ['a1', 'n2'], 'the oldest non-alarms went, the alarm stayed');
  t.equal((await outbox.stats()).counters.evicted, 3);
  await t.rejects(outbox.setLimits({ maxBytes: 0, minFreeBytes: 0, ttlMs: 1, commitIntervalMs: 1 }), RangeError, 'nonsense refused');
});

t.test('the free-disk watermark evicts what the disk is short of, read through statfs', async (t) => {
  const minFreeBytes = 1_000_000;
  let free = 100_000_000;
  const statfs = (path: string) => {
    t.type(path, 'string');
    return { bavail: free, bsize: 1 };
  };
  const outbox = await openOutbox(t, { minFreeBytes, statfs });
  await appendNow(outbox, Array.from({ length: 10 }, (_, i) => uniform(`src-${i}`, 1, false)));
  const rowBytes = (await outbox.stats()).bytes / 10;
  t.equal(rowBytes, Math.round(rowBytes), 'rows of one size');
  free = minFreeBytes - 3 * rowBytes;
  await appendNow(outbox, [uniform('src-a', 1, false)]);
  const stats = await outbox.stats();
  t.equal(stats.counters.evicted, 4, 'the 3-row shortfall and the new row');
  t.same((await outbox.peek(100)).rows.map((r) => r.reading.source), ['src-4', 'src-5', 'src-6', 'src-7', 'src-8', 'src-9', 'src-a']);
  free = 100_000_000;
  await appendNow(outbox, [uniform('src-b', 1, false)]);
  t.equal((await outbox.stats()).depth, 8, 'room again: nothing evicted');
});

t.test('TTL runs on the outbox clock: wall-clock jumps do not expire rows, restarts keep the age', async (t) => {
  const dir = tempDir(t);
  const clock = new FakeClock();
  const first = await openOutbox(t, { dir, clock, ttlMs: 60_000 });
  await appendNow(first, [sample('a', 1)]);
  await clock.advance(30_000);
  await appendNow(first, [sample('b', 2)]);
  clock.setWall(clock.now() + 365 * 24 * 3600_000);
  t.equal((await first.peek(10)).rows.length, 2, 'a year forward on the wall clock expires nothing');
  clock.setWall(0);
  t.equal((await first.peek(10)).rows.length, 2, 'back to 1970 neither');
  await clock.advance(30_001);
  t.same((await first.peek(10)).rows.map((r) => r.reading.source), ['b'], 'a is past 60 s on the outbox clock');
  t.equal((await first.stats()).counters.expired, 1);
  await first.close();

  // A new process: monotonic time starts from an unrelated origin.
  const later = new FakeClock({ monotonicMs: 9e9, wallMs: 0 });
  const second = await openOutbox(t, { dir, clock: later, ttlMs: 60_000 });
  t.equal((await second.stats()).oldestAgeMs, 30_001, 'age carried over the restart');
  await later.advance(29_998);
  t.equal((await second.peek(10)).rows.length, 1);
  await later.advance(2);
  t.equal((await second.peek(10)).rows.length, 0);
  t.equal((await second.stats()).counters.expired, 2);
});

t.test('the file stays small after filling and draining many rows', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'outbox.db');
  const outbox = await openOutbox(t, { dir });
  for (let b = 0; b < 20; b++) await appendNow(outbox, Array.from({ length: 1000 }, (_, i) => sample(`src-${i % 20}`, b * 1000 + i)));
  const full = fileBytes(path);
  t.ok(full > 1_000_000, `filled: ${full} bytes`);
  for (;;) {
    const { rows } = await outbox.peek(1500);
    if (rows.length === 0) break;
    await outbox.ack(rows.map((r) => r.id));
  }
  const drained = fileBytes(path);
  t.comment(`20,000 rows: ${full} bytes on disk full, ${drained} drained`);
  t.ok(drained < 128 * 1024, `drained: ${drained} bytes (db + wal + shm)`);
  t.equal((await outbox.stats()).counters.sent, 20_000);
});

t.test('kill -9 at a random moment loses nothing whose append resolved', async (t) => {
  const child = new URL('./outbox-crash-child.js', import.meta.url).pathname;
  for (let round = 0; round < 6; round++) {
    const dir = tempDir(t);
    const path = join(dir, 'outbox.db');
    const proc = spawn(process.execPath, [child, path], { stdio: ['ignore', 'pipe', 'inherit'] });
    t.teardown(() => void proc.kill('SIGKILL'));
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    let out = '';
    let ready: () => void = () => undefined;
    const isReady = new Promise<void>((resolve) => (ready = resolve));
    proc.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      // Ready once the first append has been reported, so every round kills a writing child.
      if (out.startsWith('ready\n') && out.split('\n').length > 2) ready();
    });
    await within(10_000, 'child ready', isReady);
    await new Promise((r) => setTimeout(r, Math.random() * 400));
    proc.kill('SIGKILL');
    await within(5000, 'child exit', exited);
    const lines = out.split('\n').slice(1, -1); // the last piece may be a partial line
    const reported = lines.flatMap((l) => l.split(' ').map(Number));
    const outbox = await openOutbox(t, { dir, clock: new FakeClock() });
    const seqs = new Set((await outbox.peek(1_000_000)).rows.map((r) => r.reading.seq));
    const missing = reported.filter((s) => !seqs.has(s));
    t.same(missing, [], `round ${round}: ${reported.length} reported committed, ${seqs.size} stored`);
    t.ok(reported.length > 0, 'the child committed something before the kill');
    const max = Math.max(0, ...seqs);
    t.equal(seqs.size, max, 'stored seqs are 1..max without gaps');
    const [next] = await appendNow(outbox, [sample('crash/temperature', 0)]);
    t.equal(next?.seq, max + 1, 'seq resumes after the last committed one');
    await outbox.close();
  }
});
