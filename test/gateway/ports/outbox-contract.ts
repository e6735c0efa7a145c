/**
 * The Outbox contract (gateway/src/ports/outbox.ts), run against every implementation: the
 * SQLite adapter in test/gateway/adapters/sqlite-outbox.test.ts and the in-memory fake in
 * test/gateway/ports/memory-outbox.test.ts.
 */
import type { Test } from 'tap';
import { isFieldlinkError } from '../../../common/errors.js';
import type { Sample } from '../../../sensors/contract/reading.js';
import type { Outbox } from '../../../gateway/src/ports/outbox.js';
import { within } from '../../helpers/deadline.js';

export type OutboxFactory = (t: Test) => Promise<Outbox>;
/** Opens an outbox and returns it with a way to close it and open the same store again. */
export type ReopenableOutboxFactory = (t: Test) => Promise<{ outbox: Outbox; reopen: () => Promise<Outbox> }>;

export function sample(source: string, value: number, alarm = false): Sample {
  return { source, kind: 'temperature', value, unit: 'Cel', ts: 1_700_000_000_000 + value, flags: alarm ? { alarm: true } : {} };
}

/** A sample taken while the wall clock was untrusted: `ts` counts from boot `bootId`. */
export function unsyncedSample(source: string, value: number, bootId: string, alarm = false): Sample {
  return { source, kind: 'temperature', value, unit: 'Cel', ts: 1000 + value, flags: alarm ? { alarm: true, clockUnsynced: true } : { clockUnsynced: true }, bootId };
}

/** Appends and forces the group commit, so tests need not wait for the interval. */
export async function appendNow(outbox: Outbox, samples: readonly Sample[]) {
  const [readings] = await within(5000, 'append + flush', Promise.all([outbox.append(samples), outbox.flush()]));
  return readings;
}

/** A batch record for `rows` (ids ascending), its plan a nested JSON value. */
function batchOf(rows: readonly { id: number }[], tag: string) {
  const ids = rows.map((r) => r.id);
  const firstId = ids[0] ?? -1;
  const lastId = ids.at(-1) ?? -1;
  return { messageId: `m-${tag}-${firstId}-${lastId}`, firstId, lastId, rowCount: ids.length, plan: { tag, rowIds: ids, nested: { s: 'x', n: 1.5, ok: true } } };
}

export function outboxContract(t: Test, name: string, make: OutboxFactory, reopenable: ReopenableOutboxFactory): void {
  t.test(`${name}: recorded batches are listed lowest firstId first, plans round-trip, re-recording replaces`, async (t) => {
    const outbox = await make(t);
    await appendNow(outbox, [sample('a', 1), sample('a', 2), sample('a', 3), sample('a', 4), sample('a', 5)]);
    const { rows } = await outbox.peek(10);
    const a = batchOf(rows.slice(0, 2), 'a');
    const b = batchOf(rows.slice(2, 4), 'b');
    t.same(await outbox.pendingBatches(), [], 'none at first');
    await outbox.recordBatch(b);
    await outbox.recordBatch(a);
    t.same(await outbox.pendingBatches(), [a, b]);
    const b2 = { ...b, plan: { tag: 'b2' } };
    await outbox.recordBatch(b2);
    t.same(await outbox.pendingBatches(), [a, b2], 'same messageId: replaced, not added');
  });

  t.test(`${name}: recordBatch commits by itself, without waiting for the append group commit`, async (t) => {
    const outbox = await make(t);
    await appendNow(outbox, [sample('a', 1)]);
    const { rows } = await outbox.peek(10);
    const pending = outbox.append([sample('a', 2)]);
    await within(5000, 'recordBatch', outbox.recordBatch(batchOf(rows, 'a')));
    t.equal((await outbox.pendingBatches()).length, 1);
    await within(5000, 'flush', Promise.all([pending, outbox.flush()]));
  });

  t.test(`${name}: a batch record lives exactly as long as all its rows`, async (t) => {
    const outbox = await make(t);
    await appendNow(outbox, [1, 2, 3, 4, 5, 6, 7].map((v) => sample('a', v)));
    const { rows } = await outbox.peek(10);
    const ids = rows.map((r) => r.id);
    const a = batchOf(rows.slice(0, 2), 'a');
    const b = batchOf(rows.slice(2, 4), 'b');
    const c = batchOf(rows.slice(4, 6), 'c');
    for (const batch of [a, b, c]) await outbox.recordBatch(batch);
    await outbox.ack([ids[6] ?? -1]);
    t.same((await outbox.pendingBatches()).map((x) => x.messageId), [a, b, c].map((x) => x.messageId), 'acking a row of no batch keeps them all');
    await outbox.ack(a.plan.rowIds);
    t.same((await outbox.pendingBatches()).map((x) => x.messageId), [b.messageId, c.messageId], 'acking all its rows removes the batch');
    await outbox.ack([ids[4] ?? -1]);
    t.same((await outbox.pendingBatches()).map((x) => x.messageId), [b.messageId], 'losing one of its rows removes it too: it cannot be rebuilt');
    await outbox.recordBatch({ ...batchOf(rows.slice(4, 6), 'late'), messageId: 'late' });
    t.same((await outbox.pendingBatches()).map((x) => x.messageId), [b.messageId], 'a record whose rows are already short is not kept');
    t.equal((await outbox.stats()).depth, 3, 'records are not rows');
  });

  t.test(`${name}: batch records survive close and reopen`, async (t) => {
    const { outbox, reopen } = await reopenable(t);
    await appendNow(outbox, [sample('a', 1), sample('a', 2), sample('a', 3)]);
    const { rows } = await outbox.peek(10);
    const a = batchOf(rows.slice(0, 1), 'a');
    const b = batchOf(rows.slice(1, 3), 'b');
    await outbox.recordBatch(a);
    await outbox.recordBatch(b);
    const again = await reopen();
    t.same(await again.pendingBatches(), [a, b]);
    await again.ack(a.plan.rowIds);
    t.same(await again.pendingBatches(), [b]);
  });

  t.test(`${name}: rebaseUnsynced re-bases only that boot's flagged readings, keeps alarm, counts, keeps sizes right`, async (t) => {
    const outbox = await make(t);
    const offset = 1_790_000_000_000;
    await appendNow(outbox, [
      unsyncedSample('a', 1, 'boot-1'),
      sample('a', 2),
      unsyncedSample('a', 3, 'boot-2'),
      unsyncedSample('b', 4, 'boot-1', true),
      { ...sample('a', 5), bootId: 'boot-1' },
    ]);
    const before = (await outbox.peek(10)).rows;
    t.equal(await outbox.rebaseUnsynced('boot-1', offset), 2, 'returns how many rows changed');
    const after = (await outbox.peek(10)).rows;
    t.same(after.map((r) => r.id), before.map((r) => r.id), 'ids and order kept');
    t.strictSame(after.map((r) => r.reading), [
      { source: 'a', kind: 'temperature', value: 1, unit: 'Cel', ts: offset + 1001, flags: {}, seq: 1 },
      before[1]?.reading,
      before[2]?.reading,
      { source: 'b', kind: 'temperature', value: 4, unit: 'Cel', ts: offset + 1004, flags: { alarm: true }, seq: 1 },
      before[4]?.reading,
    ], 'flag and bootId dropped, alarm kept; other boots, synced readings untouched');
    const stats = await outbox.stats();
    t.equal(stats.bytes, after.reduce((n, r) => n + Buffer.byteLength(JSON.stringify(r.reading)), 0), 'stored sizes follow the new bodies');
    t.equal(stats.depth, 5);
    t.equal(await outbox.rebaseUnsynced('boot-1', offset), 0, 'a second call finds nothing');
    t.equal(await outbox.rebaseUnsynced('boot-9', offset), 0, 'unknown boot');
    const e = await outbox.rebaseUnsynced('boot-2', Number.NaN).then(() => undefined, (e: unknown) => e);
    t.type(e, RangeError, 'a non-finite offset is refused');
    t.strictSame((await outbox.peek(10)).rows[2]?.reading, before[2]?.reading, 'and changes nothing');
  });

  t.test(`${name}: rebaseUnsynced leaves the rows of recorded batches byte-identical`, async (t) => {
    const outbox = await make(t);
    await appendNow(outbox, [1, 2, 3, 4].map((v) => unsyncedSample('a', v, 'boot-1')));
    const { rows } = await outbox.peek(10);
    const batch = batchOf(rows.slice(1, 3), 'b');
    await outbox.recordBatch(batch);
    t.equal(await outbox.rebaseUnsynced('boot-1', 5000), 2);
    const after = (await outbox.peek(10)).rows;
    t.same(after.map((r) => r.reading.ts), [6001, 1002, 1003, 6004]);
    t.strictSame(after.slice(1, 3), rows.slice(1, 3), 'batch rows unchanged');
    t.same(await outbox.pendingBatches(), [batch], 'the record stays');
  });

  t.test(`${name}: rebaseUnsynced covers readings appended but not yet committed`, async (t) => {
    const outbox = await make(t);
    const appended = outbox.append([unsyncedSample('a', 1, 'boot-1'), unsyncedSample('a', 2, 'boot-1')]);
    t.equal(await within(5000, 'rebase', outbox.rebaseUnsynced('boot-1', 10_000)), 2);
    const readings = await within(5000, 'append', appended);
    t.same(readings.map((r) => [r.seq, r.ts, r.flags.clockUnsynced]), [[1, 1001, true], [2, 1002, true]], 'append resolves with the readings as appended');
    t.same((await outbox.peek(10)).rows.map((r) => [r.reading.seq, r.reading.ts, r.reading.flags.clockUnsynced, r.reading.bootId]), [[1, 11_001, undefined, undefined], [2, 11_002, undefined, undefined]]);
  });

  t.test(`${name}: a rebase survives close and reopen`, async (t) => {
    const { outbox, reopen } = await reopenable(t);
    await appendNow(outbox, [unsyncedSample('a', 1, 'boot-1'), unsyncedSample('a', 2, 'boot-2')]);
    t.equal(await outbox.rebaseUnsynced('boot-1', 100), 1);
    const again = await reopen();
    t.same((await again.peek(10)).rows.map((r) => [r.reading.ts, r.reading.bootId ?? null]), [[1101, null], [1002, 'boot-2']]);
    const { bytes } = await again.stats();
    t.equal(bytes, (await again.peek(10)).rows.reduce((n, r) => n + Buffer.byteLength(JSON.stringify(r.reading)), 0), 'sizes after reopen');
  });

  t.test(`${name}: append assigns seq per source, from 1, in order`, async (t) => {
    const outbox = await make(t);
    const first = await appendNow(outbox, [sample('a', 1), sample('b', 2), sample('a', 3)]);
    const second = await appendNow(outbox, [sample('a', 4)]);
    t.same(first.map((r) => [r.source, r.seq, r.value]), [['a', 1, 1], ['b', 1, 2], ['a', 2, 3]]);
    t.same(second.map((r) => [r.source, r.seq]), [['a', 3]]);
  });

  t.test(`${name}: peek returns committed rows oldest first and removes nothing`, async (t) => {
    const outbox = await make(t);
    await appendNow(outbox, [sample('a', 1), sample('a', 2), sample('a', 3)]);
    const { rows } = await outbox.peek(2);
    t.same(rows.map((r) => r.reading.value), [1, 2]);
    t.ok((rows[0]?.id ?? 0) < (rows[1]?.id ?? 0), 'ids increase with age');
    t.same((await outbox.peek(10)).rows.map((r) => r.reading.seq), [1, 2, 3], 'still there');
    t.same((await outbox.peek(0)).rows, []);
    t.equal((await outbox.stats()).depth, 3);
  });

  t.test(`${name}: peek maxBytes bounds the batch but always returns one row`, async (t) => {
    const outbox = await make(t);
    await appendNow(outbox, [sample('a', 1), sample('a', 2), sample('a', 3)]);
    t.equal((await outbox.peek(10, { maxBytes: 1 })).rows.length, 1);
    const { bytes, depth } = await outbox.stats();
    t.equal((await outbox.peek(10, { maxBytes: Math.floor((bytes / depth) * 2.5) })).rows.length, 2);
  });

  t.test(`${name}: peek afterId returns only later rows, oldest first, and combines with limit and maxBytes`, async (t) => {
    const outbox = await make(t);
    await appendNow(outbox, [1, 2, 3, 4, 5].map((v) => sample('a', v)));
    const ids = (await outbox.peek(10)).rows.map((r) => r.id);
    const [id1 = -1, id2 = -1, id3 = -1, , id5 = -1] = ids;
    t.same((await outbox.peek(10, { afterId: id2 })).rows.map((r) => r.reading.value), [3, 4, 5]);
    t.same((await outbox.peek(2, { afterId: id1 })).rows.map((r) => r.reading.value), [2, 3], 'limit counts from afterId');
    t.same((await outbox.peek(10, { afterId: id1 - 1 })).rows.map((r) => r.id), ids, 'below the oldest: everything');
    t.same((await outbox.peek(10, { afterId: id5 })).rows, [], 'after the newest: nothing');
    t.equal((await outbox.peek(10, { afterId: id3, maxBytes: 1 })).rows.length, 1, 'maxBytes still returns one row');
    t.equal(await outbox.ack([id3]), 1);
    t.same((await outbox.peek(10, { afterId: id2 })).rows.map((r) => r.reading.value), [4, 5], 'a gap (acked id) is skipped');
    t.same((await outbox.peek(10, { afterId: id3 })).rows.map((r) => r.reading.value), [4, 5], 'afterId need not be stored');
  });

  t.test(`${name}: ack deletes exactly the given rows and counts them as sent`, async (t) => {
    const outbox = await make(t);
    await appendNow(outbox, [sample('a', 1), sample('a', 2), sample('a', 3)]);
    const { rows } = await outbox.peek(10);
    const ids = rows.map((r) => r.id);
    t.equal(await outbox.ack([ids[0] ?? -1, ids[2] ?? -1, 999_999]), 2, 'unknown id ignored');
    t.equal(await outbox.ack([ids[0] ?? -1]), 0, 'acking twice deletes nothing');
    t.same((await outbox.peek(10)).rows.map((r) => r.reading.value), [2]);
    const stats = await outbox.stats();
    t.equal(stats.depth, 1);
    t.equal(stats.counters.appended, 3);
    t.equal(stats.counters.sent, 2);
  });

  t.test(`${name}: ack takes ids in any order and repeated, and deletes runs without touching gaps`, async (t) => {
    const outbox = await make(t);
    await appendNow(outbox, Array.from({ length: 8 }, (_, i) => sample('r', i)));
    const ids = (await outbox.peek(10)).rows.map((r) => r.id);
    const pick = (...idx: number[]): number[] => idx.map((i) => ids[i] ?? -1);
    const before = (await outbox.stats()).bytes;
    t.equal(await outbox.ack(pick(6, 0, 1, 1, 2, 5, 6)), 5, 'two runs (0-2, 5-6), repeats counted once');
    t.same((await outbox.peek(10)).rows.map((r) => r.reading.value), [3, 4, 7], 'the gaps stay');
    const after = await outbox.stats();
    t.equal(after.depth, 3);
    t.ok(after.bytes > 0 && after.bytes < before, 'stored bytes shrink with the rows');
  });

  t.test(`${name}: ids never repeat, even after the newest row was acked`, async (t) => {
    const outbox = await make(t);
    await appendNow(outbox, [sample('a', 1), sample('a', 2)]);
    const before = (await outbox.peek(10)).rows.map((r) => r.id);
    await outbox.ack(before);
    await appendNow(outbox, [sample('a', 3)]);
    const after = (await outbox.peek(10)).rows.map((r) => r.id);
    t.ok((after[0] ?? 0) > Math.max(...before), `new id ${after[0]} above ${Math.max(...before)}`);
  });

  t.test(`${name}: empty outbox stats`, async (t) => {
    const outbox = await make(t);
    const stats = await outbox.stats();
    t.equal(stats.depth, 0);
    t.equal(stats.bytes, 0);
    t.equal(stats.oldestAgeMs, undefined);
    t.same(await outbox.append([]), []);
  });

  t.test(`${name}: close commits what is pending; closing twice at once is harmless`, async (t) => {
    const outbox = await make(t);
    const pending = outbox.append([sample('a', 1)]);
    await within(5000, 'close', Promise.all([outbox.close(), outbox.close()]));
    t.same((await within(5000, 'pending append', pending)).map((r) => r.seq), [1]);
  });

  t.test(`${name}: calls after close reject with OUTBOX_CLOSED`, async (t) => {
    const outbox = await make(t);
    await outbox.close();
    await outbox.close();
    const calls: Array<() => Promise<unknown>> = [() => outbox.append([sample('a', 1)]), () => outbox.peek(1), () => outbox.ack([1]), () => outbox.stats(), () => outbox.flush()];
    calls.push(() => outbox.recordBatch({ messageId: 'm', firstId: 1, lastId: 1, rowCount: 1, plan: {} }), () => outbox.pendingBatches());
    calls.push(() => outbox.rebaseUnsynced('boot-1', 1));
    for (const call of calls) {
      const e = await call().then(() => undefined, (e: unknown) => e);
      t.ok(isFieldlinkError(e, 'OUTBOX_CLOSED'), String(e));
    }
  });
}
