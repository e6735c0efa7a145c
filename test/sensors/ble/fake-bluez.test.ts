import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dbus from 'dbus-next';
import nodeBle from 'node-ble';
import t, { type Test } from 'tap';
import { startFakeBluez, type EmittedBleReading, type FakeBluez, type FakeBluezOptions } from '../../../sensors/ble/emulator/fake-bluez.js';
import { UUID } from '../../../sensors/ble/emulator/uuids.js';
import { startPrivateBus, type PrivateBus } from '../../../sensors/dbus/private-bus.js';
import { eventually, within } from '../../helpers/deadline.js';

const HR_ADDRESS = 'AA:BB:CC:DD:EE:01';
const ENV_ADDRESS = 'AA:BB:CC:DD:EE:02';
const devicePath = (address: string, adapter = 'hci0'): string => `/org/bluez/${adapter}/dev_${address.replace(/:/g, '_')}`;

/*
 * Decoders of our own (not the emulator's encoders run backwards), so that the test checks the
 * bytes against the specification as well as against the emulator's log.
 */
function decodeHeartRate(b: Buffer): { bpm: number; rr: number[]; energyKj?: number } {
  const flags = b.readUInt8(0);
  let o = 1;
  const bpm = flags & 0x01 ? b.readUInt16LE(o) : b.readUInt8(o);
  o += flags & 0x01 ? 2 : 1;
  let energyKj: number | undefined;
  if (flags & 0x08) {
    energyKj = b.readUInt16LE(o);
    o += 2;
  }
  const rr: number[] = [];
  if (flags & 0x10) {
    if (o + 2 > b.length) throw new RangeError('RR-interval flag set but no RR-interval');
    for (; o + 2 <= b.length; o += 2) rr.push(b.readUInt16LE(o) / 1024);
  }
  if (o !== b.length) throw new RangeError('trailing bytes');
  return energyKj === undefined ? { bpm, rr } : { bpm, rr, energyKj };
}

function decodeIeeeFloat(b: Buffer, offset: number): number {
  const mantissa = b.readIntLE(offset, 3);
  const exponent = b.readInt8(offset + 3);
  return exponent < 0 ? mantissa / 10 ** -exponent : mantissa * 10 ** exponent;
}

/** Everything a test starts, stopped in reverse order even when the test fails. */
function cleanups(t: Test): (fn: () => unknown) => void {
  const stack: (() => unknown)[] = [];
  t.teardown(async () => {
    for (const fn of stack.reverse()) await fn();
  });
  return (fn) => void stack.push(fn);
}

interface Rig {
  bus: PrivateBus;
  fake: FakeBluez;
  bluetooth: nodeBle.Bluetooth;
  onCleanup: (fn: () => unknown) => void;
}

async function rig(t: Test, opts: Partial<FakeBluezOptions> = {}): Promise<Rig> {
  const onCleanup = cleanups(t);
  const bus = await startPrivateBus();
  onCleanup(() => bus.stop());
  const fake = await startFakeBluez({ address: bus.address, ...opts });
  onCleanup(() => fake.stop());
  // node-ble connects with dbus-next's systemBus(), which reads this variable when called.
  const previous = process.env.DBUS_SYSTEM_BUS_ADDRESS;
  process.env.DBUS_SYSTEM_BUS_ADDRESS = bus.address;
  let session: ReturnType<typeof nodeBle.createBluetooth>;
  try {
    session = nodeBle.createBluetooth();
  } finally {
    if (previous === undefined) delete process.env.DBUS_SYSTEM_BUS_ADDRESS;
    else process.env.DBUS_SYSTEM_BUS_ADDRESS = previous;
  }
  onCleanup(() => session.destroy());
  return { bus, fake, bluetooth: session.bluetooth, onCleanup };
}

/** A plain D-Bus client on the private bus, to watch the ObjectManager as BlueZ clients do. */
async function objectManager(r: Rig): Promise<{
  added: string[];
  removed: { path: string; interfaces: string[] }[];
  managed(): Promise<Record<string, Record<string, unknown>>>;
}> {
  const client = dbus.sessionBus({ busAddress: r.bus.address });
  client.on('error', () => undefined);
  r.onCleanup(() => client.disconnect());
  const root = await client.getProxyObject('org.bluez', '/');
  const om = root.getInterface('org.freedesktop.DBus.ObjectManager');
  const added: string[] = [];
  const removed: { path: string; interfaces: string[] }[] = [];
  om.on('InterfacesAdded', (path: string) => added.push(path));
  om.on('InterfacesRemoved', (path: string, interfaces: string[]) => removed.push({ path, interfaces }));
  const getManaged = om['GetManagedObjects'];
  if (getManaged === undefined) throw new Error('no GetManagedObjects');
  return { added, removed, managed: async () => (await getManaged.call(om)) as Record<string, Record<string, unknown>> };
}

async function discoverAndConnect(r: Rig, address: string): Promise<{ adapter: nodeBle.Adapter; device: nodeBle.Device }> {
  const adapter = await r.bluetooth.getAdapter('hci0');
  if (!(await adapter.isDiscovering())) await within(2000, 'startDiscovery', adapter.startDiscovery());
  const device = await adapter.waitDevice(address, 2000, 20);
  await within(2000, 'connect', device.connect());
  return { adapter, device };
}

async function characteristic(device: nodeBle.Device, service: string, chr: string): Promise<nodeBle.GattCharacteristic> {
  const gatt = await within(2000, 'gatt', device.gatt());
  return (await gatt.getPrimaryService(service)).getCharacteristic(chr);
}

function collect(chr: nodeBle.GattCharacteristic): Buffer[] {
  const got: Buffer[] = [];
  chr.on('valuechanged', (b: Buffer) => got.push(b));
  return got;
}

const notified = (entries: readonly EmittedBleReading[], kind: string): EmittedBleReading[] => entries.filter((e) => e.via === 'notify' && e.kind === kind);

t.test('node-ble: discover, connect, read battery, heart-rate notifications match the emitted log', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-ble-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const readingLog = join(dir, 'emitted.jsonl');
  const r = await rig(t, { readingLog });
  const w = r.fake.addWearable({ address: HR_ADDRESS, name: 'HR Band', services: ['heart_rate', 'battery'], rateHz: 25, seed: 7 });
  const { adapter, device } = await discoverAndConnect(r, HR_ADDRESS);
  t.equal(await adapter.getAddress(), 'F0:0D:00:00:00:00');
  t.equal(await device.getName(), 'HR Band');
  t.equal(await device.getAddress(), HR_ADDRESS);
  t.equal(await device.isConnected(), true);
  t.equal(w.connected, true);

  const gatt = await within(2000, 'gatt', device.gatt());
  t.same((await gatt.services()).sort(), [UUID.heartRateService, UUID.batteryService].sort());
  const battery = await (await gatt.getPrimaryService(UUID.batteryService)).getCharacteristic(UUID.batteryLevel);
  t.same(await battery.getFlags(), ['read', 'notify']);
  const level = await within(2000, 'readValue', battery.readValue());
  const lastRead = w.emitted.filter((e) => e.kind === 'battery' && e.via === 'read').at(-1);
  t.equal(level.length, 1);
  t.equal(level.readUInt8(0), lastRead?.value, 'battery read = logged value');
  t.equal(lastRead?.source, `ble:${HR_ADDRESS}/battery`);
  t.equal(lastRead?.unit, '%');

  const hr = await (await gatt.getPrimaryService(UUID.heartRateService)).getCharacteristic(UUID.heartRateMeasurement);
  t.same(await hr.getFlags(), ['notify']);
  const got = collect(hr);
  await within(2000, 'startNotifications', hr.startNotifications());
  await eventually(3000, '3 notifications', () => (got.length >= 3 ? true : undefined));
  await hr.stopNotifications();
  const sent = notified(w.emitted, 'heart_rate');
  t.ok(sent.length >= got.length, 'nothing arrived that was not sent');
  for (const [i, buf] of got.slice(0, 3).entries()) {
    const entry = sent[i];
    t.equal(buf.toString('hex'), entry?.payload, `payload ${i} as sent`);
    const decoded = decodeHeartRate(buf);
    t.equal(decoded.bpm, entry?.value, `bpm ${i} = logged value`);
    const rr = w.emitted.find((e) => e.kind === 'rr_interval' && e.deviceSeq === entry?.deviceSeq);
    t.same(decoded.rr, [rr?.value], `RR-interval ${i} = logged value`);
    t.equal(entry?.unit, '/min');
  }
  const seqs = sent.map((e) => e.deviceSeq);
  t.same(seqs, [...seqs].sort((a, b) => a - b), 'per-device counter increases');
  t.equal(new Set(seqs).size, seqs.length);
  t.ok(w.emitted.some((e) => e.kind === 'energy_expended'), 'energy expended in the first measurement');

  await device.disconnect();
  t.equal(w.connected, false);
  await adapter.stopDiscovery();
  t.equal(r.fake.discovering(), false);

  const lines = readFileSync(readingLog, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as EmittedBleReading);
  t.same(lines, r.fake.emitted, 'the JSON-lines log holds what `emitted` holds');

  const members = new Set(r.fake.calls.map((c) => `${c.interface.replace(/^org\.(bluez|freedesktop\.DBus)\./, '')}.${c.member}`));
  for (const m of ['AgentManager1.RegisterAgent']) t.notOk(members.has(m), `node-ble does not call ${m}`);
  for (const m of ['Adapter1.SetDiscoveryFilter', 'Adapter1.StartDiscovery', 'Adapter1.StopDiscovery', 'Device1.Connect', 'Device1.Disconnect', 'GattCharacteristic1.ReadValue', 'GattCharacteristic1.StartNotify', 'GattCharacteristic1.StopNotify', 'Properties.Get', 'Introspectable.Introspect']) {
    t.ok(members.has(m), `node-ble called ${m}`);
  }
  t.notOk(members.has('ObjectManager.GetManagedObjects'), 'node-ble never asks the ObjectManager');
});

t.test('devices appear only while discovering, with InterfacesAdded', async (t) => {
  const r = await rig(t);
  const om = await objectManager(r);
  const w = r.fake.addWearable({ address: HR_ADDRESS, services: ['battery'] });
  const adapter = await r.bluetooth.getAdapter('hci0');
  t.same(await adapter.devices(), [], 'no device before discovery');
  t.notOk(devicePath(HR_ADDRESS) in (await om.managed()));
  await adapter.startDiscovery();
  await eventually(2000, 'InterfacesAdded', () => (om.added.includes(devicePath(HR_ADDRESS)) ? true : undefined));
  t.equal(w.exported, true);
  t.same(await adapter.devices(), [HR_ADDRESS]);
  const managed = await om.managed();
  t.ok(managed[devicePath(HR_ADDRESS)]?.['org.bluez.Device1'], 'GetManagedObjects lists the device');
  t.ok(managed['/org/bluez/hci0']?.['org.bluez.Adapter1'], 'and the adapter');
  t.notOk(Object.keys(managed).some((p) => p.includes('/service')), 'no GATT objects before Connect');
  await t.rejects(adapter.startDiscovery(), /already in progress/);
  await adapter.stopDiscovery();
  t.same(await adapter.devices(), [HR_ADDRESS], 'found devices stay after StopDiscovery');
});

t.test('disconnect fault: node-ble emits disconnect and notifications stop', async (t) => {
  const r = await rig(t);
  const w = r.fake.addWearable({ address: HR_ADDRESS, services: ['heart_rate'], rateHz: 50 });
  const { device } = await discoverAndConnect(r, HR_ADDRESS);
  const hr = await characteristic(device, UUID.heartRateService, UUID.heartRateMeasurement);
  const got = collect(hr);
  await hr.startNotifications();
  await eventually(2000, 'first notification', () => (got.length > 0 ? true : undefined));
  const disconnected = new Promise<{ connected: boolean }>((resolve) => device.once('disconnect', resolve));
  w.disconnect();
  t.same(await within(2000, "'disconnect' event", disconnected), { connected: false });
  t.equal(await device.isConnected(), false);
  const count = got.length;
  const sent = notified(w.emitted, 'heart_rate').length;
  await new Promise((resolve) => setTimeout(resolve, 150));
  t.equal(got.length, count, 'no notification after the disconnect');
  t.equal(notified(w.emitted, 'heart_rate').length, sent, 'and none sent');
  // It stays in range: node-ble can connect again and find its services.
  await within(2000, 'reconnect', device.connect());
  const again = await characteristic(device, UUID.heartRateService, UUID.heartRateMeasurement);
  t.equal(await again.isNotifying(), false, 'notifications are off after reconnecting');
});

t.test('vanish: link drops and the device object is removed; reappear brings it back', async (t) => {
  const r = await rig(t);
  const om = await objectManager(r);
  const w = r.fake.addWearable({ address: HR_ADDRESS, services: ['heart_rate', 'battery'] });
  const { adapter, device } = await discoverAndConnect(r, HR_ADDRESS);
  await within(2000, 'gatt', device.gatt());
  const disconnected = new Promise<void>((resolve) => device.once('disconnect', () => resolve()));
  w.vanish();
  await within(2000, "'disconnect' event", disconnected);
  await eventually(2000, 'InterfacesRemoved', () => (om.removed.some((x) => x.path === devicePath(HR_ADDRESS)) ? true : undefined));
  const removal = om.removed.find((x) => x.path === devicePath(HR_ADDRESS));
  t.ok(removal?.interfaces.includes('org.bluez.Device1'));
  t.ok(om.removed.some((x) => x.path.startsWith(`${devicePath(HR_ADDRESS)}/service`)), 'GATT objects removed too');
  const managed = await om.managed();
  t.notOk(Object.keys(managed).some((p) => p.startsWith(devicePath(HR_ADDRESS))), 'gone from GetManagedObjects');
  t.same(await adapter.devices(), []);
  await t.rejects(device.connect(), 'Connect on a removed object fails');

  om.added.length = 0;
  w.reappear();
  const back = await adapter.waitDevice(HR_ADDRESS, 2000, 20);
  t.ok(om.added.includes(devicePath(HR_ADDRESS)), 'InterfacesAdded again while discovering');
  await within(2000, 'connect after reappear', back.connect());
  t.equal(await back.isConnected(), true);
});

t.test('truncate: the next notification carries a short payload', async (t) => {
  const r = await rig(t);
  const w = r.fake.addWearable({ address: HR_ADDRESS, services: ['heart_rate'], rateHz: 40 });
  const { device } = await discoverAndConnect(r, HR_ADDRESS);
  const hr = await characteristic(device, UUID.heartRateService, UUID.heartRateMeasurement);
  const got = collect(hr);
  w.truncateNext(1);
  await hr.startNotifications();
  await eventually(2000, '3 notifications', () => (got.length >= 3 ? true : undefined));
  const sent = notified(w.emitted, 'heart_rate');
  const [first, second] = got;
  t.equal(sent[0]?.fault, 'truncated');
  t.equal(first?.toString('hex'), sent[0]?.payload);
  // The first measurement also carries Energy Expended: 6 bytes, cut to 3.
  t.equal(first?.length, 3, 'half the bytes');
  t.throws(() => decodeHeartRate(first ?? Buffer.alloc(0)), RangeError, 'a strict decoder rejects it');
  t.equal(sent[1]?.fault, undefined, 'only the next one');
  t.equal(second?.length, 4);
  t.equal(decodeHeartRate(second ?? Buffer.alloc(0)).bpm, sent[1]?.value);
});

t.test('two wearables at once, each with its own values', async (t) => {
  const r = await rig(t);
  const a = r.fake.addWearable({ address: HR_ADDRESS, services: ['heart_rate', 'battery'], rateHz: 30 });
  const b = r.fake.addWearable({ address: ENV_ADDRESS, name: 'Env Tag', services: ['environmental_sensing', 'health_thermometer'], rateHz: 30 });
  const { adapter, device: devA } = await discoverAndConnect(r, HR_ADDRESS);
  const devB = await adapter.waitDevice(ENV_ADDRESS, 2000, 20);
  await within(2000, 'connect B', devB.connect());
  t.same((await adapter.devices()).sort(), [HR_ADDRESS, ENV_ADDRESS]);

  const hr = await characteristic(devA, UUID.heartRateService, UUID.heartRateMeasurement);
  const gattB = await within(2000, 'gatt B', devB.gatt());
  const env = await gattB.getPrimaryService(UUID.environmentalSensingService);
  t.same((await env.characteristics()).sort(), [UUID.temperature, UUID.humidity, UUID.uvIndex].sort());
  const temp = await env.getCharacteristic(UUID.temperature);
  const humidity = await (await env.getCharacteristic(UUID.humidity)).readValue();
  const skin = await (await gattB.getPrimaryService(UUID.healthThermometerService)).getCharacteristic(UUID.temperatureMeasurement);
  t.same(await skin.getFlags(), ['indicate']);
  await t.rejects(skin.readValue(), /Read not permitted/, 'indicate-only characteristic');

  const gotHr = collect(hr);
  const gotTemp = collect(temp);
  const gotSkin = collect(skin);
  await Promise.all([hr.startNotifications(), temp.startNotifications(), skin.startNotifications()]);
  await eventually(3000, '3 of each', () => (gotHr.length >= 3 && gotTemp.length >= 3 && gotSkin.length >= 3 ? true : undefined));

  const sentHr = notified(a.emitted, 'heart_rate');
  const sentTemp = notified(b.emitted, 'temperature');
  const sentSkin = notified(b.emitted, 'skin_temperature');
  for (let i = 0; i < 3; i++) {
    t.equal(decodeHeartRate(gotHr[i] ?? Buffer.alloc(0)).bpm, sentHr[i]?.value, `A heart rate ${i}`);
    t.equal((gotTemp[i] ?? Buffer.alloc(2)).readInt16LE(0) / 100, sentTemp[i]?.value, `B temperature ${i}`);
    const s = gotSkin[i] ?? Buffer.alloc(6);
    t.equal(s.readUInt8(0), 0x04, 'Celsius, with temperature type');
    t.equal(decodeIeeeFloat(s, 1), sentSkin[i]?.value, `B skin temperature ${i}`);
  }
  const lastHumidity = b.emitted.filter((e) => e.kind === 'humidity' && e.via === 'read').at(-1);
  t.equal(humidity.readUInt16LE(0) / 100, lastHumidity?.value, 'humidity read');
  t.ok(a.emitted.every((e) => e.source.startsWith(`ble:${HR_ADDRESS}/`)));
  t.ok(b.emitted.every((e) => e.source.startsWith(`ble:${ENV_ADDRESS}/`)));
  t.equal(r.fake.emitted.length, a.emitted.length + b.emitted.length);
});

t.test('slowConnect delays Connect; storm floods notifications', async (t) => {
  const r = await rig(t);
  const w = r.fake.addWearable({ address: HR_ADDRESS, services: ['battery'], rateHz: 2 });
  w.slowConnect(300);
  const adapter = await r.bluetooth.getAdapter('hci0');
  await adapter.startDiscovery();
  const device = await adapter.waitDevice(HR_ADDRESS, 2000, 20);
  const t0 = Date.now();
  await within(3000, 'slow connect', device.connect());
  t.ok(Date.now() - t0 >= 290, `connect took ${Date.now() - t0} ms`);
  const battery = await characteristic(device, UUID.batteryService, UUID.batteryLevel);
  const got = collect(battery);
  await battery.startNotifications();
  await within(2000, 'storm', w.storm(200, 300));
  await eventually(1000, 'storm delivered', () => (got.length >= notified(w.emitted, 'battery').length ? true : undefined));
  t.ok(got.length >= 20, `${got.length} notifications in a 300 ms storm at 200 Hz (2 Hz normally)`);
});

t.test('a client leaving the bus ends its discovery and notification sessions, as in BlueZ', async (t) => {
  const r = await rig(t);
  const w = r.fake.addWearable({ address: HR_ADDRESS, services: ['heart_rate'], rateHz: 50 });
  const { device } = await discoverAndConnect(r, HR_ADDRESS);
  const hr = await characteristic(device, UUID.heartRateService, UUID.heartRateMeasurement);
  await hr.startNotifications();
  await eventually(2000, 'notifying', () => (notified(w.emitted, 'heart_rate').length > 0 ? true : undefined));
  t.equal(r.fake.discovering(), true);
  // A second node-ble session (a restarted gateway) joins, then the first one dies.
  const previous = process.env.DBUS_SYSTEM_BUS_ADDRESS;
  process.env.DBUS_SYSTEM_BUS_ADDRESS = r.bus.address;
  const second = nodeBle.createBluetooth();
  if (previous === undefined) delete process.env.DBUS_SYSTEM_BUS_ADDRESS;
  else process.env.DBUS_SYSTEM_BUS_ADDRESS = previous;
  r.onCleanup(() => second.destroy());
  const adapter2 = await second.bluetooth.getAdapter('hci0');
  await t.rejects(adapter2.startDiscovery(), /already in progress/, "node-ble refuses while another client's discovery runs");
  (device as unknown as { dbus: dbus.MessageBus }).dbus.disconnect();
  await eventually(2000, 'discovery ended', () => (r.fake.discovering() ? undefined : true));
  const sent = notified(w.emitted, 'heart_rate').length;
  await new Promise((resolve) => setTimeout(resolve, 100));
  t.equal(notified(w.emitted, 'heart_rate').length, sent, 'notifications stopped');
  t.equal(w.connected, true, 'the connection itself stays (BlueZ does not tie it to a client)');
  await within(2000, 'startDiscovery by the new client', adapter2.startDiscovery());
  t.equal(r.fake.discovering(), true);
});

t.test('stop() releases org.bluez and leaves no dbus-daemon behind', async (t) => {
  const bus = await startPrivateBus();
  t.teardown(() => bus.stop());
  const fake = await startFakeBluez({ address: bus.address, adapters: ['hci0', 'hci1'] });
  t.teardown(() => fake.stop());
  const w = fake.addWearable({ address: HR_ADDRESS, services: ['heart_rate'], adapter: 'hci1', rateHz: 100 });
  const client = dbus.sessionBus({ busAddress: bus.address });
  client.on('error', () => undefined);
  t.teardown(() => client.disconnect());
  const root = await client.getProxyObject('org.bluez', '/org/bluez');
  t.same(root.nodes.map((n) => n.split('/').at(-1)).sort(), ['hci0', 'hci1']);
  const hci1 = (await client.getProxyObject('org.bluez', '/org/bluez/hci1')).getInterface('org.bluez.Adapter1');
  await hci1['StartDiscovery']?.call(hci1);
  await eventually(2000, 'device on hci1', () => (w.exported ? true : undefined));
  t.equal(w.path, devicePath(HR_ADDRESS, 'hci1'));
  await fake.stop();
  const dbusProxy = (await client.getProxyObject('org.freedesktop.DBus', '/org/freedesktop/DBus')).getInterface('org.freedesktop.DBus');
  t.equal(await dbusProxy['NameHasOwner']?.call(dbusProxy, 'org.bluez'), false, 'name released');
  client.disconnect();
  const pid = bus.pid;
  await bus.stop();
  t.ok(pid !== undefined);
  t.throws(() => process.kill(-(pid ?? 0), 0), { code: 'ESRCH' }, 'the daemon process group is gone');
});
