import t from 'tap';
import { BILLING_UNIT_BYTES, billedUnits, Meter } from '../../../../cloud/hub/meter.js';
import { defaultRetention, EventStore, readEvents, type EventMeta, type StoredEvent } from '../../../../cloud/hub/event-store.js';
import { openDb } from '../../../../cloud/hub/db.js';
import { FakeClock, memoryDb, tempDb, type Test } from './temp-db.js';

const T0 = Date.UTC(2030, 0, 1);
const iso = (ms: number): string => new Date(ms).toISOString();

const meta = (over: Partial<EventMeta> = {}): EventMeta => ({
  messageId: null, correlationId: null, contentType: null, contentEncoding: null, properties: {}, annotations: {}, ...over,
});

function store(t: Test, retention = defaultRetention): { events: EventStore; clock: FakeClock; db: ReturnType<typeof memoryDb> } {
  const db = memoryDb(t);
  const clock = new FakeClock(T0);
  return { events: new EventStore(db, clock.now, retention), clock, db };
}

t.test('billedUnits: 4 KB blocks, at least one', async (t) => {
  t.equal(BILLING_UNIT_BYTES, 4096);
  t.equal(billedUnits(0), 1);
  t.equal(billedUnits(1), 1);
  t.equal(billedUnits(4096), 1);
  t.equal(billedUnits(4097), 2);
  t.equal(billedUnits(8192), 2);
  t.equal(billedUnits(256 * 1024), 64);
  t.equal(billedUnits(256 * 1024 + 1), 65);
});

t.test('Meter totals and per-device counts', async (t) => {
  const db = memoryDb(t);
  const meter = new Meter(db);
  t.strictSame(meter.snapshot(), { totals: {}, devices: {} });
  meter.add('d1', 'd2c.messages');
  meter.add('d1', 'd2c.messages');
  meter.add('d1', 'd2c.bytes', 100);
  meter.add('d1', 'd2c.bytes', 50);
  meter.add('d2', 'd2c.messages');
  meter.add('d2', 'c2d.sent', 0);
  meter.add('', 'refused.Unauthorized');
  meter.add('', 'd2c.messages', 10);
  t.strictSame(meter.snapshot(), {
    totals: { 'c2d.sent': 0, 'd2c.bytes': 150, 'd2c.messages': 13, 'refused.Unauthorized': 1 },
    devices: { d1: { 'd2c.bytes': 150, 'd2c.messages': 2 }, d2: { 'c2d.sent': 0, 'd2c.messages': 1 } },
  });
  t.equal('' in meter.snapshot().devices, false, 'the hub-wide pseudo device is not listed');
  t.strictSame(new Meter(db).snapshot().totals['d2c.messages'], 13, 'counts live in the database');
});

t.test('Meter counts survive reopening the database file', async (t) => {
  const { db, file } = tempDb(t);
  new Meter(db).add('d', 'x', 3);
  db.close();
  const reopened = openDb(file);
  t.teardown(() => reopened.close());
  t.strictSame(new Meter(reopened).snapshot(), { totals: { x: 3 }, devices: { d: { x: 3 } } });
});

t.test('EventStore append and readEvents', async (t) => {
  const { events, clock, db } = store(t);
  const seen: StoredEvent[] = [];
  events.on('event', (e: StoredEvent) => seen.push(e));
  const e1 = events.append('d1', 11, meta({ messageId: 'm1', contentType: 'application/json', properties: { k: 'v' }, annotations: { a: 1 } }), Buffer.from('{"t":21.5}'));
  t.strictSame(e1, {
    sequenceNumber: 1, deviceId: 'd1', enqueuedTimeUtc: iso(T0), size: 11,
    messageId: 'm1', correlationId: null, contentType: 'application/json', contentEncoding: null,
    properties: { k: 'v' }, annotations: { a: 1 }, body: '{"t":21.5}', bodyEncoding: 'utf8',
  });
  t.strictSame(seen, [], "append does not emit: 'event' waits for publish (after commit)");
  events.publish(e1);
  t.equal(seen.length, 1);
  t.equal(seen[0], e1, 'publish emits the very event');
  clock.advance(10);
  const e2 = events.append('d2', 3, meta(), Buffer.from([0xff, 0x00, 0xfe]));
  t.equal(e2.sequenceNumber, 2);
  t.equal(e2.body, '/wD+');
  t.equal(e2.bodyEncoding, 'base64', 'invalid UTF-8 comes back as base64');
  clock.advance(10);
  const e3 = events.append('d1', 6, meta(), Buffer.from('héllo'));
  t.equal(e3.body, 'héllo');
  t.equal(e3.bodyEncoding, 'utf8');
  const e4 = events.append('d1', 0, meta(), Buffer.alloc(0));
  t.equal(e4.body, '');
  t.equal(e4.bodyEncoding, 'utf8');
  const e5 = events.append('d1', 3, meta(), Buffer.from([0xe2, 0x82]));
  t.equal(e5.bodyEncoding, 'base64', 'a truncated UTF-8 sequence is binary');
  t.equal(e5.body, '4oI=');

  t.strictSame(readEvents(db, { limit: 10 }), [e1, e2, e3, e4, e5], 'read back exactly as appended');
  t.strictSame(readEvents(db, { deviceId: 'd1', limit: 10 }).map((e) => e.sequenceNumber), [1, 3, 4, 5]);
  t.strictSame(readEvents(db, { deviceId: 'd2', limit: 10 }).map((e) => e.sequenceNumber), [2]);
  t.strictSame(readEvents(db, { deviceId: 'nobody', limit: 10 }), []);
  t.strictSame(readEvents(db, { fromSequence: 3, limit: 10 }).map((e) => e.sequenceNumber), [3, 4, 5], 'fromSequence is inclusive');
  t.strictSame(readEvents(db, { deviceId: 'd1', fromSequence: 2, limit: 2 }).map((e) => e.sequenceNumber), [3, 4], 'filters and limit combined');
  t.strictSame(readEvents(db, { limit: 2 }).map((e) => e.sequenceNumber), [1, 2]);
  t.strictSame(readEvents(db, { fromSequence: 6, limit: 10 }), []);
});

t.test('retention by age', async (t) => {
  const { events, clock, db } = store(t, { maxAgeMs: 1000, maxEvents: 100 });
  events.append('d', 1, meta(), Buffer.from('a'));
  clock.advance(500);
  events.append('d', 1, meta(), Buffer.from('b'));
  clock.ms = T0 + 1000;
  events.prune();
  t.strictSame(readEvents(db, { limit: 10 }).map((e) => e.body), ['a', 'b'], 'exactly maxAgeMs old is kept');
  clock.ms = T0 + 1001;
  events.prune();
  t.strictSame(readEvents(db, { limit: 10 }).map((e) => e.body), ['b']);
  clock.ms = T0 + 1501;
  events.prune();
  t.strictSame(readEvents(db, { limit: 10 }), []);
  t.equal(events.append('d', 1, meta(), Buffer.from('c')).sequenceNumber, 3, 'sequence numbers are never reused');
});

t.test('retention by count', async (t) => {
  const { events, db } = store(t, { maxAgeMs: 86_400_000, maxEvents: 3 });
  for (const b of ['1', '2', '3', '4', '5']) events.append('d', 1, meta(), Buffer.from(b));
  t.equal(readEvents(db, { limit: 10 }).length, 5, 'no prune until asked (or 1000 inserts)');
  events.prune();
  t.strictSame(readEvents(db, { limit: 10 }).map((e) => e.body), ['3', '4', '5'], 'the newest maxEvents are kept');
});

t.test('append prunes by itself every 1000 inserts', async (t) => {
  const { events, db } = store(t, { maxAgeMs: 86_400_000, maxEvents: 10 });
  const body = Buffer.from('x');
  db.transaction(() => {
    for (let i = 0; i < 999; i++) events.append('d', 1, meta(), body);
  })();
  t.equal(readEvents(db, { limit: 2000 }).length, 999);
  events.append('d', 1, meta(), body);
  const left = readEvents(db, { limit: 2000 }).map((e) => e.sequenceNumber);
  t.strictSame(left, [991, 992, 993, 994, 995, 996, 997, 998, 999, 1000]);
});

t.test('default retention is one day and 200,000 events', async (t) => {
  t.strictSame(defaultRetention, { maxAgeMs: 86_400_000, maxEvents: 200_000 });
});
