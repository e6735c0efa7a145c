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

export function sample(source: string, value: number, alarm = false): Sample {
  return { source, kind: 'temperature', value, unit: 'Cel', ts: 1_700_000_000_000 + value, flags: alarm ? { alarm: true } : {} };
}

/** Appends and forces the group commit, so tests need not wait for the interval. */
export async function appendNow(outbox: Outbox, samples: readonly Sample[]) {
  const [readings] = await within(5000, 'append + flush', Promise.all([outbox.append(samples), outbox.flush()]));
  return readings;
}

export function outboxContract(t: Test, name: string, make: OutboxFactory): void {
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
    const calls = [() => outbox.append([sample('a', 1)]), () => outbox.peek(1), () => outbox.ack([1]), () => outbox.stats(), () => outbox.flush()];
    for (const call of calls) {
      const e = await call().then(() => undefined, (e: unknown) => e);
      t.ok(isFieldlinkError(e, 'OUTBOX_CLOSED'), String(e));
    }
  });
}
