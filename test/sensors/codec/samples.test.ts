import t from 'tap';
import {
  batteryLevelSamples,
  decodeBatteryLevel,
  decodeEssTemperature,
  decodeHeartRateMeasurement,
  decodeHumidity,
  decodeTemperatureMeasurement,
  decodeUvIndex,
  essTemperatureSamples,
  heartRateSamples,
  humiditySamples,
  temperatureMeasurementSamples,
  uvIndexSamples,
} from '../../../sensors/codec/index.js';

t.test('heart rate: heart_rate, energy_expended and one rr_interval per interval', async (t) => {
  // flags 0x18: energy and RR | 90 bpm | 400 kJ | RR 1024 (1000 ms), 896 (875 ms)
  t.same(heartRateSamples(decodeHeartRateMeasurement(Uint8Array.from([0x18, 0x5a, 0x90, 0x01, 0x00, 0x04, 0x80, 0x03]))), [
    { kind: 'heart_rate', value: 90, unit: '/min' },
    { kind: 'energy_expended', value: 400, unit: 'kJ' },
    { kind: 'rr_interval', value: 1000, unit: 'ms' },
    { kind: 'rr_interval', value: 875, unit: 'ms' },
  ]);
  t.same(heartRateSamples(decodeHeartRateMeasurement(Uint8Array.from([0x00, 0x48]))), [{ kind: 'heart_rate', value: 72, unit: '/min' }]);
  t.same(
    heartRateSamples(decodeHeartRateMeasurement(Uint8Array.from([0x08, 0x48, 0xff, 0xff]))),
    [{ kind: 'heart_rate', value: 72, unit: '/min' }],
    'a saturated energy expended (0xFFFF, "65535 or more") is not a reading',
  );
  t.same(heartRateSamples(decodeHeartRateMeasurement(Uint8Array.from([0x10, 0x48]))), [], 'a failed decode yields nothing');
});

t.test('temperature measurement: kind per parameter, Celsius always', async (t) => {
  const c = decodeTemperatureMeasurement(Uint8Array.from([0x00, 0x6c, 0x01, 0x00, 0xff]));
  t.same(temperatureMeasurementSamples(c), [{ kind: 'temperature', value: 36.4, unit: 'Cel' }], 'temperature by default');
  t.same(temperatureMeasurementSamples(c, 'skin_temperature'), [{ kind: 'skin_temperature', value: 36.4, unit: 'Cel' }]);
  const f = decodeTemperatureMeasurement(Uint8Array.from([0x01, 0xda, 0x03, 0x00, 0xff]));
  t.same(temperatureMeasurementSamples(f, 'skin_temperature'), [{ kind: 'skin_temperature', value: 37, unit: 'Cel' }], '98.6 °F is reported as 37 Cel');
  for (const special of [[0xff, 0xff, 0x7f, 0x00], [0x00, 0x00, 0x80, 0x00], [0xfe, 0xff, 0x7f, 0x00], [0x02, 0x00, 0x80, 0x00], [0x01, 0x00, 0x80, 0x00]]) {
    t.same(temperatureMeasurementSamples(decodeTemperatureMeasurement(Uint8Array.from([0x00, ...special]))), [], 'a special value yields nothing');
  }
  t.same(temperatureMeasurementSamples(decodeTemperatureMeasurement(Uint8Array.from([0x00]))), []);
});

t.test('battery, ESS temperature, humidity, UV index', async (t) => {
  t.same(batteryLevelSamples(decodeBatteryLevel(Uint8Array.from([0x57]))), [{ kind: 'battery', value: 87, unit: '%' }]);
  t.same(batteryLevelSamples(decodeBatteryLevel(Uint8Array.from([0xc8]))), []);
  t.same(essTemperatureSamples(decodeEssTemperature(Uint8Array.from([0x66, 0x08]))), [{ kind: 'temperature', value: 21.5, unit: 'Cel' }]);
  t.same(essTemperatureSamples(decodeEssTemperature(Uint8Array.from([0x00, 0x80]))), [], 'not known yields nothing');
  t.same(humiditySamples(decodeHumidity(Uint8Array.from([0xa8, 0x11]))), [{ kind: 'humidity', value: 45.2, unit: '%' }]);
  t.same(humiditySamples(decodeHumidity(Uint8Array.from([0xff, 0xff]))), [], 'not known yields nothing');
  t.same(humiditySamples(decodeHumidity(Uint8Array.from([0xff]))), []);
  t.same(uvIndexSamples(decodeUvIndex(Uint8Array.from([0x07]))), [{ kind: 'uv_index', value: 7, unit: '1' }]);
  t.same(uvIndexSamples(decodeUvIndex(new Uint8Array(0))), []);
});
