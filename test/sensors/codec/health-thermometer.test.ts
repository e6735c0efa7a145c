import t from 'tap';
import {
  decodeDateTime,
  decodeTemperatureMeasurement,
  fahrenheitToCelsius,
  floatFromBits,
  type DecodeResult,
  type TemperatureMeasurement,
} from '../../../sensors/codec/index.js';

function value<T>(r: DecodeResult<T>): T {
  if (!r.ok) throw new Error(`expected ok, got ${r.error.kind}: ${r.error.message}`);
  return r.value;
}

// Temperature Measurement 0x2A1C (HTS 1.0 §3.1), little-endian:
//   flags (uint8: bit 0 °F, bit 1 time stamp, bit 2 temperature type, bits 3-7 reserved)
//   | temperature (IEEE-11073 FLOAT, 4 bytes) | time stamp (Date Time, 7 bytes) | temperature type (uint8)
// Date Time 0x2A08: year (uint16) | month | day | hours | minutes | seconds (uint8 each).

const T_36_4 = [0x6c, 0x01, 0x00, 0xff]; // FLOAT 0xFF00016C: 364 × 10^-1 = 36.4
const F_98_6 = [0xda, 0x03, 0x00, 0xff]; // FLOAT 0xFF0003DA: 986 × 10^-1 = 98.6
const STAMP = [0xea, 0x07, 0x0b, 0x17, 0x0d, 0x07, 0x37]; // 2026 (0x07EA)-11-23 13:07:55

t.test('specification vectors, byte by byte', async (t) => {
  t.same(value(decodeTemperatureMeasurement(Uint8Array.from([0x00, ...T_36_4]))), {
    celsius: { kind: 'number', value: 36.4 },
    convertedFromFahrenheit: false,
    sent: { unit: 'Cel', value: { kind: 'number', value: 36.4, exponent: -1, mantissa: 364 } },
  }, 'flags 0x00: Celsius, nothing else');

  t.same(value(decodeTemperatureMeasurement(Uint8Array.from([0x02, ...T_36_4, ...STAMP]))).timeStamp, {
    year: 2026, month: 11, day: 23, hours: 13, minutes: 7, seconds: 55,
  }, 'flags 0x02: time stamp');

  t.equal(value(decodeTemperatureMeasurement(Uint8Array.from([0x04, ...T_36_4, 0x06]))).temperatureType, 'mouth', 'flags 0x04: type 6 mouth');

  t.same(value(decodeTemperatureMeasurement(Uint8Array.from([0x07, ...F_98_6, ...STAMP, 0x03]))), {
    celsius: { kind: 'number', value: 37 },
    convertedFromFahrenheit: true,
    sent: { unit: '[degF]', value: { kind: 'number', value: 98.6, exponent: -1, mantissa: 986 } },
    timeStamp: { year: 2026, month: 11, day: 23, hours: 13, minutes: 7, seconds: 55 },
    temperatureType: 'ear',
  }, 'flags 0x07: Fahrenheit, time stamp and type 3 ear');

  t.same(
    value(decodeTemperatureMeasurement(Uint8Array.from([0xf8 | 0x06, ...T_36_4, ...STAMP, 0x01]))),
    value(decodeTemperatureMeasurement(Uint8Array.from([0x06, ...T_36_4, ...STAMP, 0x01]))),
    'reserved flag bits 3-7 are ignored',
  );
});

t.test('every temperature type code', async (t) => {
  const names = ['armpit', 'body', 'ear', 'finger', 'gastro-intestinal-tract', 'mouth', 'rectum', 'toe', 'tympanum'];
  names.forEach((name, i) => {
    t.equal(value(decodeTemperatureMeasurement(Uint8Array.from([0x04, ...T_36_4, i + 1]))).temperatureType, name, `${i + 1} ${name}`);
  });
  for (const code of [0, 10, 0xff]) {
    t.same(decodeTemperatureMeasurement(Uint8Array.from([0x04, ...T_36_4, code])), {
      ok: false,
      error: { kind: 'reserved', message: `temperature measurement: temperature type ${code} is reserved (valid: 1-9)` },
    }, `type ${code} is reserved`);
  }
});

t.test('Fahrenheit is converted to Celsius, and says so', async (t) => {
  const celsiusOf = (float: number[]): number => {
    const m: TemperatureMeasurement = value(decodeTemperatureMeasurement(Uint8Array.from([0x01, ...float])));
    t.equal(m.convertedFromFahrenheit, true);
    t.equal(m.sent.unit, '[degF]');
    if (m.celsius.kind !== 'number') throw new Error('expected a number');
    return m.celsius.value;
  };
  t.equal(celsiusOf(F_98_6), 37, '98.6 °F is exactly 37 °C');
  t.equal(celsiusOf([0x20, 0x00, 0x00, 0x00]), 0, '32 °F (mantissa 32, exponent 0) is 0 °C');
  t.equal(celsiusOf([0xd4, 0x00, 0x00, 0x00]), 100, '212 °F is 100 °C');
  t.equal(celsiusOf([0xd8, 0xff, 0xff, 0x00]), -40, '-40 °F (mantissa 0xFFFFD8) is -40 °C');
  t.equal(celsiusOf([0x09, 0x00, 0x00, 0x01]), 290 / 9, '9 × 10^1 = 90 °F is 32.2… °C');
  t.equal(celsiusOf([0x6b, 0x26, 0x00, 0xfe]), 33175 / 900, '98.35 °F (0x266B = 9835 × 10^-2) is 36.86… °C');
  t.equal(value(decodeTemperatureMeasurement(Uint8Array.from([0x00, ...F_98_6]))).convertedFromFahrenheit, false);
  t.same(fahrenheitToCelsius(floatFromBits(0x007fffff)), { kind: 'special', special: 'nan' }, 'a special value stays special');
});

t.test('special temperature values are a typed outcome, not a number', async (t) => {
  const specials: Array<[number[], string]> = [
    [[0xff, 0xff, 0x7f, 0x00], 'nan'],
    [[0x00, 0x00, 0x80, 0x00], 'nres'],
    [[0xfe, 0xff, 0x7f, 0x00], '+infinity'],
    [[0x02, 0x00, 0x80, 0x00], '-infinity'],
    [[0x01, 0x00, 0x80, 0x00], 'reserved'],
  ];
  for (const [float, special] of specials) {
    for (const flags of [0x00, 0x01]) {
      const m = value(decodeTemperatureMeasurement(Uint8Array.from([flags, ...float])));
      t.same(m.celsius, { kind: 'special', special }, `${special}, flags 0x0${flags}`);
      t.same(m.sent.value, { kind: 'special', special });
    }
  }
});

t.test('date time: not-known values and reserved ones', async (t) => {
  t.same(value(decodeDateTime(Uint8Array.from([0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]))), {
    year: null, month: null, day: null, hours: 0, minutes: 0, seconds: 0,
  }, 'year, month and day 0 mean not known');
  t.same(value(decodeDateTime(Uint8Array.from([0x2e, 0x06, 0x01, 0x01, 0x00, 0x00, 0x00]))).year, 1582, 'year 1582 (0x062E) is the first valid');
  t.same(value(decodeDateTime(Uint8Array.from([0x0f, 0x27, 0x0c, 0x1f, 0x17, 0x3b, 0x3b]))), {
    year: 9999, month: 12, day: 31, hours: 23, minutes: 59, seconds: 59,
  }, 'the last valid values');
  const reserved: Array<[number[], RegExp]> = [
    [[0x2d, 0x06, 0x01, 0x01, 0x00, 0x00, 0x00], /year 1581 is reserved/],
    [[0x10, 0x27, 0x01, 0x01, 0x00, 0x00, 0x00], /year 10000 is reserved/],
    [[0xea, 0x07, 0x0d, 0x01, 0x00, 0x00, 0x00], /month 13 is reserved/],
    [[0xea, 0x07, 0x01, 0x20, 0x00, 0x00, 0x00], /day 32 is reserved/],
    [[0xea, 0x07, 0x01, 0x01, 0x18, 0x00, 0x00], /hours 24 is reserved/],
    [[0xea, 0x07, 0x01, 0x01, 0x00, 0x3c, 0x00], /minutes 60 is reserved/],
    [[0xea, 0x07, 0x01, 0x01, 0x00, 0x00, 0x3c], /seconds 60 is reserved/],
  ];
  for (const [bytes, message] of reserved) {
    t.match(decodeDateTime(Uint8Array.from(bytes)), { ok: false, error: { kind: 'reserved', message } }, String(message));
    t.match(decodeTemperatureMeasurement(Uint8Array.from([0x02, ...T_36_4, ...bytes])), { ok: false, error: { kind: 'reserved', message } }, `${String(message)} inside a measurement`);
  }
  t.match(decodeDateTime(Uint8Array.from(STAMP.slice(0, 6))), { ok: false, error: { kind: 'truncated' } });
});

t.test('truncated and inconsistent payloads', async (t) => {
  const full = [0x06, ...T_36_4, ...STAMP, 0x02];
  for (let length = 0; length < full.length; length++) {
    t.match(decodeTemperatureMeasurement(Uint8Array.from(full.slice(0, length))), { ok: false, error: { kind: 'truncated' } }, `cut to ${length} byte(s)`);
  }
  t.same(decodeTemperatureMeasurement(new Uint8Array(0)), { ok: false, error: { kind: 'truncated', message: 'temperature measurement: no flags byte' } });
  t.match(decodeTemperatureMeasurement(Uint8Array.from([0x00, ...T_36_4, 0x02])), { ok: false, error: { kind: 'inconsistent', message: /1 byte\(s\) after the last field flags 0x00/ } }, 'a type byte without its flag');
  t.match(decodeTemperatureMeasurement(Uint8Array.from([0x04, ...T_36_4, ...STAMP, 0x02])), { ok: false, error: { kind: 'reserved' } }, 'a time stamp without its flag reads its first byte as the type: 0xEA is reserved');
  t.match(decodeTemperatureMeasurement(Uint8Array.from([0x02, ...T_36_4, ...STAMP, 0x02])), { ok: false, error: { kind: 'inconsistent' } }, 'a type byte after the time stamp without its flag');
});
