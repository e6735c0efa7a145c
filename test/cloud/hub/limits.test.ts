import t from 'tap';
import common from 'azure-iot-common';
import { deviceClientFor, startTestHub, type DeviceClient, type TestHub } from '../../helpers/hub.js';
import { within } from '../../helpers/deadline.js';

const { Message } = common;

async function send(client: DeviceClient, body = 'x'): Promise<string> {
  return within(5000, 'sendEvent', client.sendEvent(new Message(body))).then(
    () => 'ok',
    (e: unknown) => (e as Error).constructor.name,
  );
}

/** The hub's description of a refusal: the SDK's message is generic, the AMQP error keeps the text. */
function reason(err: unknown): string {
  const e = err as { message?: string; amqpError?: { description?: string } };
  return `${e.message ?? ''} | ${e.amqpError?.description ?? ''}`;
}

async function connect(th: TestHub, id: string): Promise<DeviceClient> {
  if (!th.hub.registry.get(id)) th.hub.createDevice(id);
  // Tokens valid two days, so a hub clock moved ahead (to just before midnight) still accepts them.
  const client = await deviceClientFor(th, th.hub.deviceConnectionString(id), {
    tokenRenewal: { tokenValidTimeInSeconds: 2 * 86400, tokenRenewalMarginInSeconds: 3600 },
  });
  await within(5000, `open ${id}`, client.open());
  return client;
}

// The hub clock stands still unless a test moves it, so slow sends on a loaded machine do not
// refill the buckets between them.
t.test('per-device rate: over it, sends fail with ThrottlingError and succeed after the window', async (t) => {
  let clock = Date.now();
  const th = await startTestHub({ d2cPerDevicePerSecond: 5, now: () => clock });
  t.teardown(() => th.cleanup());
  const a = await connect(th, 'a');
  t.teardown(() => a.close());
  const b = await connect(th, 'b');
  t.teardown(() => b.close());
  clock += 1000; // a full bucket, whatever the opens took
  const results = [];
  for (let i = 0; i < 6; i++) results.push(await send(a));
  t.same(results, ['ok', 'ok', 'ok', 'ok', 'ok', 'ThrottlingError'], 'five a second, the sixth throttled');
  t.equal(await send(b), 'ok', 'another device has its own allowance');
  clock += 1000;
  t.equal(await send(a), 'ok', 'after the window the device may send again');
  const m = th.hub.meter.snapshot().devices.a;
  t.equal(m?.['refused.d2c.ThrottlingException'], 1, 'the refusal is metered');
  t.equal(m?.['d2c.messages'], 6, 'throttled messages are not stored');
});

t.test('hub-wide rate applies across devices', async (t) => {
  let clock = Date.now();
  const th = await startTestHub({ d2cPerSecond: 3, now: () => clock });
  t.teardown(() => th.cleanup());
  const a = await connect(th, 'a');
  t.teardown(() => a.close());
  const b = await connect(th, 'b');
  t.teardown(() => b.close());
  clock += 1000;
  const results = [await send(a), await send(b), await send(a), await send(b)];
  t.same(results, ['ok', 'ok', 'ok', 'ThrottlingError']);
  const refusal = await within(5000, 'refusal text', a.sendEvent(new Message('x'))).catch((e: unknown) => e as Error);
  t.match(reason(refusal), /over 3 device-to-cloud sends a second; retry in \d+ ms/, 'the error says which limit and when');
});

t.test('daily quota: refused with IotHubQuotaExceededError until 00:00 UTC on the hub clock, across a restart', async (t) => {
  const now = Date.now();
  const midnight = Date.UTC(new Date(now).getUTCFullYear(), new Date(now).getUTCMonth(), new Date(now).getUTCDate() + 1);
  // Hub time stands 30 s before the next UTC midnight (ahead of real time by less than a day).
  let hubTime = midnight - 30_000;
  const clock = (): number => hubTime;
  const th = await startTestHub({ dailyQuotaUnits: 3, now: clock });
  t.teardown(() => th.cleanup());
  const dev = await connect(th, 'dev');
  t.teardown(() => dev.close());
  t.same([await send(dev), await send(dev)], ['ok', 'ok']);
  t.equal(await send(dev, 'y'.repeat(5000)), 'IotHubQuotaExceededError', 'a 2-unit message does not fit the 1 unit left');
  t.equal(await send(dev), 'ok', 'a 1-unit message still fits');
  t.equal(await send(dev), 'IotHubQuotaExceededError', 'the quota is used up');

  await th.restart({ dailyQuotaUnits: 3, now: clock });
  const again = await connect(th, 'dev');
  t.teardown(() => again.close());
  t.equal(await send(again), 'IotHubQuotaExceededError', 'used units survive a restart');
  const refusal = await within(5000, 'refusal text', again.sendEvent(new Message('x'))).catch((e: unknown) => e as Error);
  t.match(reason(refusal), new RegExp(`resets at ${new Date(midnight).toISOString()}`), 'the error says when the quota resets');

  hubTime += 60_000; // past midnight on the hub clock
  t.equal(await send(again), 'ok', 'a new UTC day brings a fresh quota');
  const meter = th.hub.meter.snapshot();
  t.equal(meter.devices.dev?.['refused.d2c.IotHubQuotaExceeded'], 4);
  t.equal(meter.totals[`quota.units.${new Date(midnight - 1).toISOString().slice(0, 10)}`], 3, 'units counted against the old day');
  t.equal(meter.totals[`quota.units.${new Date(midnight).toISOString().slice(0, 10)}`], 1, 'and the new day');
});
