/**
 * A BLE notification storm (a wearable gone haywire at 400 Hz) must not starve the serial
 * sources: every thermostat reading sent during the storm is committed, with little delay.
 */
import t from 'tap';
import { startPrivateBus } from '../../sensors/dbus/private-bus.js';
import { startFakeBluez } from '../../sensors/ble/emulator/fake-bluez.js';
import { useSystemBus } from '../helpers/system-bus.js';
import { eventually } from '../helpers/deadline.js';
import { seqAnalysis, seqGaps, startRig } from '../helpers/gateway-rig.js';

const WEARABLE = 'AA:BB:CC:DD:EE:01';

t.test('a notification storm does not starve the serial thermostat', async (t) => {
  const bus = await startPrivateBus();
  t.teardown(() => bus.stop());
  const bluez = await startFakeBluez({ address: bus.address });
  t.teardown(() => bluez.stop());
  const wearable = bluez.addWearable({ address: WEARABLE, services: ['heart_rate'], rateHz: 2 });
  useSystemBus(t, bus.address);
  const rig = await startRig(t, {
    thermostats: 1,
    extraSources: [{ id: 'wearables', family: 'ble', adapter: 'hci0' }],
    settings: {
      checkInIntervalS: 600,
      sampling: { ble: { sampleIntervalS: 1, reportIntervalS: 1 } },
      pairings: { [WEARABLE]: { profile: 'heart_rate' } },
    },
  });
  const { rt } = await rig.startInProcess();
  await eventually(20_000, 'wearable notifying', () => (bluez.calls.some((c) => c.member === 'StartNotify') ? true : undefined));
  await eventually(10_000, 'thermostat reporting', () => (rig.emitted().length > 8 ? true : undefined));

  const stormFrom = Date.now();
  await wearable.storm(400, 4000);
  const stormTo = Date.now();
  await new Promise((r) => setTimeout(r, 1500));
  rt.wakeNow();
  const inStorm = rig.emitted().filter((e) => e.source === 'serial:thermo-1/temperature' && e.ts >= stormFrom && e.ts <= stormTo);
  t.ok(inStorm.length >= 3, `${inStorm.length} thermostat readings sent during the 4 s storm`);
  await eventually(30_000, 'all of them at the hub', () => {
    const got = new Set(rig.hubReadings().filter((r) => r.source === 'serial:thermo-1/temperature').map((r) => r.deviceSeq));
    return inStorm.every((e) => got.has(e.deviceSeq)) ? true : undefined;
  });
  const hub = rig.hubReadings();
  const byDeviceSeq = new Map(hub.filter((r) => r.source === 'serial:thermo-1/temperature').map((r) => [r.deviceSeq, r.ts]));
  const delays = inStorm.map((e) => (byDeviceSeq.get(e.deviceSeq) ?? Infinity) - e.ts);
  t.ok(Math.max(...delays) < 1000, `thermostat lines read within ${Math.max(...delays)} ms of being sent, during the storm`);
  const stormReadings = hub.filter((r) => r.source === `ble:${WEARABLE}/heart_rate` && r.ts >= stormFrom && r.ts <= stormTo + 500).length;
  t.ok(stormReadings > 400, `the storm itself was taken in (${stormReadings} heart-rate readings in ~4 s)`);
  t.same(seqGaps(seqAnalysis(hub).perSource), []);
});
