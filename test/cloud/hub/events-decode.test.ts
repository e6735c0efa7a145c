/*
 * Telemetry in the fieldlink.readings format through the local hub: the packer's size is the
 * hub's metered size, and `fieldlink hub events --decode` prints one reading per line.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import t from 'tap';
import common from 'azure-iot-common';
import { decodedEventLines, formatEvent } from '../../../cloud/hub/cli.js';
import { readEvents, type StoredEvent } from '../../../cloud/hub/event-store.js';
import { planBatch, type TelemetryMessage } from '../../../gateway/src/app/packer.js';
import { BILLING_UNIT_BYTES } from '../../../gateway/src/domain/packer.js';
import { deviceClientFor, startTestHub } from '../../helpers/hub.js';
import { within } from '../../helpers/deadline.js';
import { noisyReadings } from '../../helpers/readings.js';

const { Message } = common;
const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
const CLI = join(ROOT, 'dist', 'cli', 'fieldlink.js');

function toSdk(m: TelemetryMessage): InstanceType<typeof Message> {
  const msg = new Message(m.body);
  msg.messageId = m.messageId;
  // The SDK's types list only text encodings; IoT Hub and the SDK pass any value through.
  msg.contentType = m.contentType as 'application/json';
  msg.contentEncoding = m.contentEncoding as 'utf-8';
  for (const [k, v] of Object.entries(m.properties)) msg.properties.add(k, v);
  return msg;
}

t.test('packed telemetry through the hub, decoded by `hub events --decode`', async (t) => {
  const th = await startTestHub();
  t.teardown(() => th.cleanup());
  th.hub.createDevice('gw-01');
  const device = await deviceClientFor(th, th.hub.deviceConnectionString('gw-01'));
  t.teardown(() => device.close());
  await within(5000, 'open', device.open());

  const readings = noisyReadings(3000, 3);
  const rows = readings.map((reading, i) => ({ id: 501 + i, reading }));
  const json = planBatch(rows, { gatewayId: 'gw-01', encoding: 'json' });
  const gzip = planBatch(rows.slice(json.plan.rowIds.length), { gatewayId: 'gw-01', encoding: 'json+gzip' });
  const sent = [json, gzip];
  for (const { message } of sent) await within(5000, 'send', device.sendEvent(toSdk(message)));
  await within(5000, 'send other', device.sendEvent(new Message('{"hello":1}')));

  const events = readEvents(th.hub.db, { deviceId: 'gw-01', limit: 10 });
  t.equal(events.length, 3);
  sent.forEach(({ message }, i) => {
    const e = events[i] as StoredEvent;
    t.equal(e.size, message.size, `${message.contentEncoding}: the packer's size is what the hub meters`);
    t.ok(e.size <= BILLING_UNIT_BYTES, 'one billed unit');
    t.equal(e.messageId, message.messageId);
    t.same(e.properties, message.properties, 'routing keys arrive as application properties');
  });
  t.equal(events[1]?.bodyEncoding, 'base64', 'the gzip body is stored as base64');

  const expected = [...json.plan.rowIds, ...gzip.plan.rowIds].map((id) => JSON.stringify(readings[id - 501]));
  t.same([...(decodedEventLines(events[0] as StoredEvent) ?? []), ...(decodedEventLines(events[1] as StoredEvent) ?? [])], expected, 'decodedEventLines');
  t.equal(decodedEventLines(events[2] as StoredEvent), undefined, 'not telemetry');
  const broken = { ...(events[1] as StoredEvent), contentEncoding: 'utf-8' };
  t.equal(decodedEventLines(broken), undefined, 'telemetry that does not decode is printed raw');

  const { stdout } = await promisify(execFile)(process.execPath, [CLI, 'hub', 'events', '--data', join(th.dir, 'hub'), '--decode'], { cwd: ROOT, timeout: 20_000, maxBuffer: 16 * 1024 * 1024 });
  const lines = stdout.trimEnd().split('\n');
  t.same(lines.slice(0, -1), expected, 'one JSON reading per line');
  t.equal(lines.at(-1), formatEvent(events[2] as StoredEvent), 'other events as the raw line');
  t.comment(`${json.plan.rowIds.length} readings as json and ${gzip.plan.rowIds.length} as json+gzip, one 4 KB unit each`);
});
