import { createServer, type Socket } from 'node:net';
import t, { type Test } from 'tap';
import common from 'azure-iot-common';
import { systemClock, type Clock } from '../../../common/clock.js';
import { readEvents } from '../../../cloud/hub/event-store.js';
import { AmqpUplink, type AmqpUplinkOptions } from '../../../gateway/src/adapters/amqp-uplink.js';
import { isUplinkError, type IncomingCommand, type TwinSection, type UplinkError } from '../../../gateway/src/ports/uplink.js';
import { collectFeedback, registryFor, serviceClientFor, startTestHub, type TestHub } from '../../helpers/hub.js';
import { eventually, within } from '../../helpers/deadline.js';

const WAIT = 10_000;
const LONG_TOKENS = { tokenValidTimeInSeconds: 2 * 86400, tokenRenewalMarginInSeconds: 3600 };

async function hubWith(t: Test, opts: Parameters<typeof startTestHub>[0] = {}): Promise<TestHub> {
  const th = await startTestHub(opts);
  t.teardown(() => th.cleanup());
  return th;
}

async function openUplink(t: Test, th: TestHub, id: string, opts: Partial<AmqpUplinkOptions> = {}): Promise<AmqpUplink> {
  if (!th.hub.registry.get(id)) th.hub.createDevice(id);
  const uplink = new AmqpUplink({ connectionString: th.hub.deviceConnectionString(id), ca: th.hub.ca, tokenRenewal: LONG_TOKENS, deadlineMs: 5000, ...opts });
  t.teardown(() => uplink.close());
  await within(WAIT, `open ${id}`, uplink.open());
  return uplink;
}

async function failure(p: Promise<unknown>, what: string): Promise<UplinkError> {
  return within(WAIT, what, p).then(
    () => {
      throw new Error(`${what}: expected a failure`);
    },
    (e: unknown) => {
      if (!isUplinkError(e)) throw e;
      return e;
    },
  );
}

const msg = (id: string, body = 'x') => ({ messageId: id, body: Buffer.from(body), contentType: 'application/json', contentEncoding: 'utf-8', properties: { flSchema: 'test' } });

t.test('send resolves once the hub accepted and stored the message, with its properties', async (t) => {
  const th = await hubWith(t);
  const uplink = await openUplink(t, th, 'dev');
  t.ok(uplink.isOpen);
  await within(WAIT, 'send', uplink.send(msg('m-1', '{"a":1}')));
  const [stored] = await eventually(WAIT, 'stored', () => {
    const e = readEvents(th.hub.db, { deviceId: 'dev', limit: 10 });
    return e.length > 0 ? e : undefined;
  });
  t.equal(stored?.messageId, 'm-1');
  t.equal(stored?.body, '{"a":1}');
  t.equal(stored?.contentEncoding, 'utf-8');
  t.equal(stored?.contentType, 'application/json');
  t.match(stored?.properties, { flSchema: 'test' });
});

t.test('over the per-device rate a send is classified throttled (retryable)', async (t) => {
  const clock = Date.now();
  const th = await hubWith(t, { d2cPerDevicePerSecond: 2, now: () => clock });
  const uplink = await openUplink(t, th, 'dev');
  await within(WAIT, 'send 1', uplink.send(msg('t-1')));
  await within(WAIT, 'send 2', uplink.send(msg('t-2')));
  const e = await failure(uplink.send(msg('t-3')), 'send 3');
  t.equal(e.kind, 'throttled');
  t.equal(e.code, 'HUB_THROTTLED');
  t.equal(e.retryable, true);
  t.match(e.message, /per device|a second/, 'the hub reason is in the message');
  t.ok(uplink.isOpen, 'throttling does not close the uplink');
});

t.test('an exhausted daily quota is classified quota, retryAt = next 00:00 UTC on the uplink clock', async (t) => {
  const now = Date.now();
  const midnight = Date.UTC(new Date(now).getUTCFullYear(), new Date(now).getUTCMonth(), new Date(now).getUTCDate() + 1);
  const hubTime = midnight - 30_000;
  const th = await hubWith(t, { dailyQuotaUnits: 1, now: () => hubTime });
  const clock: Clock = { ...systemClock, now: () => hubTime };
  const uplink = await openUplink(t, th, 'dev', { clock });
  await within(WAIT, 'send 1', uplink.send(msg('q-1')));
  const e = await failure(uplink.send(msg('q-2')), 'send 2');
  t.equal(e.kind, 'quota');
  t.equal(e.code, 'HUB_QUOTA_EXCEEDED');
  t.equal(e.retryAt, midnight);
  t.match(e.message, /resets at/, 'the hub reason is in the message');
});

t.test('a wrong key fails open with auth, not retried by the SDK', async (t) => {
  const th = await hubWith(t);
  th.hub.createDevice('dev');
  const bad = th.hub.deviceConnectionString('dev').replace(/SharedAccessKey=[^;]+/, `SharedAccessKey=${Buffer.alloc(32, 7).toString('base64')}`);
  const uplink = new AmqpUplink({ connectionString: bad, ca: th.hub.ca, deadlineMs: 5000 });
  t.teardown(() => uplink.close());
  const e = await failure(uplink.open(), 'open with a wrong key');
  t.equal(e.kind, 'auth');
  t.equal(e.code, 'HUB_AUTH_FAILED');
  t.match(e.message, /credentials/);
  t.notOk(uplink.isOpen);
  t.equal((await failure(uplink.send(msg('never')), 'send when closed')).kind, 'unreachable', 'send on a closed uplink fails at once');
});

t.test('the deadline fires quickly on a port that never answers, and tears the client down', async (t) => {
  const sockets: Socket[] = [];
  const server = createServer((s) => sockets.push(s)); // accepts, never speaks TLS
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  const port = (server.address() as { port: number }).port;
  const cs = `HostName=localhost;DeviceId=dev;SharedAccessKey=${Buffer.alloc(32, 1).toString('base64')};GatewayHostName=localhost:${port}`;
  const uplink = new AmqpUplink({ connectionString: cs, deadlineMs: 300 });
  t.teardown(() => uplink.close());
  const started = performance.now();
  const e = await failure(uplink.open(), 'open on a silent port');
  const took = performance.now() - started;
  t.equal(e.kind, 'timeout');
  t.equal(e.code, 'TIMEOUT');
  t.ok(took < 2000, `failed after ${Math.round(took)} ms`);
  t.notOk(uplink.isOpen, 'the hung client is gone; the caller opens a new one');
});

t.test('C2D commands can be completed and rejected', async (t) => {
  const th = await hubWith(t);
  const service = serviceClientFor(th);
  t.teardown(() => service.close());
  await within(WAIT, 'service open', service.open());
  const feedback = await within(WAIT, 'feedback', collectFeedback(service));
  const uplink = await openUplink(t, th, 'dev');
  const got: IncomingCommand[] = [];
  uplink.onCommand((c) => {
    got.push(c);
    void (c.messageId === 'c-reject' ? c.reject() : c.complete());
  });
  for (const id of ['c-complete', 'c-reject']) {
    const m = new common.Message(`{"type":"sleep","id":"${id}"}`);
    m.messageId = id;
    m.ack = 'full';
    m.properties.add('kind', 'command');
    await within(WAIT, `send ${id}`, service.send('dev', m));
  }
  t.equal((await feedback.waitFor((r) => r.originalMessageId === 'c-complete', WAIT)).statusCode, 'Success');
  t.equal((await feedback.waitFor((r) => r.originalMessageId === 'c-reject', WAIT)).statusCode, 'Rejected');
  t.equal(got[0]?.body.toString(), '{"type":"sleep","id":"c-complete"}');
  t.same(got[0]?.properties, { kind: 'command' });
  t.equal(got.length, 2);
  await t.rejects(got[0]?.complete() ?? Promise.resolve(), RangeError, 'a command is settled once');
});

t.test('commands settled in the same tick keep their own outcomes (rhea would merge their dispositions into one range)', async (t) => {
  const th = await hubWith(t);
  const service = serviceClientFor(th);
  t.teardown(() => service.close());
  await within(WAIT, 'service open', service.open());
  const feedback = await within(WAIT, 'feedback', collectFeedback(service));
  const uplink = await openUplink(t, th, 'dev');
  const got: IncomingCommand[] = [];
  uplink.onCommand((c) => got.push(c));
  const ids = ['t-complete-1', 't-reject-2', 't-complete-3', 't-reject-4'];
  for (const id of ids) {
    const m = new common.Message('{"type":"sleep"}');
    m.messageId = id;
    m.ack = 'full';
    await within(WAIT, `send ${id}`, service.send('dev', m));
  }
  await eventually(WAIT, 'all four received', () => (got.length === 4 ? true : undefined));
  // One synchronous burst, as the gateway settles a batch of held commands.
  await Promise.all(got.map((c) => (c.messageId?.includes('reject') ? c.reject() : c.complete())));
  for (const id of ids) {
    const r = await feedback.waitFor((f) => f.originalMessageId === id, WAIT);
    t.equal(r.statusCode, id.includes('reject') ? 'Rejected' : 'Success', id);
  }
});

t.test('desired patches arrive; reported patches land in the hub twin; getTwin is fresh', async (t) => {
  const th = await hubWith(t);
  const uplink = await openUplink(t, th, 'dev');
  const patches: TwinSection[] = [];
  uplink.onDesiredPatch((p) => patches.push(p));
  const registry = registryFor(th);
  await within(WAIT, 'updateTwin', registry.updateTwin('dev', { properties: { desired: { samplingS: 30 } } }, '*'));
  const patch = await eventually(WAIT, 'desired patch', () => patches.find((p) => p.samplingS === 30));
  t.equal(typeof patch.$version, 'number');
  await within(WAIT, 'report', uplink.reportProperties({ fw: '0.1.0', outbox: { depth: 3 } }));
  t.match(th.hub.registry.getTwin('dev').reported, { fw: '0.1.0', outbox: { depth: 3 } });
  const twin = await within(WAIT, 'getTwin', uplink.getTwin());
  t.equal(twin.desired.samplingS, 30);
  t.equal(twin.reported.fw, '0.1.0');
});

t.test('a dropped connection marks the uplink closed and reopening works', async (t) => {
  const th = await hubWith(t);
  const uplink = await openUplink(t, th, 'dev');
  const lost: UplinkError[] = [];
  uplink.onDisconnect((e) => lost.push(e));
  th.hub.dropAmqpConnections();
  await eventually(WAIT, 'disconnect seen', () => (uplink.isOpen ? undefined : true));
  t.ok(lost.length >= 1, 'onDisconnect called');
  await within(WAIT, 'reopen', uplink.open());
  await within(WAIT, 'send after reopen', uplink.send(msg('after')));
});
