import { readFileSync } from 'node:fs';
import t from 'tap';
import {
  BATTERY_LEVEL_UUID,
  decodeEssTemperature,
  decodeFloat,
  decodeHeartRateMeasurement,
  decodeHumidity,
  decodeSfloat,
  decodeTemperatureMeasurement,
  ESS_HUMIDITY_UUID,
  ESS_TEMPERATURE_UUID,
  HEART_RATE_MEASUREMENT_UUID,
  TEMPERATURE_MEASUREMENT_UUID,
  UV_INDEX_UUID,
} from '../../../sensors/codec/index.js';

// Compiled to dist/test/sensors/codec/, four levels below the project root.
const DOC = readFileSync(new URL('../../../../docs/protocols/gatt.md', import.meta.url), 'utf8');

const bytes = (hex: string): Uint8Array => Uint8Array.from(Buffer.from(hex.replace(/ /g, ''), 'hex'));

t.test('docs/protocols/gatt.md names every characteristic', async (t) => {
  for (const uuid of [HEART_RATE_MEASUREMENT_UUID, BATTERY_LEVEL_UUID, TEMPERATURE_MEASUREMENT_UUID, ESS_TEMPERATURE_UUID, ESS_HUMIDITY_UUID, UV_INDEX_UUID]) {
    t.ok(DOC.includes(`0x${uuid.toString(16).toUpperCase()}`), `0x${uuid.toString(16).toUpperCase()}`);
  }
});

t.test('the examples in docs/protocols/gatt.md decode as it says', async (t) => {
  const examples: Array<[string, () => unknown, unknown]> = [
    ['`10 48 00 03`', () => decodeHeartRateMeasurement(bytes('10 48 00 03')), { ok: true, value: { heartRate: 72, sensorContact: 'not-supported', rrIntervalsMs: [750] } }],
    ['`00 6C 01 00 FF`', () => decodeTemperatureMeasurement(bytes('00 6C 01 00 FF')), { ok: true, value: { celsius: { kind: 'number', value: 36.4 } } }],
    ['FLOAT `6C 01 00 FF`', () => decodeFloat(bytes('6C 01 00 FF')), { ok: true, value: { value: 36.4 } }],
    ['`14 F0`', () => decodeSfloat(bytes('14 F0')), { ok: true, value: { value: 2, exponent: -1, mantissa: 20 } }],
    ['`66 08`', () => decodeEssTemperature(bytes('66 08')), { ok: true, value: { value: 21.5 } }],
    ['`A8 11`', () => decodeHumidity(bytes('A8 11')), { ok: true, value: { value: 45.2 } }],
  ];
  for (const [text, decode, expected] of examples) {
    t.ok(DOC.includes(text), `${text} is in the document`);
    t.match(decode(), expected, text);
  }
});
