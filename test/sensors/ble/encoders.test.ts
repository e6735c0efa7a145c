import t from 'tap';
import {
  encodeBatteryLevel,
  encodeHeartRateMeasurement,
  encodeHumidity,
  encodeIeee11073Float,
  encodeTemperature,
  encodeTemperatureMeasurement,
  encodeUvIndex,
  TEMPERATURE_TYPE,
} from '../../../sensors/ble/emulator/encoders.js';
import { bluetoothUuid, UUID } from '../../../sensors/ble/emulator/uuids.js';
import { serviceModel, WEARABLE_SERVICES } from '../../../sensors/ble/emulator/wearable-model.js';

const hex = (b: Buffer): string => b.toString('hex');

t.test('128-bit UUIDs as BlueZ shows them', async (t) => {
  t.equal(bluetoothUuid(0x180d), '0000180d-0000-1000-8000-00805f9b34fb');
  t.equal(UUID.heartRateMeasurement, '00002a37-0000-1000-8000-00805f9b34fb');
  t.throws(() => bluetoothUuid(0x10000));
});

t.test('Heart Rate Measurement (0x2A37)', async (t) => {
  // flags 0x16: uint8 value, contact supported + detected, RR present; 853/1024 s = 0x0355.
  t.equal(hex(encodeHeartRateMeasurement({ bpm: 72, contact: 'detected', rrIntervals1024: [853] })), '16485503');
  t.equal(hex(encodeHeartRateMeasurement({ bpm: 72, contact: 'not-detected' })), '0448');
  t.equal(hex(encodeHeartRateMeasurement({ bpm: 72 })), '0048', 'contact not supported');
  t.equal(hex(encodeHeartRateMeasurement({ bpm: 300 })), '012c01', 'uint16 when over 255');
  t.equal(hex(encodeHeartRateMeasurement({ bpm: 60, format16: true })), '013c00');
  t.equal(hex(encodeHeartRateMeasurement({ bpm: 60, energyExpendedKj: 500 })), '083cf401');
  t.equal(hex(encodeHeartRateMeasurement({ bpm: 60, energyExpendedKj: 1, rrIntervals1024: [1024, 1000] })), '183c01000004e803', 'energy before RR');
  t.throws(() => encodeHeartRateMeasurement({ bpm: 72.5 }), RangeError);
  t.throws(() => encodeHeartRateMeasurement({ bpm: -1 }), RangeError);
});

t.test('Battery Level (0x2A19)', async (t) => {
  t.equal(hex(encodeBatteryLevel(87)), '57');
  t.throws(() => encodeBatteryLevel(101), RangeError);
});

t.test('IEEE 11073 FLOAT and Temperature Measurement (0x2A1C)', async (t) => {
  t.equal(hex(encodeIeee11073Float(36.6, -1)), '6e0100ff');
  t.equal(hex(encodeIeee11073Float(-0.25, -2)), 'e7fffffe');
  t.equal(hex(encodeIeee11073Float(1200, 2)), '0c000002');
  t.equal(hex(encodeIeee11073Float(Number.NaN, -2)), 'ffff7f00');
  t.equal(hex(encodeIeee11073Float(Infinity, 0)), 'feff7f00');
  t.throws(() => encodeIeee11073Float(36.65, -1), RangeError, 'not at the resolution');
  t.equal(hex(encodeTemperatureMeasurement({ celsius: 36.6, exponent: -1, type: TEMPERATURE_TYPE.body })), '046e0100ff02');
  t.equal(hex(encodeTemperatureMeasurement({ celsius: 33.47 })), '00130d00fe', 'no type, exponent -2 by default');
});

t.test('Environmental Sensing characteristics', async (t) => {
  t.equal(hex(encodeTemperature(22.54)), 'ce08');
  t.equal(hex(encodeTemperature(-5.5)), 'dafd');
  t.equal(hex(encodeHumidity(45.5)), 'c611');
  t.equal(hex(encodeUvIndex(7)), '07');
  t.throws(() => encodeTemperature(22.555), RangeError);
  t.throws(() => encodeHumidity(100.01), RangeError);
});

t.test('wearable models: reproducible drift from the seed', async (t) => {
  for (const service of WEARABLE_SERVICES) {
    const run = (seed: number) => serviceModel(service, seed).characteristics.map((chr) => Array.from({ length: 50 }, () => chr.sample()));
    const a = run(42);
    t.same(a, run(42), `${service}: same seed, same samples`);
    t.notSame(a, run(43), `${service}: another seed, other samples`);
    t.ok(a.flat().every((s) => s.values.length > 0 && s.payload.length > 0), `${service}: every sample has bytes and values`);
  }
});
