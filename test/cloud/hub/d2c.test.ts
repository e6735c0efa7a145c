import t from 'tap';
import common from 'azure-iot-common';
import { readEvents } from '../../../cloud/hub/event-store.js';
import { deviceClientFor, startTestHub } from '../../helpers/hub.js';
import { within } from '../../helpers/deadline.js';

const { Message } = common;

t.test('device-to-cloud through the official device SDK', async (t) => {
  const th = await startTestHub();
  t.teardown(() => th.cleanup());
  th.hub.createDevice('dev');
  const device = await deviceClientFor(th, th.hub.deviceConnectionString('dev'));
  t.teardown(() => device.close());
  await within(5000, 'open', device.open());

  t.test('an accepted event is stored with its properties and metered', async (t) => {
    const m = new Message(JSON.stringify({ temperature: 21.5 }));
    m.messageId = 'gw1-1-10';
    m.correlationId = 'corr';
    m.contentType = 'application/json';
    m.contentEncoding = 'utf-8';
    m.properties.add('kind', 'readings');
    const result = await within(5000, 'sendEvent', device.sendEvent(m));
    t.equal(result.constructor.name, 'MessageEnqueued', 'the SDK reports the message as enqueued');
    const [stored] = readEvents(th.hub.db, { deviceId: 'dev', limit: 10 });
    t.equal(stored?.body, '{"temperature":21.5}');
    t.equal(stored?.messageId, 'gw1-1-10');
    t.equal(stored?.correlationId, 'corr');
    t.equal(stored?.contentType, 'application/json');
    t.equal(stored?.contentEncoding, 'utf-8');
    t.equal(stored?.properties.kind, 'readings');
    t.ok((stored?.sequenceNumber ?? 0) > 0);
    const meter = th.hub.meter.snapshot().devices.dev;
    t.equal(meter?.['d2c.messages'], 1);
    t.equal(meter?.['d2c.units'], 1, 'a small message is one 4 KB unit');
    t.ok((meter?.['d2c.bytes'] ?? 0) >= 20, 'bytes include the body and properties');
  });

  t.test('billing counts 4 KB units including properties', async (t) => {
    const before = th.hub.meter.snapshot().devices.dev?.['d2c.units'] ?? 0;
    await within(5000, 'send 4096-byte body', device.sendEvent(new Message(Buffer.alloc(4096, 0x61))));
    await within(5000, 'send 10 KB body', device.sendEvent(new Message(Buffer.alloc(10_000, 0x61))));
    const after = th.hub.meter.snapshot().devices.dev?.['d2c.units'] ?? 0;
    // 4096 bytes of body plus any property is over one unit: 2; 10,000 bytes: 3.
    t.equal(after - before, 5);
  });

  t.test('binary bodies are stored intact', async (t) => {
    const bytes = Buffer.from([0x00, 0xff, 0x10, 0x80, 0xfe]);
    await within(5000, 'send', device.sendEvent(new Message(bytes)));
    const events = readEvents(th.hub.db, { deviceId: 'dev', limit: 100 });
    const last = events.at(-1);
    t.equal(last?.bodyEncoding, 'base64');
    t.same(Buffer.from(last?.body ?? '', 'base64'), bytes);
  });

  t.test('a message over 256 KB is rejected with MessageTooLargeError, not stored, and the refusal is metered', async (t) => {
    const count = readEvents(th.hub.db, { limit: 1000 }).length;
    const err = await within(5000, 'send oversize', device.sendEvent(new Message(Buffer.alloc(256 * 1024 + 1, 0x61)))).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    t.equal(err?.constructor.name, 'MessageTooLargeError', 'rejected, never released (the SDK treats released as sent)');
    t.equal(readEvents(th.hub.db, { limit: 1000 }).length, count);
    t.equal(th.hub.meter.snapshot().devices.dev?.['refused.d2c.MessageTooLarge'], 1);
  });

  t.test('a message just under the cap, properties included, is accepted', async (t) => {
    const m = new Message(Buffer.alloc(256 * 1024 - 200, 0x61));
    await within(5000, 'send near cap', device.sendEvent(m));
    t.pass('accepted');
  });

  t.test('sendEventBatch is not implemented over AMQP, as on Azure', async (t) => {
    const err = await device.sendEventBatch([new Message('a'), new Message('b')]).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    t.equal(err?.constructor.name, 'NotImplementedError');
  });
});
