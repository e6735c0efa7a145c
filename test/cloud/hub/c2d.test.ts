import t from 'tap';
import common from 'azure-iot-common';
import { collectFeedback, deviceClientFor, serviceClientFor, startTestHub, type DeviceClient, type TestHub } from '../../helpers/hub.js';
import { eventually, within } from '../../helpers/deadline.js';

const { Message } = common;
type Message = InstanceType<typeof Message>;

function c2d(body: string, id: string, ack: 'none' | 'positive' | 'negative' | 'full' = 'full', expiry?: number): Message {
  const m = new Message(body);
  m.messageId = id;
  m.ack = ack;
  if (expiry !== undefined) m.expiryTimeUtc = expiry;
  return m;
}

/** A connected device whose received C2D messages are handed to `settle`, in order. */
async function connectDevice(th: TestHub, id: string, settle: (client: DeviceClient, m: Message) => Promise<unknown>): Promise<{ client: DeviceClient; received: Message[] }> {
  const client = await deviceClientFor(th, th.hub.deviceConnectionString(id));
  const received: Message[] = [];
  client.on('message', (m: Message) => {
    received.push(m);
    void settle(client, m);
  });
  await within(5000, `device ${id} open`, client.open());
  return { client, received };
}

t.test('cloud-to-device over AMQP with IoT Hub semantics', async (t) => {
  const th = await startTestHub({ c2dLimits: { maxDeliveryCount: 3 }, sweepIntervalMs: 50 });
  t.teardown(() => th.cleanup());
  const service = serviceClientFor(th);
  t.teardown(() => service.close());
  await within(5000, 'service open', service.open());
  const feedback = await within(5000, 'feedback receiver', collectFeedback(service));

  t.test('a completed message arrives with its properties and yields Success feedback', async (t) => {
    th.hub.createDevice('complete-dev');
    const { client, received } = await connectDevice(th, 'complete-dev', (c, m) => c.complete(m));
    t.teardown(() => client.close());
    const msg = c2d('{"type":"wake","forS":60}', 'msg-complete');
    msg.correlationId = 'corr-1';
    msg.contentType = 'application/json';
    msg.properties.add('kind', 'command');
    await within(5000, 'send', service.send('complete-dev', msg));
    const got = await eventually(5000, 'delivered', () => received[0]);
    t.equal(got.getData().toString(), '{"type":"wake","forS":60}');
    t.equal(got.messageId, 'msg-complete');
    t.equal(got.correlationId, 'corr-1');
    t.equal(got.contentType, 'application/json');
    t.equal(got.properties.getValue('kind'), 'command');
    t.equal(got.ack, 'full', 'the iothub-ack mode reaches the device');
    const record = await feedback.waitFor((r) => r.originalMessageId === 'msg-complete', 5000);
    t.equal(record.statusCode, 'Success');
    t.equal(record.deviceId, 'complete-dev');
    t.equal(th.hub.c2d.queuedCount('complete-dev'), 0, 'completed messages leave the queue');
  });

  t.test('a rejected message is dropped, not redelivered, and yields Rejected feedback', async (t) => {
    th.hub.createDevice('reject-dev');
    const { client, received } = await connectDevice(th, 'reject-dev', (c, m) => c.reject(m));
    t.teardown(() => client.close());
    await within(5000, 'send', service.send('reject-dev', c2d('no', 'msg-reject')));
    const record = await feedback.waitFor((r) => r.originalMessageId === 'msg-reject', 5000);
    t.equal(record.statusCode, 'Rejected');
    t.equal(received.length, 1, 'delivered exactly once');
    t.equal(th.hub.c2d.queuedCount('reject-dev'), 0);
  });

  t.test('an abandoned message is redelivered until maxDeliveryCount, then DeliveryCountExceeded', async (t) => {
    th.hub.createDevice('abandon-dev');
    const { client, received } = await connectDevice(th, 'abandon-dev', (c, m) => c.abandon(m));
    t.teardown(() => client.close());
    await within(5000, 'send', service.send('abandon-dev', c2d('again', 'msg-abandon')));
    const record = await feedback.waitFor((r) => r.originalMessageId === 'msg-abandon', 5000);
    t.equal(record.statusCode, 'DeliveryCountExceeded');
    t.equal(received.length, 3, 'delivered maxDeliveryCount (3) times');
    t.ok(received.every((m) => m.messageId === 'msg-abandon'));
    t.equal(th.hub.c2d.queuedCount('abandon-dev'), 0);
  });

  t.test('messages queued while the device is offline arrive in order when it connects', async (t) => {
    th.hub.createDevice('offline-dev');
    for (let i = 0; i < 5; i++) await within(5000, `send ${i}`, service.send('offline-dev', c2d(`m${i}`, `offline-${i}`, 'none')));
    t.equal(th.hub.c2d.queuedCount('offline-dev'), 5);
    const { client, received } = await connectDevice(th, 'offline-dev', (c, m) => c.complete(m));
    t.teardown(() => client.close());
    await eventually(5000, 'all delivered', () => (received.length === 5 ? true : undefined));
    t.same(received.map((m) => m.getData().toString()), ['m0', 'm1', 'm2', 'm3', 'm4']);
    await eventually(5000, 'queue drained', () => (th.hub.c2d.queuedCount('offline-dev') === 0 ? true : undefined));
    t.notOk(feedback.records.some((r) => r.originalMessageId.startsWith('offline-')), "ack 'none' produces no feedback");
  });

  t.test('the 51st queued message is refused with DeviceMaximumQueueDepthExceededError', async (t) => {
    th.hub.createDevice('full-dev');
    for (let i = 0; i < 50; i++) await within(5000, `send ${i}`, service.send('full-dev', c2d('x', `full-${i}`, 'none')));
    const err = await within(5000, '51st send', service.send('full-dev', c2d('x', 'full-50', 'none'))).then(
      () => undefined,
      (e: unknown) => e,
    );
    // azure-iothub carries its own copy of the error classes: compare by name, not instanceof.
    t.equal((err as Error).constructor.name, 'DeviceMaximumQueueDepthExceededError');
    t.equal(th.hub.c2d.queuedCount('full-dev'), 50);
    t.equal(th.hub.meter.snapshot().devices['full-dev']?.['refused.c2d.DeviceMaximumQueueDepthExceeded'], 1, 'the refusal is metered');
  });

  t.test('an expired message is never delivered and yields Expired feedback', async (t) => {
    th.hub.createDevice('expire-dev');
    await within(5000, 'send', service.send('expire-dev', c2d('late', 'msg-expire', 'negative', Date.now() + 300)));
    const record = await feedback.waitFor((r) => r.originalMessageId === 'msg-expire', 5000);
    t.equal(record.statusCode, 'Expired');
    const { client, received } = await connectDevice(th, 'expire-dev', (c, m) => c.complete(m));
    t.teardown(() => client.close());
    await new Promise((r) => setTimeout(r, 300));
    t.equal(received.length, 0);
  });

  t.test('expiry defaults to 1 hour and is capped at 2 days', async (t) => {
    th.hub.createDevice('ttl-dev');
    const before = Date.now();
    await within(5000, 'send default', service.send('ttl-dev', c2d('a', 'ttl-default', 'none')));
    await within(5000, 'send far', service.send('ttl-dev', c2d('b', 'ttl-far', 'none', before + 10 * 86400_000)));
    const [a, b] = [th.hub.c2d.takeNext('ttl-dev'), th.hub.c2d.takeNext('ttl-dev')];
    t.ok(a && Math.abs(a.expiresAt - a.enqueuedAt - 3600_000) < 1000, 'default TTL 1 h');
    t.ok(b && Math.abs(b.expiresAt - b.enqueuedAt - 2 * 86400_000) < 1000, 'TTL capped at 2 days');
  });

  t.test('sending to an unknown device fails with DeviceNotFoundError', async (t) => {
    const err = await within(5000, 'send', service.send('no-such-device', c2d('x', 'ghost'))).then(
      () => undefined,
      (e: unknown) => e,
    );
    t.equal((err as Error).constructor.name, 'DeviceNotFoundError');
  });

  t.test('deleting a device purges its queue with Purged feedback', async (t) => {
    th.hub.createDevice('purge-dev');
    await within(5000, 'send', service.send('purge-dev', c2d('x', 'msg-purge')));
    const { createRegistry, hubTargetFromFile } = await import('../../../cloud/hub/service-clients.js');
    await within(5000, 'delete', createRegistry(hubTargetFromFile(th.hubJson)).delete('purge-dev'));
    const record = await feedback.waitFor((r) => r.originalMessageId === 'msg-purge', 5000);
    t.equal(record.statusCode, 'Purged');
  });
});

t.test('feedback waits for a receiver and survives a restart', async (t) => {
  const th = await startTestHub();
  t.teardown(() => th.cleanup());
  th.hub.createDevice('dev');
  let service = serviceClientFor(th);
  await within(5000, 'service open', service.open());
  await within(5000, 'send', service.send('dev', c2d('x', 'msg-before-receiver')));
  const { client } = await connectDevice(th, 'dev', (c, m) => c.complete(m));
  await eventually(5000, 'completed', () => (th.hub.c2d.queuedCount('dev') === 0 ? true : undefined));
  await client.close();
  await service.close();
  await th.restart();
  service = serviceClientFor(th);
  t.teardown(() => service.close());
  const feedback = await within(5000, 'feedback receiver', collectFeedback(service));
  const record = await feedback.waitFor((r) => r.originalMessageId === 'msg-before-receiver', 5000);
  t.equal(record.statusCode, 'Success', 'a record produced before any receiver attached, and before a restart, is delivered');
});
