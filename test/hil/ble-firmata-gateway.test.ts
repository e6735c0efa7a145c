/**
 * The other two sensor families through the whole gateway: BLE wearables via the real node-ble
 * over a private D-Bus against the emulated BlueZ, and a Firmata board via johnny-five over a
 * pty, to the local hub. Pairings come from the twin and apply live; pairing state is reported.
 */
import t from 'tap';
import { startPrivateBus } from '../../sensors/dbus/private-bus.js';
import { startFakeBluez } from '../../sensors/ble/emulator/fake-bluez.js';
import { useSystemBus } from '../helpers/system-bus.js';
import { eventually, within } from '../helpers/deadline.js';
import { registryFor } from '../helpers/hub.js';
import { seqAnalysis, seqGaps, startRig } from '../helpers/gateway-rig.js';

const PAIRED = 'AA:BB:CC:DD:EE:01';
const LATER = 'AA:BB:CC:DD:EE:02';
const STRANGER = 'AA:BB:CC:DD:EE:03';

type Reported = { sources?: Record<string, { devices?: Record<string, { state?: string; battery?: number | null }> }>; config?: { appliedVersion?: number } };

t.test('wearables (paired from config, then from the twin) and a Firmata board reach the hub; strangers are never connected', async (t) => {
  const bus = await startPrivateBus();
  t.teardown(() => bus.stop());
  const bluez = await startFakeBluez({ address: bus.address });
  t.teardown(() => bluez.stop());
  for (const address of [PAIRED, LATER, STRANGER]) bluez.addWearable({ address, services: ['heart_rate', 'battery'], rateHz: 2 });
  useSystemBus(t, bus.address);

  const rig = await startRig(t, {
    thermostats: 1,
    boards: 1,
    extraSources: [{ id: 'wearables', family: 'ble', adapter: 'hci0' }],
    settings: {
      sampling: { ble: { sampleIntervalS: 1, reportIntervalS: 1 }, firmata: { sampleIntervalS: 1, reportIntervalS: 1 } },
      pairings: { [PAIRED]: { profile: 'heart_rate', name: 'wearer 1' } },
    },
  });
  const { rt } = await rig.startInProcess();
  const registry = registryFor(rig.th);

  // Readings from all three families accumulate in standby, then a check-in sends them.
  await eventually(20_000, 'all families committed', () => {
    const a = rt.status().readingsCommitted;
    return a > 0 && rig.boards[0]!.stats.analogMessages > 2 && bluez.calls.some((c) => c.member === 'StartNotify') ? true : undefined;
  });
  await new Promise((r) => setTimeout(r, 2000));
  rt.wakeNow();
  await eventually(20_000, 'readings of every family at the hub', () => {
    const sources = new Set(rig.hubReadings().map((r) => r.source));
    return sources.has(`ble:${PAIRED}/heart_rate`) && sources.has(`ble:${PAIRED}/battery`) && sources.has('firmata:board-1/A0') && sources.has('serial:thermo-1/temperature') ? true : undefined;
  });
  const hub = rig.hubReadings();
  const hr = hub.filter((r) => r.source === `ble:${PAIRED}/heart_rate`);
  t.ok(hr.every((r) => r.kind === 'heart_rate' && r.unit === '/min' && r.value > 20 && r.value < 250), `${hr.length} heart-rate readings, plausible`);
  const emittedHr = new Set(bluez.emitted.filter((e) => e.source === `ble:${PAIRED}/heart_rate`).map((e) => e.value));
  t.ok(hr.every((r) => emittedHr.has(r.value)), 'every heart rate at the hub is one the wearable sent');
  const temps = hub.filter((r) => r.source === 'firmata:board-1/A0');
  t.ok(temps.every((r) => r.kind === 'temperature' && r.unit === 'Cel' && r.value > 15 && r.value < 27), `${temps.length} board temperatures within the emulated 21 ± 3 °C`);
  t.ok(temps.some((r) => !Number.isInteger(r.value)), 'tenths of a degree, not johnny-five’s whole degrees');
  t.notOk(hub.some((r) => r.source.startsWith(`ble:${LATER}`) || r.source.startsWith(`ble:${STRANGER}`)), 'nothing from unpaired wearables');

  // Pair a second wearable from the twin while online: applied live.
  await eventually(15_000, 'online', () => (rt.powerState.phase === 'online' ? true : rt.wakeNow() && undefined));
  const { responseBody: twin } = await within(5000, 'getTwin', registry.getTwin(rig.deviceId));
  await within(5000, 'updateTwin', registry.updateTwin(rig.deviceId, { properties: { desired: { pairings: { [LATER]: { profile: 'heart_rate' } } } } }, twin.etag as string));
  await eventually(20_000, 'the newly paired wearable connects', () => (bluez.calls.some((c) => c.member === 'Connect' && c.path.endsWith('EE_02')) ? true : undefined));
  await eventually(30_000, 'its readings at the hub', () => {
    if (rt.powerState.phase === 'standby') rt.wakeNow();
    return rig.hubReadings().some((r) => r.source === `ble:${LATER}/heart_rate`) ? true : undefined;
  });
  const reported = await eventually(15_000, 'pairing state reported', async () => {
    if (rt.powerState.phase === 'standby') rt.wakeNow();
    const r = (await registry.getTwin(rig.deviceId)).responseBody.properties.reported as Reported;
    const devices = r.sources?.wearables?.devices;
    return devices?.[PAIRED]?.state === 'receiving' && devices[LATER] !== undefined ? devices : undefined;
  });
  t.match(reported[PAIRED], { state: 'receiving' }, 'pairing state per device in the twin');
  t.equal(reported[STRANGER], undefined, 'strangers are not listed');
  t.notOk(bluez.calls.some((c) => c.member === 'Connect' && c.path.endsWith('EE_03')), 'the unpaired wearable was never connected');

  // Unpair the wearable paired from the twin: disconnected, reported as unpaired. (One paired in
  // the config file stays: desired properties are merged over the file's settings.)
  const { responseBody: twin2 } = await within(5000, 'getTwin', registry.getTwin(rig.deviceId));
  const disconnectsBefore = bluez.calls.filter((c) => c.member === 'Disconnect' && c.path.endsWith('EE_02')).length;
  await within(5000, 'updateTwin', registry.updateTwin(rig.deviceId, { properties: { desired: { pairings: { [LATER]: null } } } }, twin2.etag as string));
  await eventually(20_000, 'the unpaired wearable disconnected', () => {
    if (rt.powerState.phase === 'standby') rt.wakeNow();
    return bluez.calls.filter((c) => c.member === 'Disconnect' && c.path.endsWith('EE_02')).length > disconnectsBefore ? true : undefined;
  });
  await eventually(15_000, 'reported unpaired', async () => {
    if (rt.powerState.phase === 'standby') rt.wakeNow();
    const r = (await registry.getTwin(rig.deviceId)).responseBody.properties.reported as Reported;
    return r.sources?.wearables?.devices?.[LATER]?.state === 'unpaired' ? true : undefined;
  });

  await rt.stop();
  const { perSource, foreignDuplicates } = seqAnalysis(rig.hubReadings());
  t.same(foreignDuplicates, []);
  t.same(seqGaps(perSource), [], 'seq contiguous for every source, all families');
});

t.test('Firmata board unplugged and back: readings resume', async (t) => {
  const rig = await startRig(t, { thermostats: 0, boards: 1, settings: { sampling: { firmata: { sampleIntervalS: 1, reportIntervalS: 1 } } } });
  const { rt } = await rig.startInProcess();
  const board = rig.boards[0]!;
  await eventually(15_000, 'board readings committed', () => (rt.status().readingsCommitted >= 2 ? true : undefined));
  await board.unplug();
  await new Promise((r) => setTimeout(r, 1500));
  const during = rt.status().readingsCommitted;
  await new Promise((r) => setTimeout(r, 1500));
  t.ok(rt.status().readingsCommitted - during <= 1, 'nothing while unplugged');
  await board.replug();
  await eventually(20_000, 'readings resume', () => (rt.status().readingsCommitted >= during + 3 ? true : undefined));
  rt.wakeNow();
  await eventually(20_000, 'at the hub', () => (rig.hubReadings().length >= during + 3 ? true : undefined));
  const { perSource } = seqAnalysis(rig.hubReadings());
  t.same(seqGaps(perSource), []);
});
