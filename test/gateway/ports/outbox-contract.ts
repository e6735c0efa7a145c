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
    for (const call of calls) {
      const e = await call().then(() => undefined, (e: unknown) => e);
      t.ok(isFieldlinkError(e, 'OUTBOX_CLOSED'), String(e));
    }
  });
}
