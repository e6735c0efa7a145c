import t from 'tap';
import { decodeBatteryLevel, decodeEssTemperature, decodeHumidity, decodeUvIndex } from '../../../sensors/codec/index.js';

// Battery Level 0x2A19: uint8, percent, 0-100.
t.test('battery level', async (t) => {
  t.same(decodeBatteryLevel(Uint8Array.from([0x64])), { ok: true, value: 100 }, '0x64 = 100 %');
  t.same(decodeBatteryLevel(Uint8Array.from([0x00])), { ok: true, value: 0 }, '0 %');
  t.same(decodeBatteryLevel(Uint8Array.from([0x2a])), { ok: true, value: 42 }, '0x2A = 42 %');
  t.same(decodeBatteryLevel(Uint8Array.from([0x65])), { ok: false, error: { kind: 'range', message: 'battery level 101 % is outside 0-100' } }, '101 is out of range');
  t.match(decodeBatteryLevel(Uint8Array.from([0xff])), { ok: false, error: { kind: 'range' } }, '255 is out of range');
  t.same(decodeBatteryLevel(new Uint8Array(0)), { ok: false, error: { kind: 'truncated', message: 'battery level needs 1 byte(s), got 0' } });
  t.same(decodeBatteryLevel(Uint8Array.from([0x50, 0x00])), { ok: false, error: { kind: 'inconsistent', message: 'battery level is 1 byte(s), got 2' } });
});

// Temperature 0x2A6E: sint16 little-endian, 0.01 °C, -273.15 to 327.67, 0x8000 = not known.
t.test('ESS temperature', async (t) => {
  t.same(decodeEssTemperature(Uint8Array.from([0x66, 0x08])), { ok: true, value: { kind: 'number', value: 21.5 } }, '0x0866 = 2150: 21.50 °C');
  t.same(decodeEssTemperature(Uint8Array.from([0xff, 0xfb])), { ok: true, value: { kind: 'number', value: -10.25 } }, '0xFBFF = -1025: -10.25 °C');
  t.same(decodeEssTemperature(Uint8Array.from([0x00, 0x00])), { ok: true, value: { kind: 'number', value: 0 } }, '0 °C');
  t.same(decodeEssTemperature(Uint8Array.from([0xff, 0x7f])), { ok: true, value: { kind: 'number', value: 327.67 } }, '0x7FFF: the maximum');
  t.same(decodeEssTemperature(Uint8Array.from([0x4d, 0x95])), { ok: true, value: { kind: 'number', value: -273.15 } }, '0x954D = -27315: absolute zero, the minimum');
  t.same(decodeEssTemperature(Uint8Array.from([0x00, 0x80])), { ok: true, value: { kind: 'unknown' } }, '0x8000: value is not known');
  t.match(decodeEssTemperature(Uint8Array.from([0x4c, 0x95])), { ok: false, error: { kind: 'range', message: /below absolute zero/ } }, '-27316 is out of range');
  t.match(decodeEssTemperature(Uint8Array.from([0x01, 0x80])), { ok: false, error: { kind: 'range' } }, '0x8001 = -32767 is out of range');
  t.match(decodeEssTemperature(Uint8Array.from([0x66])), { ok: false, error: { kind: 'truncated' } });
  t.match(decodeEssTemperature(new Uint8Array(0)), { ok: false, error: { kind: 'truncated' } });
  t.match(decodeEssTemperature(Uint8Array.from([0x66, 0x08, 0x00])), { ok: false, error: { kind: 'inconsistent' } });
});

// Humidity 0x2A6F: uint16 little-endian, 0.01 %, 0 to 100, 0xFFFF = not known.
t.test('ESS humidity', async (t) => {
  t.same(decodeHumidity(Uint8Array.from([0xa8, 0x11])), { ok: true, value: { kind: 'number', value: 45.2 } }, '0x11A8 = 4520: 45.20 %');
  t.same(decodeHumidity(Uint8Array.from([0x10, 0x27])), { ok: true, value: { kind: 'number', value: 100 } }, '0x2710 = 10000: 100 %');
  t.same(decodeHumidity(Uint8Array.from([0x00, 0x00])), { ok: true, value: { kind: 'number', value: 0 } }, '0 %');
  t.same(decodeHumidity(Uint8Array.from([0xff, 0xff])), { ok: true, value: { kind: 'unknown' } }, '0xFFFF: value is not known');
  t.match(decodeHumidity(Uint8Array.from([0x11, 0x27])), { ok: false, error: { kind: 'range', message: /100.01 % is outside 0-100/ } }, '10001 is out of range');
  t.match(decodeHumidity(Uint8Array.from([0xfe, 0xff])), { ok: false, error: { kind: 'range' } }, '0xFFFE is out of range');
  t.match(decodeHumidity(Uint8Array.from([0xa8])), { ok: false, error: { kind: 'truncated' } });
  t.match(decodeHumidity(Uint8Array.from([0xa8, 0x11, 0x00, 0x00])), { ok: false, error: { kind: 'inconsistent' } });
});

// UV Index 0x2A76: uint8, unitless.
t.test('ESS UV index', async (t) => {
  t.same(decodeUvIndex(Uint8Array.from([0x05])), { ok: true, value: 5 }, 'UV index 5');
  t.same(decodeUvIndex(Uint8Array.from([0x00])), { ok: true, value: 0 });
  t.same(decodeUvIndex(Uint8Array.from([0xff])), { ok: true, value: 255 }, 'every uint8 is allowed');
  t.same(decodeUvIndex(new Uint8Array(0)), { ok: false, error: { kind: 'truncated', message: 'UV index (0x2A76) needs 1 byte(s), got 0' } });
  t.same(decodeUvIndex(Uint8Array.from([0x05, 0x00])), { ok: false, error: { kind: 'inconsistent', message: 'UV index (0x2A76) is 1 byte(s), got 2' } });
});
