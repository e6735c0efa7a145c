/**
 * IEEE 11073-20601 FLOAT (32-bit) and SFLOAT (16-bit), the medical number formats many GATT
 * health profiles use (Health Thermometer, Blood Pressure, Glucose, Weight Scale). Both are
 * little-endian on the air and mean `mantissa × 10^exponent`; both signed, two's complement.
 *
 * - FLOAT: bits 31–24 exponent (8-bit signed), bits 23–0 mantissa (24-bit signed).
 * - SFLOAT: bits 15–12 exponent (4-bit signed), bits 11–0 mantissa (12-bit signed).
 *
 * Five mantissas are special values, not numbers: NaN (+(2^(n-1) − 1)), NRes (−2^(n-1), "not at
 * this resolution"), +INFINITY (+(2^(n-1) − 2)), −INFINITY (−(2^(n-1) − 2)) and one reserved
 * (−(2^(n-1) − 1)). The standard writes them with exponent 0 (FLOAT NaN = 0x007FFFFF); we
 * treat the mantissa as special whatever the exponent, as most host stacks do, because a
 * device that sets an exponent on NaN still means NaN, and no device encodes a real number with
 * a mantissa of ±2^(n-1) when a one-digit-smaller mantissa and a larger exponent say the same.
 */
import { fail, ok, viewOf, type DecodeResult } from './result.js';

export type Ieee11073Special = 'nan' | 'nres' | '+infinity' | '-infinity' | 'reserved';

export interface Ieee11073Number {
  readonly kind: 'number';
  /** mantissa × 10^exponent */
  readonly value: number;
  readonly exponent: number;
  readonly mantissa: number;
}

export interface Ieee11073SpecialValue {
  readonly kind: 'special';
  readonly special: Ieee11073Special;
}

export type Ieee11073Value = Ieee11073Number | Ieee11073SpecialValue;

/** The special raw mantissas (before sign extension) of a FLOAT. */
export const FLOAT_SPECIALS: ReadonlyMap<number, Ieee11073Special> = new Map([
  [0x7fffff, 'nan'],
  [0x800000, 'nres'],
  [0x7ffffe, '+infinity'],
  [0x800002, '-infinity'],
  [0x800001, 'reserved'],
]);

/** The special raw mantissas (before sign extension) of an SFLOAT. */
export const SFLOAT_SPECIALS: ReadonlyMap<number, Ieee11073Special> = new Map([
  [0x7ff, 'nan'],
  [0x800, 'nres'],
  [0x7fe, '+infinity'],
  [0x802, '-infinity'],
  [0x801, 'reserved'],
]);

/**
 * mantissa × 10^exponent, correctly rounded to the nearest double: the decimal is parsed rather
 * than multiplied, so 364 × 10^-1 is 36.4 (not 36.400000000000006) and 1 × 10^-128 is 1e-128
 * (10^128 is not exact in binary). Always finite: |mantissa| < 2^23 and |exponent| ≤ 128.
 */
export function scaleByPowerOfTen(mantissa: number, exponent: number): number {
  return Number(`${mantissa}e${exponent}`);
}

function signExtend(raw: number, bits: number): number {
  const half = 2 ** (bits - 1);
  return raw >= half ? raw - 2 * half : raw;
}

/** A FLOAT from its 32-bit word (as read little-endian from the air). */
export function floatFromBits(bits: number): Ieee11073Value {
  const word = bits >>> 0;
  const rawMantissa = word & 0xffffff;
  const special = FLOAT_SPECIALS.get(rawMantissa);
  if (special !== undefined) return { kind: 'special', special };
  const exponent = signExtend(word >>> 24, 8);
  const mantissa = signExtend(rawMantissa, 24);
  return { kind: 'number', value: scaleByPowerOfTen(mantissa, exponent), exponent, mantissa };
}

/** An SFLOAT from its 16-bit word (as read little-endian from the air); higher bits are ignored. */
export function sfloatFromBits(bits: number): Ieee11073Value {
  const word = bits & 0xffff;
  const rawMantissa = word & 0x0fff;
  const special = SFLOAT_SPECIALS.get(rawMantissa);
  if (special !== undefined) return { kind: 'special', special };
  const exponent = signExtend(word >>> 12, 4);
  const mantissa = signExtend(rawMantissa, 12);
  return { kind: 'number', value: scaleByPowerOfTen(mantissa, exponent), exponent, mantissa };
}

/** The FLOAT at `offset` (4 bytes, little-endian). */
export function decodeFloat(bytes: Uint8Array, offset = 0): DecodeResult<Ieee11073Value> {
  if (!Number.isInteger(offset) || offset < 0 || offset + 4 > bytes.length) {
    return fail('truncated', `FLOAT needs 4 bytes at offset ${offset}, payload is ${bytes.length}`);
  }
  return ok(floatFromBits(viewOf(bytes).getUint32(offset, true)));
}

/** The SFLOAT at `offset` (2 bytes, little-endian). */
export function decodeSfloat(bytes: Uint8Array, offset = 0): DecodeResult<Ieee11073Value> {
  if (!Number.isInteger(offset) || offset < 0 || offset + 2 > bytes.length) {
    return fail('truncated', `SFLOAT needs 2 bytes at offset ${offset}, payload is ${bytes.length}`);
  }
  return ok(sfloatFromBits(viewOf(bytes).getUint16(offset, true)));
}
