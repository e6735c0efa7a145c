import t from 'tap';
import common from 'azure-iot-common';
import { deviceClientFor, QuickRetry, registryFor, serviceClientFor, startTestHub } from '../../helpers/hub.js';
import { eventually, within } from '../../helpers/deadline.js';
import { readEvents } from '../../../cloud/hub/event-store.js';

const { Message } = common;
type Message = InstanceType<typeof Message>;

t.test('a restart keeps devices, twins and queued C2D messages, and a connected SDK client recovers', async (t) => {
  const th = await startTestHub();
  t.teardown(() => th.cleanup());
  th.hub.createDevice('kept');
  th.hub.createDevice('live');
  const keyBefore = th.hub.registry.require('kept').primaryKey;
  const registry = registryFor(th);
  await within(5000, 'desired', registry.updateTwin('kept', { properties: { desired: { samplingS: 15 } }, tags: { site: 'kobe' } }, '*'));
  const service = serviceClientFor(th);
  await within(5000, 'service open', service.open());
  for (const id of ['q1', 'q2']) {
    const m = new Message(id);
    m.messageId = id;
    await within(5000, 'queue c2d', service.send('kept', m));
  }
  await service.close();

  const live = await deviceClientFor(th, th.hub.deviceConnectionString('live'));
  t.teardown(() => live.close());
  const liveReceived: Message[] = [];
  live.on('message', (m: Message) => {
    liveReceived.push(m);
    void live.complete(m);
  });
  // With NoRetry the SDK never re-enables C2D after a disconnect; with a bounded quick policy
  // it re-attaches by itself, which is what "recovers" means here.
  live.setRetryPolicy(new QuickRetry());
  const disconnects: unknown[] = [];
  live.on('disconnect', (d: unknown) => disconnects.push(d));
  await within(5000, 'live open', live.open());
  await within(5000, 'send before restart', live.sendEvent(new Message('before')));
  const portsBefore = { amqp: th.hub.hub.amqpPort, https: th.hub.hub.httpsPort };

  const hub = await th.restart();
  t.same({ amqp: hub.hub.amqpPort, https: hub.hub.httpsPort }, portsBefore, 'the restarted hub reuses its ports');
  t.equal(hub.registry.require('kept').primaryKey, keyBefore, 'device keys survive');
  const twin = hub.registry.getTwin('kept');
  t.equal(twin.desired.samplingS, 15, 'desired properties survive');
  t.equal(twin.tags.site, 'kobe', 'tags survive');
  t.equal(hub.c2d.queuedCount('kept'), 2, 'queued C2D messages survive');

  // The connected client finds its connection gone; its next send reconnects (one attempt: NoRetry).
  await eventually(10_000, 'send after restart', async () =>
    live.sendEvent(new Message('after')).then(
      () => true,
      () => undefined,
    ),
  );
  const stored = readEvents(hub.db, { deviceId: 'live', limit: 10 });
  t.same(stored.map((e) => e.body), ['before', 'after'], 'both events are stored, across the restart');

  // The client re-attaches its C2D link on its own: a message sent now reaches it.
  const service2 = serviceClientFor(th);
  t.teardown(() => service2.close());
  await within(5000, 'service reopen', service2.open());
  const m = new Message('hello again');
  m.messageId = 'after-restart';
  await within(5000, 'send c2d', service2.send('live', m));
  const got = await eventually(10_000, 'c2d after restart', () => liveReceived.find((x) => x.messageId === 'after-restart'));
  t.equal(got.getData().toString(), 'hello again');
  t.same(disconnects, [], 'the SDK recovered without giving up (no disconnect event)');

  const kept = await deviceClientFor(th, hub.deviceConnectionString('kept'));
  t.teardown(() => kept.close());
  const keptReceived: string[] = [];
  kept.on('message', (msg: Message) => {
    keptReceived.push(msg.getData().toString());
    void kept.complete(msg);
  });
  await within(5000, 'kept open', kept.open());
  await eventually(5000, 'queued messages delivered after restart', () => (keptReceived.length === 2 ? true : undefined));
  t.same(keptReceived, ['q1', 'q2']);
});

t.test('after an abrupt network drop the SDK client reconnects and its C2D link works again', async (t) => {
  const th = await startTestHub();
  t.teardown(() => th.cleanup());
  th.hub.createDevice('dev');
  const client = await deviceClientFor(th, th.hub.deviceConnectionString('dev'));
  t.teardown(() => client.close());
  client.setRetryPolicy(new QuickRetry());
  const received: string[] = [];
  client.on('message', (m: Message) => {
    received.push(m.getData().toString());
    void client.complete(m);
  });
  await within(5000, 'open', client.open());
  await eventually(5000, 'c2d link attached', () => (th.hub.amqpConnections === 1 ? true : undefined));
  th.hub.dropAmqpConnections();
  const service = serviceClientFor(th);
  t.teardown(() => service.close());
  await within(5000, 'service open', service.open());
  const m = new Message('after drop');
  m.messageId = 'drop-1';
  await within(5000, 'send', service.send('dev', m));
  await eventually(10_000, 'delivered after reconnect', () => (received.includes('after drop') ? true : undefined));
  await within(5000, 'send event after drop', client.sendEvent(new Message('ok')));
  t.same(received, ['after drop']);
});
