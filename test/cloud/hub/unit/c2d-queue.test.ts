import t from 'tap';
import { C2dQueue, defaultC2dLimits, parseAck, type AckMode, type C2dLimits, type C2dMessage, type FeedbackStatus } from '../../../../cloud/hub/c2d-queue.js';
import { DeviceRegistry } from '../../../../cloud/hub/registry.js';
import { FakeClock, tempDb, throwsHub, type Test } from './temp-db.js';

const T0 = Date.UTC(2030, 0, 1);
const iso = (ms: number): string => new Date(ms).toISOString();

interface Rig {
  q: C2dQueue;
  reg: DeviceRegistry;
  clock: FakeClock;
  enqueued: string[];
  feedbackEvents: number;
  settled: [number, FeedbackStatus][];
  send(deviceId: string, messageId: string | undefined, ack?: AckMode, expiresAt?: number): C2dMessage;
}

function setup(t: Test, limits: Partial<C2dLimits> = {}): Rig {
  const { db } = tempDb(t);
  const clock = new FakeClock(T0);
  const reg = new DeviceRegistry(db, clock.now);
  reg.create('d1');
  reg.create('d2');
  const q = new C2dQueue(db, clock.now, (id) => reg.get(id)?.generationId, { ...defaultC2dLimits, ...limits });
  const rig: Rig = {
    q, reg, clock, enqueued: [], feedbackEvents: 0, settled: [],
    send(deviceId, messageId, ack = 'full', expiresAt) {
      const props = messageId === undefined ? { applicationProperties: {} } : { messageId, applicationProperties: {} };
      return q.enqueue(deviceId, props, Buffer.from(messageId ?? 'anon'), ack, expiresAt);
    },
  };
  q.on('enqueued', (id: string) => rig.enqueued.push(id));
  q.on('feedback', () => rig.feedbackEvents++);
  q.on('settled', (m: C2dMessage, s: FeedbackStatus) => rig.settled.push([m.seq, s]));
  return rig;
}

const statuses = (q: C2dQueue): [string, FeedbackStatus][] => q.pendingFeedback(1000).records.map((r) => [r.originalMessageId, r.statusCode]);

t.test('defaults are IoT Hub limits', async (t) => {
  t.strictSame(defaultC2dLimits, { maxQueuedPerDevice: 50, defaultTtlMs: 3_600_000, maxTtlMs: 172_800_000, maxDeliveryCount: 10, maxFeedbackRecords: 10_000 });
});

t.test('parseAck', async (t) => {
  t.equal(parseAck(undefined), 'none');
  t.equal(parseAck(null), 'none');
  t.equal(parseAck(''), 'none');
  for (const a of ['none', 'positive', 'negative', 'full']) t.equal(parseAck(a), a);
  throwsHub(t, () => parseAck('Full'), 'ArgumentInvalid', 'iothub-ack must be one of none, positive, negative, full; got "Full"');
  throwsHub(t, () => parseAck(1), 'ArgumentInvalid', 'iothub-ack must be one of none, positive, negative, full; got 1');
});

t.test('enqueue stores what was sent', async (t) => {
  const r = setup(t);
  const m = r.q.enqueue('d1', { messageId: 'm1', correlationId: 'c', contentType: 'application/json', applicationProperties: { k: 'v', n: 2, b: true } },
    Buffer.from([0, 1, 255]), 'positive', undefined);
  t.strictSame(m, {
    seq: m.seq, deviceId: 'd1', messageId: 'm1', ack: 'positive', enqueuedAt: T0, expiresAt: T0 + 3_600_000, deliveryCount: 0,
    props: { messageId: 'm1', correlationId: 'c', contentType: 'application/json', applicationProperties: { k: 'v', n: 2, b: true } },
    body: Buffer.from([0, 1, 255]),
  });
  t.strictSame(r.enqueued, ['d1']);
  t.equal(r.q.queuedCount('d1'), 1);
  t.equal(r.q.queuedCount('d2'), 0);
  throwsHub(t, () => r.send('ghost', 'x'), 'DeviceNotFound', 'Device ghost not registered');
  t.strictSame(r.enqueued, ['d1'], 'no event for a refused message');
});

t.test('queue limit', async (t) => {
  const r = setup(t, { maxQueuedPerDevice: 3 });
  r.send('d1', 'a');
  r.send('d1', 'b');
  const c = r.send('d1', 'c');
  throwsHub(t, () => r.send('d1', 'd'), 'DeviceMaximumQueueDepthExceeded',
    'Device d1 already has 3 cloud-to-device messages queued; IoT Hub allows 3');
  const err = throwsHub(t, () => r.send('d1', 'd'), 'DeviceMaximumQueueDepthExceeded', /already has 3/);
  t.equal(err?.status, 403);
  t.equal(err?.amqpCondition, 'amqp:resource-limit-exceeded');
  t.equal(r.q.queuedCount('d1'), 3);
  t.equal(r.send('d2', 'other').deviceId, 'd2', 'the limit is per device');
  const taken = r.q.takeNext('d1');
  throwsHub(t, () => r.send('d1', 'd'), 'DeviceMaximumQueueDepthExceeded', /already has 3/, 'a message out for delivery still counts');
  t.ok(taken);
  if (taken) r.q.complete(taken.seq);
  t.equal(r.send('d1', 'd').messageId, 'd', 'room again after a completion');
  t.ok(c);
});

t.test('takeNext order and locking', async (t) => {
  const r = setup(t);
  const a = r.send('d1', 'a');
  const other = r.send('d2', 'x');
  const b = r.send('d1', 'b');
  const c = r.send('d1', 'c');
  r.enqueued.length = 0;
  const first = r.q.takeNext('d1');
  t.equal(first?.messageId, 'a');
  t.equal(first?.seq, a.seq);
  t.equal(first?.deliveryCount, 1);
  t.equal(r.q.get(a.seq)?.deliveryCount, 1, 'the delivery is counted in the store');
  t.equal(r.q.takeNext('d1')?.messageId, 'b', 'a locked message is not handed out again');
  t.equal(r.q.takeNext('d1')?.messageId, 'c');
  t.equal(r.q.takeNext('d1'), undefined, 'everything is out for delivery');
  t.equal(r.q.queuedCount('d1'), 3, 'locked messages stay queued');
  t.equal(r.q.takeNext('d2')?.seq, other.seq, 'other devices are unaffected');

  r.q.unlock(b.seq);
  t.strictSame(r.enqueued, ['d1'], 'unlock announces the message again');
  const again = r.q.takeNext('d1');
  t.equal(again?.messageId, 'b');
  t.equal(again?.deliveryCount, 2, 'a redelivery counts');
  t.equal(r.q.takeNext('d1'), undefined);
  r.q.unlock(b.seq);
  r.q.unlock(b.seq);
  t.strictSame(r.enqueued, ['d1', 'd1'], 'unlocking an unlocked message is silent');
  r.q.unlock(999_999);
  t.equal(r.enqueued.length, 2);
  r.q.unlock(a.seq);
  r.q.unlock(c.seq);
  t.strictSame([r.q.takeNext('d1')?.messageId, r.q.takeNext('d1')?.messageId, r.q.takeNext('d1')?.messageId, r.q.takeNext('d1')],
    ['a', 'b', 'c', undefined], 'oldest first again');
});

interface Outcome {
  mode: AckMode;
  want: FeedbackStatus[];
}

t.test('feedback per ack mode', async (t) => {
  const cases: Outcome[] = [
    { mode: 'none', want: [] },
    { mode: 'positive', want: ['Success'] },
    { mode: 'negative', want: ['Rejected', 'DeliveryCountExceeded', 'Expired'] },
    { mode: 'full', want: ['Success', 'Rejected', 'DeliveryCountExceeded', 'Expired'] },
  ];
  for (const { mode, want } of cases) {
    t.test(mode, async (t) => {
      const r = setup(t, { maxDeliveryCount: 1 });
      const gen = r.reg.get('d1')?.generationId;
      const ok = r.send('d1', 'ok', mode);
      const no = r.send('d1', 'no', mode);
      const drop = r.send('d1', 'drop', mode);
      const late = r.send('d1', 'late', mode, T0 + 10_000);
      r.clock.advance(1000);
      t.equal(r.q.takeNext('d1')?.seq, ok.seq);
      t.equal(r.q.takeNext('d1')?.seq, no.seq);
      t.equal(r.q.takeNext('d1')?.seq, drop.seq);
      r.q.complete(ok.seq);
      r.clock.advance(1000);
      r.q.reject(no.seq);
      r.clock.advance(1000);
      r.q.abandon(drop.seq);
      r.clock.advance(7000);
      t.equal(r.q.expire(), 1);
      t.equal(r.q.queuedCount('d1'), 0, 'every message settled');
      t.strictSame(r.settled, [[ok.seq, 'Success'], [no.seq, 'Rejected'], [drop.seq, 'DeliveryCountExceeded'], [late.seq, 'Expired']], "'settled' for each, whatever the ack mode");
      const { records } = r.q.pendingFeedback(100);
      t.strictSame(records.map((x) => x.statusCode), want);
      t.equal(r.feedbackEvents, want.length, "one 'feedback' event per record");
      const full = {
        Success: { originalMessageId: 'ok', description: 'Success', deviceGenerationId: gen, deviceId: 'd1', enqueuedTimeUtc: iso(T0 + 1000), statusCode: 'Success' },
        Rejected: { originalMessageId: 'no', description: 'Message rejected by the device', deviceGenerationId: gen, deviceId: 'd1', enqueuedTimeUtc: iso(T0 + 2000), statusCode: 'Rejected' },
        DeliveryCountExceeded: { originalMessageId: 'drop', description: 'Delivery count 1 reached maxDeliveryCount 1', deviceGenerationId: gen, deviceId: 'd1', enqueuedTimeUtc: iso(T0 + 3000), statusCode: 'DeliveryCountExceeded' },
        Expired: { originalMessageId: 'late', description: 'Message expired before the device completed it', deviceGenerationId: gen, deviceId: 'd1', enqueuedTimeUtc: iso(T0 + 10_000), statusCode: 'Expired' },
      } as const;
      t.strictSame(records, want.map((s) => full[s as keyof typeof full]));
    });
  }
});

t.test('abandon redelivers up to maxDeliveryCount, then DeliveryCountExceeded', async (t) => {
  const r = setup(t, { maxDeliveryCount: 3 });
  const m = r.send('d1', 'again');
  r.enqueued.length = 0;
  for (let delivery = 1; delivery <= 2; delivery++) {
    const got = r.q.takeNext('d1');
    t.equal(got?.deliveryCount, delivery);
    r.q.abandon(m.seq);
    t.equal(r.q.queuedCount('d1'), 1, `still queued after abandon #${delivery}`);
  }
  t.strictSame(r.enqueued, ['d1', 'd1'], 'each abandon announces the message again');
  t.strictSame(r.q.pendingFeedback(10).records, []);
  t.equal(r.q.takeNext('d1')?.deliveryCount, 3);
  r.q.abandon(m.seq);
  t.equal(r.q.queuedCount('d1'), 0);
  t.strictSame(statuses(r.q), [['again', 'DeliveryCountExceeded']]);
  t.equal(r.q.pendingFeedback(10).records[0]?.description, 'Delivery count 3 reached maxDeliveryCount 3');
  t.equal(r.enqueued.length, 2, 'the dead message is not announced');
  r.q.abandon(m.seq);
  r.q.complete(m.seq);
  t.equal(r.q.pendingFeedback(10).records.length, 1, 'settling a gone message does nothing');
});

t.test('expire() removes due messages, locked ones included', async (t) => {
  const r = setup(t);
  const soon = r.send('d1', 'soon', 'full', T0 + 1000);
  const lockedSoon = r.send('d1', 'locked-soon', 'full', T0 + 1000);
  const later = r.send('d1', 'later', 'full', T0 + 1001);
  r.q.takeNext('d1');
  t.equal(r.q.takeNext('d1')?.seq, lockedSoon.seq);
  r.clock.ms = T0 + 999;
  t.equal(r.q.expire(), 0, 'nothing due yet');
  r.clock.ms = T0 + 1000;
  t.equal(r.q.expire(), 2, 'expires_at <= now is due');
  t.equal(r.q.get(soon.seq), undefined);
  t.equal(r.q.get(lockedSoon.seq), undefined);
  t.ok(r.q.get(later.seq));
  t.strictSame(statuses(r.q), [['soon', 'Expired'], ['locked-soon', 'Expired']]);
  r.q.complete(lockedSoon.seq);
  t.strictSame(statuses(r.q), [['soon', 'Expired'], ['locked-soon', 'Expired']], 'completing an expired delivery adds no Success');
  t.equal(r.q.takeNext('d1')?.seq, later.seq, 'the freed lock does not hide the next message');
  r.q.unlock(later.seq);
  r.clock.ms = T0 + 1001;
  t.equal(r.q.takeNext('d1'), undefined, 'takeNext expires first and hands out nothing stale');
  t.strictSame(statuses(r.q).map((s) => s[0]), ['soon', 'locked-soon', 'later']);
  t.equal(r.q.expire(), 0);
});

t.test('TTL: default one hour, capped at two days', async (t) => {
  const r = setup(t);
  t.equal(r.send('d1', 'default').expiresAt, T0 + 3_600_000);
  t.equal(r.send('d1', 'short', 'none', T0 + 5).expiresAt, T0 + 5);
  t.equal(r.send('d1', 'long', 'none', T0 + 3 * 86_400_000).expiresAt, T0 + 2 * 86_400_000);
  t.equal(r.send('d1', 'edge', 'none', T0 + 2 * 86_400_000).expiresAt, T0 + 2 * 86_400_000);
  const custom = setup(t, { defaultTtlMs: 60_000, maxTtlMs: 120_000 });
  t.equal(custom.send('d1', 'a').expiresAt, T0 + 60_000);
  t.equal(custom.send('d1', 'b', 'none', T0 + 999_999).expiresAt, T0 + 120_000);
});

t.test('purge gives Purged feedback per ack mode', async (t) => {
  const r = setup(t);
  r.send('d1', 'p1', 'full');
  r.send('d1', 'p2', 'negative');
  r.send('d1', 'p3', 'positive');
  r.send('d1', 'p4', 'none');
  r.send('d2', 'keep', 'full');
  r.q.takeNext('d1');
  r.q.purge('d1');
  t.equal(r.q.queuedCount('d1'), 0);
  t.equal(r.q.queuedCount('d2'), 1, 'other queues untouched');
  t.strictSame(statuses(r.q), [['p1', 'Purged'], ['p2', 'Purged']]);
  t.equal(r.q.pendingFeedback(10).records[0]?.description, 'Device queue purged');
  t.equal(r.q.takeNext('d1'), undefined);
});

t.test('maxFeedbackRecords keeps the newest', async (t) => {
  const r = setup(t, { maxFeedbackRecords: 3 });
  for (const id of ['m1', 'm2', 'm3', 'm4', 'm5']) {
    const m = r.send('d1', id);
    r.q.takeNext('d1');
    r.q.complete(m.seq);
  }
  t.strictSame(statuses(r.q).map((s) => s[0]), ['m3', 'm4', 'm5']);
  t.equal(r.feedbackEvents, 5);
});

t.test('pendingFeedback and ackFeedback', async (t) => {
  const r = setup(t);
  for (const id of ['a', 'b', 'c', 'd']) r.q.reject(r.send('d1', id).seq);
  const two = r.q.pendingFeedback(2);
  t.equal(two.seqs.length, 2);
  t.strictSame(two.records.map((x) => x.originalMessageId), ['a', 'b'], 'oldest first, limited');
  const all = r.q.pendingFeedback(10);
  t.equal(all.seqs.length, 4);
  t.ok(all.seqs.every((s, i) => i === 0 || s > (all.seqs[i - 1] ?? Infinity)), 'seqs ascend');
  r.q.ackFeedback([all.seqs[0] ?? -1, all.seqs[2] ?? -1]);
  const left = r.q.pendingFeedback(10);
  t.strictSame(left.seqs, [all.seqs[1], all.seqs[3]]);
  t.strictSame(left.records.map((x) => x.originalMessageId), ['b', 'd']);
  r.q.ackFeedback([]);
  r.q.ackFeedback([123_456]);
  t.strictSame(r.q.pendingFeedback(10).seqs, left.seqs, 'acking nothing or unknown seqs removes nothing');
  r.q.ackFeedback(left.seqs);
  t.strictSame(r.q.pendingFeedback(10), { seqs: [], records: [] });
});

t.test('a message without messageId produces no feedback record', async (t) => {
  // Documents current behaviour. azure-iothub's Client.send does NOT always set one: Message.messageId
  // defaults to '' and AmqpMessage.fromMessage only sets message_id when it is truthy, so a service
  // that sets ack but no messageId gets no feedback at all from this hub.
  const r = setup(t);
  const m = r.send('d1', undefined, 'full');
  t.equal(m.messageId, null);
  r.q.takeNext('d1');
  r.q.complete(m.seq);
  t.strictSame(r.settled, [[m.seq, 'Success']]);
  t.equal(r.feedbackEvents, 0);
  t.strictSame(r.q.pendingFeedback(10).records, []);
  r.q.reject(r.send('d1', undefined, 'negative').seq);
  t.strictSame(r.q.pendingFeedback(10).records, []);
});

t.test('deleting a device drops its queue (cascade) and its generation id', async (t) => {
  const r = setup(t);
  const m = r.send('d2', 'orphan');
  r.q.takeNext('d2');
  r.reg.delete('d2', '*');
  t.equal(r.q.get(m.seq), undefined, 'the queue went with the device');
  t.equal(r.q.queuedCount('d2'), 0);
  r.q.complete(m.seq);
  t.strictSame(r.q.pendingFeedback(10).records, [], 'a settlement after deletion is ignored');
  throwsHub(t, () => r.send('d2', 'x'), 'DeviceNotFound', 'Device d2 not registered');
});

t.test('maxFeedbackRecords bounds the count, even after acks leave gaps', async (t) => {
  // The bound deletes seq <= MAX(seq) - max, so acked records still use up the window: here
  // two records are held, the limit is 3, and adding a third drops the oldest.
  const r = setup(t, { maxFeedbackRecords: 3 });
  for (const id of ['m1', 'm2', 'm3']) r.q.reject(r.send('d1', id).seq);
  const { seqs } = r.q.pendingFeedback(10);
  r.q.ackFeedback(seqs.slice(1));
  t.strictSame(statuses(r.q).map((s) => s[0]), ['m1']);
  r.q.reject(r.send('d1', 'm4').seq);
  t.strictSame(statuses(r.q).map((s) => s[0]), ['m1', 'm4'], 'two records under a limit of three: both kept');
});
