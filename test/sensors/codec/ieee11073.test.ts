import t from 'tap';
import {
  decodeFloat,
  decodeSfloat,
  floatFromBits,
  sfloatFromBits,
  type DecodeResult,
  type Ieee11073Special,
  type Ieee11073Value,
} from '../../../sensors/codec/index.js';

function value<T>(r: DecodeResult<T>): T {
  if (!r.ok) throw new Error(`expected ok, got ${r.error.kind}: ${r.error.message}`);
  return r.value;
}

// IEEE 11073-20601 FLOAT: bits 31-24 exponent (sint8), bits 23-0 mantissa (sint24),
// value = mantissa × 10^exponent, sent little-endian (least significant byte first).
t.test('FLOAT: numbers, byte by byte', async (t) => {
  const vectors: Array<[number[], number, number, number, string]> = [
    // [bytes LE], value, exponent, mantissa
    [[0x02, 0x00, 0x00, 0x00], 2, 0, 2, 'mantissa 2, exponent 0'],
    [[0x6c, 0x01, 0x00, 0xff], 36.4, -1, 364, 'mantissa 0x00016C = 364, exponent 0xFF = -1: a body temperature'],
    [[0xc8, 0x00, 0x00, 0xfe], 2, -2, 200, 'mantissa 200, exponent 0xFE = -2: 2.00'],
    [[0x02, 0x00, 0x00, 0x01], 20, 1, 2, 'positive exponent: 2 × 10^1'],
    [[0x02, 0x00, 0x00, 0x02], 200, 2, 2, 'positive exponent: 2 × 10^2'],
    [[0x2e, 0xfb, 0xff, 0x00], -1234, 0, -1234, 'negative mantissa 0xFFFB2E = -1234'],
    [[0xff, 0xff, 0xff, 0xfd], -0.001, -3, -1, 'negative mantissa and exponent: -1 × 10^-3'],
    [[0x9c, 0xff, 0xff, 0x02], -10000, 2, -100, 'negative mantissa, positive exponent'],
    [[0x00, 0x00, 0x00, 0x00], 0, 0, 0, 'zero'],
    [[0x00, 0x00, 0x00, 0x05], 0, 5, 0, 'zero with an exponent'],
    [[0xfd, 0xff, 0x7f, 0x00], 8388605, 0, 8388605, 'largest mantissa that is not special (0x7FFFFD)'],
    [[0x03, 0x00, 0x80, 0x00], -8388605, 0, -8388605, 'smallest mantissa that is not special (0x800003)'],
    [[0x01, 0x00, 0x00, 0x7f], 1e127, 127, 1, 'largest exponent 0x7F'],
    [[0x01, 0x00, 0x00, 0x80], 1e-128, -128, 1, 'smallest exponent 0x80 = -128'],
  ];
  for (const [bytes, v, exponent, mantissa, why] of vectors) {
    t.same(value(decodeFloat(Uint8Array.from(bytes))), { kind: 'number', value: v, exponent, mantissa }, why);
  }
});

t.test('FLOAT: every special value', async (t) => {
  const specials: Array<[number[], Ieee11073Special, string]> = [
    [[0xff, 0xff, 0x7f, 0x00], 'nan', '0x007FFFFF NaN'],
    [[0x00, 0x00, 0x80, 0x00], 'nres', '0x00800000 NRes (not at this resolution)'],
    [[0xfe, 0xff, 0x7f, 0x00], '+infinity', '0x007FFFFE +INFINITY'],
    [[0x02, 0x00, 0x80, 0x00], '-infinity', '0x00800002 -INFINITY'],
    [[0x01, 0x00, 0x80, 0x00], 'reserved', '0x00800001 reserved for future use'],
  ];
  for (const [bytes, special, why] of specials) {
    t.same(value(decodeFloat(Uint8Array.from(bytes))), { kind: 'special', special }, why);
    // A device that sets an exponent on a special mantissa still means the special value.
    t.same(value(decodeFloat(Uint8Array.from([...bytes.slice(0, 3), 0xfe]))), { kind: 'special', special }, `${why} with exponent -2`);
  }
  t.same(floatFromBits(0x007fffff), { kind: 'special', special: 'nan' });
  t.same(floatFromBits(0x00800000), { kind: 'special', special: 'nres' });
  t.same(floatFromBits(0xff00016c), { kind: 'number', value: 36.4, exponent: -1, mantissa: 364 });
});

t.test('FLOAT: offsets and truncation', async (t) => {
  const bytes = Uint8Array.from([0xaa, 0x6c, 0x01, 0x00, 0xff]);
  t.same(value(decodeFloat(bytes, 1)), { kind: 'number', value: 36.4, exponent: -1, mantissa: 364 }, 'at offset 1');
  for (const [b, off] of [[[], 0], [[0x6c, 0x01, 0x00], 0], [[0x6c, 0x01, 0x00, 0xff], 1], [[0x6c, 0x01, 0x00, 0xff], -1], [[0x6c, 0x01, 0x00, 0xff], 0.5]] as Array<[number[], number]>) {
    const r = decodeFloat(Uint8Array.from(b), off);
    t.match(r, { ok: false, error: { kind: 'truncated', message: /FLOAT needs 4 bytes/ } }, `${b.length} bytes at offset ${off}`);
  }
});

// SFLOAT: bits 15-12 exponent (sint4), bits 11-0 mantissa (sint12), little-endian.
t.test('SFLOAT: numbers, byte by byte', async (t) => {
  const vectors: Array<[number[], number, number, number, string]> = [
    [[0x02, 0x00], 2, 0, 2, 'mantissa 2, exponent 0'],
    [[0x14, 0xf0], 2, -1, 20, '0xF014: exponent 0xF = -1, mantissa 20: 2.0'],
    [[0xc8, 0xe0], 2, -2, 200, '0xE0C8: exponent -2, mantissa 200: 2.00'],
    [[0x6c, 0xf1], 36.4, -1, 364, '0xF16C: 36.4'],
    [[0x02, 0x10], 20, 1, 2, '0x1002: positive exponent'],
    [[0x2e, 0x0b], -1234, 0, -1234, '0x0B2E: negative mantissa 0xB2E = -1234'],
    [[0xff, 0xff], -0.1, -1, -1, '0xFFFF: negative mantissa and exponent'],
    [[0x9c, 0x2f], -10000, 2, -100, '0x2F9C: negative mantissa, positive exponent'],
    [[0xfd, 0x07], 2045, 0, 2045, '0x07FD: largest mantissa that is not special'],
    [[0x03, 0x08], -2045, 0, -2045, '0x0803: smallest mantissa that is not special'],
    [[0x01, 0x70], 1e7, 7, 1, '0x7001: largest exponent 7'],
    [[0x01, 0x80], 1e-8, -8, 1, '0x8001: smallest exponent -8'],
    [[0x7b, 0x00], 123, 0, 123, 'blood pressure 123 mmHg'],
  ];
  for (const [bytes, v, exponent, mantissa, why] of vectors) {
    t.same(value(decodeSfloat(Uint8Array.from(bytes))), { kind: 'number', value: v, exponent, mantissa }, why);
  }
});

t.test('SFLOAT: every special value', async (t) => {
  const specials: Array<[number[], Ieee11073Special, string]> = [
    [[0xff, 0x07], 'nan', '0x07FF NaN'],
    [[0x00, 0x08], 'nres', '0x0800 NRes'],
    [[0xfe, 0x07], '+infinity', '0x07FE +INFINITY'],
    [[0x02, 0x08], '-infinity', '0x0802 -INFINITY'],
    [[0x01, 0x08], 'reserved', '0x0801 reserved for future use'],
  ];
  for (const [bytes, special, why] of specials) {
    t.same(value(decodeSfloat(Uint8Array.from(bytes))), { kind: 'special', special }, why);
    t.same(sfloatFromBits(((bytes[1] ?? 0) << 8) | (bytes[0] ?? 0) | 0xf000), { kind: 'special', special }, `${why} with exponent -1`);
  }
  t.same(decodeSfloat(Uint8Array.from([0xff])), { ok: false, error: { kind: 'truncated', message: 'SFLOAT needs 2 bytes at offset 0, payload is 1' } });
  t.same(value(decodeSfloat(Uint8Array.from([0x00, 0x6c, 0xf1]), 1)), { kind: 'number', value: 36.4, exponent: -1, mantissa: 364 }, 'at offset 1');
});

t.test('a Buffer slice of a larger pool decodes from its own start', async (t) => {
  const big = Buffer.from([0x11, 0x22, 0x33, 0x6c, 0x01, 0x00, 0xff, 0x44]);
  const slice = big.subarray(3, 7);
  t.same(value(decodeFloat(slice)) as Ieee11073Value, { kind: 'number', value: 36.4, exponent: -1, mantissa: 364 });
});
